// RUN: moe-opt %s -moe-decompose -moe-fuse-experts -split-input-file | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-fuse-experts | FileCheck %s --check-prefix=UNTOUCHED
// RUN: moe-opt %s -moe-decompose -moe-fuse-experts="fold-shared-experts=false" -split-input-file | FileCheck %s --check-prefix=FOLDOFF
// RUN: moe-opt %s -moe-decompose -moe-fuse-experts="fuse-combine=false" -split-input-file | FileCheck %s --check-prefix=NOCOMB

// A decomposed SwiGLU layer: the experts op becomes moe.expert_ffn reading
// the layer input through row_token (gather fusion; the dispatched copy is
// no longer used), and the gate-weighted combine of its rows is fused in:
// the op yields the [T, D] output, no [T * K, D] rows remain.
// CHECK-LABEL: func.func @swiglu
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf32>, %{{.*}}: tensor<16x4xf32>, %[[W1:.*]]: tensor<4x16x32xf32>, %[[W3:.*]]: tensor<4x16x32xf32>, %[[W2:.*]]: tensor<4x32x16xf32>)
// CHECK: %[[D:.*]], %[[ROWS:.*]], %[[CNT:.*]], %[[SLOT:.*]], %[[CW:.*]] = moe.dispatch %[[X]]
// CHECK-NOT: moe.experts
// CHECK: %[[Y:.*]] = moe.expert_ffn %[[X]], %[[ROWS]], %[[CNT]] : tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%[[W1]] : tensor<4x16x32xf32>) w3(%[[W3]] : tensor<4x16x32xf32>) w2(%[[W2]] : tensor<4x32x16xf32>) combine(%[[SLOT]], %[[CW]] : tensor<?x2xi32>, tensor<?x2xf32>) {ffn = #moe.ffn<>} -> tensor<?x16xf32>
// CHECK-NOT: moe.combine
// CHECK: return %[[Y]]
// Without the combine fusion: the rows [T * K, D], then moe.combine.
// NOCOMB-LABEL: func.func @swiglu
// NOCOMB: %[[D:.*]], %[[ROWS:.*]], %[[CNT:.*]], %[[SLOT:.*]], %[[CW:.*]] = moe.dispatch
// NOCOMB: %[[O:.*]] = moe.expert_ffn %{{.*}}, %[[ROWS]], %[[CNT]] : {{.*}} w2(%{{.*}} : tensor<4x32x16xf32>) {ffn = #moe.ffn<>} -> tensor<?x16xf32>
// NOCOMB: moe.combine %[[O]], %[[SLOT]], %[[CW]]
// UNTOUCHED-LABEL: func.func @swiglu
// UNTOUCHED: moe.layer
func.func @swiglu(%x: tensor<?x16xf32>, %wg: tensor<16x4xf32>,
                  %w1: tensor<4x16x32xf32>, %w3: tensor<4x16x32xf32>,
                  %w2: tensor<4x32x16xf32>) -> tensor<?x16xf32> {
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x4xf32>)
         w1(%w1 : tensor<4x16x32xf32>) w3(%w3 : tensor<4x16x32xf32>)
         w2(%w2 : tensor<4x32x16xf32>)
         {ffn = #moe.ffn<>, routing = #moe.routing<k = 2, normalize = selected>}
         -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Padded capacity, MLP with biases, out_in layout, shared experts: both the
// routed and the shared experts are fused, each with its operand roles and
// its combine (the padded routing's shared experts stay a call of their
// own: folding needs the ragged layout).
// CHECK-LABEL: func.func @mlp_padded_shared
// CHECK: moe.expert_ffn %{{.*}}, %{{.*}}, %{{.*}} : tensor<10x8xf32>, tensor<4x5xi32>, tensor<4xi32> w1(%{{.*}} : tensor<4x16x8xf32>) w2(%{{.*}} : tensor<4x8x16xf32>) b1(%{{.*}} : tensor<4x16xf32>) b2(%{{.*}} : tensor<4x8xf32>) combine(%{{.*}}, %{{.*}} : tensor<10x2xi32>, tensor<10x2xf32>) {ffn = #moe.ffn<kind = mlp, activation = gelu, layout = out_in>} -> tensor<10x8xf32>
// CHECK: moe.expert_ffn {{.*}} combine({{.*}}) {{.*}} -> tensor<10x8xf32>
// CHECK: arith.addf
// NOCOMB-LABEL: func.func @mlp_padded_shared
// NOCOMB: moe.expert_ffn {{.*}} -> tensor<4x5x8xf32>
func.func @mlp_padded_shared(%x: tensor<10x8xf32>, %wg: tensor<4x8xf32>,
                             %w1: tensor<4x16x8xf32>, %b1: tensor<4x16xf32>,
                             %w2: tensor<4x8x16xf32>, %b2: tensor<4x8xf32>,
                             %sw1: tensor<1x16x8xf32>, %sw2: tensor<1x8x16xf32>) -> tensor<10x8xf32> {
  %y = moe.layer %x : tensor<10x8xf32> router(%wg : tensor<4x8xf32>)
         w1(%w1 : tensor<4x16x8xf32>) w2(%w2 : tensor<4x8x16xf32>)
         b1(%b1 : tensor<4x16xf32>) b2(%b2 : tensor<4x8xf32>)
         shared_w1(%sw1 : tensor<1x16x8xf32>) shared_w2(%sw2 : tensor<1x8x16xf32>)
         {ffn = #moe.ffn<kind = mlp, activation = gelu, layout = out_in>,
          routing = #moe.routing<k = 2>, capacity = #moe.capacity<factor = 1.0>}
         -> tensor<10x8xf32>
  return %y : tensor<10x8xf32>
}

// -----

// bf16 activations stay on the generic path (moe.expert_ffn produces f32).
// CHECK-LABEL: func.func @bf16_not_fused
// CHECK: moe.experts
// CHECK-NOT: moe.expert_ffn
func.func @bf16_not_fused(%x: tensor<?x8xbf16>, %wg: tensor<8x4xbf16>,
                          %w1: tensor<4x8x16xbf16>, %w2: tensor<4x16x8xbf16>) -> tensor<?x8xbf16> {
  %y = moe.layer %x : tensor<?x8xbf16> router(%wg : tensor<8x4xbf16>)
         w1(%w1 : tensor<4x8x16xbf16>) w2(%w2 : tensor<4x16x8xbf16>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 1>}
         -> tensor<?x8xbf16>
  return %y : tensor<?x8xbf16>
}

// -----

// A body that claims a form but computes something else is not fused: the
// pass re-verifies the body against the form.
// CHECK-LABEL: func.func @edited_body
// CHECK: moe.experts
// CHECK-NOT: moe.expert_ffn
// UNTOUCHED-LABEL: func.func @edited_body
// UNTOUCHED: moe.experts
func.func @edited_body(%x: tensor<?x8xf32>, %w: tensor<?x1xf32>, %e: tensor<?x1xi32>,
                       %w1: tensor<4x8x16xf32>, %w2: tensor<4x16x8xf32>) -> tensor<?x8xf32> {
  %d, %r, %c, %s, %cw = moe.dispatch %x, %w, %e : tensor<?x8xf32>, tensor<?x1xf32>, tensor<?x1xi32> -> tensor<?x8xf32>, tensor<?xi32>, tensor<4xi32>, tensor<?x1xi32>, tensor<?x1xf32>
  %o = moe.experts %d, %c weights(%w1, %w2 : tensor<4x8x16xf32>, tensor<4x16x8xf32>) : tensor<?x8xf32>, tensor<4xi32> -> tensor<?x8xf32> attributes {moe.ffn_form = #moe.ffn<kind = mlp, activation = relu>, moe.ffn_operands = ["w1", "w2"]} {
  ^bb0(%seg: tensor<?x8xf32>, %a: tensor<8x16xf32>, %b: tensor<16x8xf32>):
    moe.yield %seg : tensor<?x8xf32>
  }
  %y = moe.combine %o, %s, %cw : tensor<?x8xf32>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// DeepSeek-style shared experts (weight 1, same FFN shapes as the routed
// ones) are folded in as always-selected experts: one routing of k + S = 4
// slots per token (slots 2 and 3 name experts 8 and 9), one dispatch over
// 10 experts (marked with S = 2 for the routing statistics), one expert
// call with the shared stacks, one combine; no second call and no final
// add.
// CHECK-LABEL: func.func @shared_folded
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x8xf32>, %{{[^:]*}}: tensor<8x8xf32>, %[[W1:[^:]*]]: tensor<8x8x16xf32>, %[[W3:[^:]*]]: tensor<8x8x16xf32>, %[[W2:[^:]*]]: tensor<8x16x8xf32>, %[[SW1:[^:]*]]: tensor<2x8x16xf32>, %[[SW3:[^:]*]]: tensor<2x8x16xf32>, %[[SW2:[^:]*]]: tensor<2x16x8xf32>)
// CHECK: %[[RW:.*]], %[[RE:.*]] = moe.route
// CHECK: %[[IDS:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<?x4xi32>)
// CHECK: tensor.extract %[[RE]]
// CHECK: arith.constant 8 : index
// CHECK: %[[CW:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<?x4xf32>)
// CHECK: tensor.extract %[[RW]]
// CHECK: %{{.*}}, %[[ROWS:.*]], %[[CNT:.*]], %[[SLOT:.*]], %[[CWS:.*]] = moe.dispatch %[[X]], %[[CW]], %[[IDS]] {moe.shared_experts = 2 : i64} : tensor<?x8xf32>, tensor<?x4xf32>, tensor<?x4xi32> -> tensor<?x8xf32>, tensor<?xi32>, tensor<10xi32>, tensor<?x4xi32>, tensor<?x4xf32>
// CHECK: %[[Y:.*]] = moe.expert_ffn %[[X]], %[[ROWS]], %[[CNT]] : tensor<?x8xf32>, tensor<?xi32>, tensor<10xi32> w1(%[[W1]] : tensor<8x8x16xf32>) w3(%[[W3]] : tensor<8x8x16xf32>) w2(%[[W2]] : tensor<8x16x8xf32>) shared_w1(%[[SW1]] : tensor<2x8x16xf32>) shared_w3(%[[SW3]] : tensor<2x8x16xf32>) shared_w2(%[[SW2]] : tensor<2x16x8xf32>) combine(%[[SLOT]], %[[CWS]] : tensor<?x4xi32>, tensor<?x4xf32>) {ffn = #moe.ffn<>}
// CHECK-NEXT: return %[[Y]]
// FOLDOFF-LABEL: func.func @shared_folded
// FOLDOFF-COUNT-2: moe.expert_ffn
// FOLDOFF: arith.addf
func.func @shared_folded(%x: tensor<?x8xf32>, %wg: tensor<8x8xf32>,
                         %w1: tensor<8x8x16xf32>, %w3: tensor<8x8x16xf32>,
                         %w2: tensor<8x16x8xf32>,
                         %sw1: tensor<2x8x16xf32>, %sw3: tensor<2x8x16xf32>,
                         %sw2: tensor<2x16x8xf32>) -> tensor<?x8xf32> {
  %y = moe.layer %x : tensor<?x8xf32> router(%wg : tensor<8x8xf32>)
         w1(%w1 : tensor<8x8x16xf32>) w3(%w3 : tensor<8x8x16xf32>)
         w2(%w2 : tensor<8x16x8xf32>)
         shared_w1(%sw1 : tensor<2x8x16xf32>) shared_w3(%sw3 : tensor<2x8x16xf32>)
         shared_w2(%sw2 : tensor<2x16x8xf32>)
         {ffn = #moe.ffn<>, routing = #moe.routing<k = 2, normalize = selected>}
         -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// Qwen-style gated shared expert: its slot carries sigmoid(x g) as weight.
// CHECK-LABEL: func.func @shared_gated_folded
// CHECK: %[[GW:.*]] = linalg.generic {{.*}} ins(%{{.*}} : tensor<?x1xf32>)
// CHECK: math.exp
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<?x3xi32>)
// CHECK: %[[CW:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<?x3xf32>)
// CHECK: tensor.extract %[[GW]]
// CHECK: moe.dispatch %{{.*}}, %[[CW]], %{{.*}} -> {{.*}}, tensor<5xi32>,
// CHECK: moe.expert_ffn {{.*}} w1(%{{.*}} : tensor<4x8x16xf32>) w2(%{{.*}} : tensor<4x16x8xf32>) shared_w1(%{{.*}} : tensor<1x8x16xf32>) shared_w2(%{{.*}} : tensor<1x16x8xf32>) combine({{.*}}) {ffn = #moe.ffn<kind = mlp, activation = gelu>}
// CHECK-NEXT: return
// CHECK-NOT: moe.expert_ffn
func.func @shared_gated_folded(%x: tensor<?x8xf32>, %wg: tensor<8x4xf32>,
                               %w1: tensor<4x8x16xf32>, %w2: tensor<4x16x8xf32>,
                               %sw1: tensor<1x8x16xf32>, %sw2: tensor<1x16x8xf32>,
                               %sg: tensor<8x1xf32>) -> tensor<?x8xf32> {
  %y = moe.layer %x : tensor<?x8xf32> router(%wg : tensor<8x4xf32>)
         w1(%w1 : tensor<4x8x16xf32>) w2(%w2 : tensor<4x16x8xf32>)
         shared_w1(%sw1 : tensor<1x8x16xf32>) shared_w2(%sw2 : tensor<1x16x8xf32>)
         shared_gate(%sg : tensor<8x1xf32>)
         {ffn = #moe.ffn<kind = mlp, activation = gelu>, routing = #moe.routing<k = 2>}
         -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// A shared expert wider than the routed ones (F = 24 vs 16) is not folded:
// two expert calls and the add remain.
// CHECK-LABEL: func.func @shared_other_width
// CHECK-COUNT-2: moe.expert_ffn
// CHECK: arith.addf
func.func @shared_other_width(%x: tensor<?x8xf32>, %wg: tensor<8x4xf32>,
                              %w1: tensor<4x8x16xf32>, %w3: tensor<4x8x16xf32>,
                              %w2: tensor<4x16x8xf32>,
                              %sw1: tensor<1x8x24xf32>, %sw3: tensor<1x8x24xf32>,
                              %sw2: tensor<1x24x8xf32>) -> tensor<?x8xf32> {
  %y = moe.layer %x : tensor<?x8xf32> router(%wg : tensor<8x4xf32>)
         w1(%w1 : tensor<4x8x16xf32>) w3(%w3 : tensor<4x8x16xf32>)
         w2(%w2 : tensor<4x16x8xf32>)
         shared_w1(%sw1 : tensor<1x8x24xf32>) shared_w3(%sw3 : tensor<1x8x24xf32>)
         shared_w2(%sw2 : tensor<1x24x8xf32>)
         {ffn = #moe.ffn<>, routing = #moe.routing<k = 2>}
         -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// Dropped tokens passed through (Switch): the combine adds the pass-through
// rows, so it stays a moe.combine of the fused op's rows.
// CHECK-LABEL: func.func @passthrough_combine_kept
// CHECK: %[[O:.*]] = moe.expert_ffn {{.*}} {ffn = #moe.ffn<kind = mlp, activation = relu>} -> tensor<4x3x8xf32>
// CHECK: moe.combine %[[O]], {{.*}} passthrough(
func.func @passthrough_combine_kept(%x: tensor<10x8xf32>, %wg: tensor<8x4xf32>,
                                    %w1: tensor<4x8x16xf32>, %w2: tensor<4x16x8xf32>) -> tensor<10x8xf32> {
  %y = moe.layer %x : tensor<10x8xf32> router(%wg : tensor<8x4xf32>)
         w1(%w1 : tensor<4x8x16xf32>) w2(%w2 : tensor<4x16x8xf32>)
         {ffn = #moe.ffn<kind = mlp, activation = relu>, routing = #moe.routing<k = 1>,
          capacity = #moe.capacity<factor = 1.0, on_drop = pass_through>}
         -> tensor<10x8xf32>
  return %y : tensor<10x8xf32>
}
