// RUN: moe-opt %s -moe-decompose -moe-fuse-experts -split-input-file | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-fuse-experts | FileCheck %s --check-prefix=UNTOUCHED

// A decomposed SwiGLU layer: the experts op becomes moe.expert_ffn reading
// the layer input through row_token (gather fusion); the dispatched copy is
// no longer used.
// CHECK-LABEL: func.func @swiglu
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf32>, %{{.*}}: tensor<16x4xf32>, %[[W1:.*]]: tensor<4x16x32xf32>, %[[W3:.*]]: tensor<4x16x32xf32>, %[[W2:.*]]: tensor<4x32x16xf32>)
// CHECK: %[[D:.*]], %[[ROWS:.*]], %[[CNT:.*]], %[[SLOT:.*]], %[[CW:.*]] = moe.dispatch %[[X]]
// CHECK-NOT: moe.experts
// CHECK: %[[O:.*]] = moe.expert_ffn %[[X]], %[[ROWS]], %[[CNT]] : tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%[[W1]] : tensor<4x16x32xf32>) w3(%[[W3]] : tensor<4x16x32xf32>) w2(%[[W2]] : tensor<4x32x16xf32>) {ffn = #moe.ffn<>} -> tensor<?x16xf32>
// CHECK: moe.combine %[[O]], %[[SLOT]], %[[CW]]
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
// routed and the shared experts are fused, each with its operand roles.
// CHECK-LABEL: func.func @mlp_padded_shared
// CHECK: moe.expert_ffn %{{.*}}, %{{.*}}, %{{.*}} : tensor<10x8xf32>, tensor<4x5xi32>, tensor<4xi32> w1(%{{.*}} : tensor<4x16x8xf32>) w2(%{{.*}} : tensor<4x8x16xf32>) b1(%{{.*}} : tensor<4x16xf32>) b2(%{{.*}} : tensor<4x8xf32>) {ffn = #moe.ffn<kind = mlp, activation = gelu, layout = out_in>} -> tensor<4x5x8xf32>
// CHECK: moe.expert_ffn {{.*}} -> tensor<10x8xf32>
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
