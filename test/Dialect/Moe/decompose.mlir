// RUN: moe-opt %s -moe-decompose -split-input-file | FileCheck %s

// Mixtral-style: ragged dispatch, SwiGLU body, renormalised top-2.
// CHECK-LABEL: func.func @glu_ragged
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf32>, %[[WG:.*]]: tensor<16x4xf32>, %[[W1:.*]]: tensor<4x16x32xf32>, %[[W3:.*]]: tensor<4x16x32xf32>, %[[W2:.*]]: tensor<4x32x16xf32>)
// CHECK: %[[LOGITS:.*]] = linalg.matmul ins(%[[X]], %[[WG]] : tensor<?x16xf32>, tensor<16x4xf32>) outs(%{{.*}} : tensor<?x4xf32>)
// CHECK: %[[W:.*]], %[[E:.*]] = moe.route %[[LOGITS]] {routing = #moe.routing<k = 2, normalize = selected>} : tensor<?x4xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
// CHECK: %[[D:.*]], %{{.*}}, %[[CNT:.*]], %[[SLOT:.*]], %[[CW:.*]] = moe.dispatch %[[X]], %[[W]], %[[E]] : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32>, tensor<?x2xi32>, tensor<?x2xf32>
// CHECK: %[[O:.*]] = moe.experts %[[D]], %[[CNT]] weights(%[[W1]], %[[W3]], %[[W2]] : tensor<4x16x32xf32>, tensor<4x16x32xf32>, tensor<4x32x16xf32>) : tensor<?x16xf32>, tensor<4xi32> -> tensor<?x16xf32> attributes {moe.ffn_form = #moe.ffn<>, moe.ffn_operands = ["w1", "w3", "w2"]} {
// CHECK: ^bb0(%[[SEG:.*]]: tensor<?x16xf32>, %[[A1:.*]]: tensor<16x32xf32>, %[[A3:.*]]: tensor<16x32xf32>, %[[A2:.*]]: tensor<32x16xf32>):
// CHECK: %[[G:.*]] = linalg.matmul ins(%[[SEG]], %[[A1]] : {{.*}}) outs({{.*}}) -> tensor<?x32xf32>
// CHECK: %[[U:.*]] = linalg.matmul ins(%[[SEG]], %[[A3]] : {{.*}}) outs({{.*}}) -> tensor<?x32xf32>
// CHECK: %[[H:.*]] = linalg.generic {{.*}} ins(%[[G]], %[[U]] : tensor<?x32xf32>, tensor<?x32xf32>)
// CHECK: math.exp
// CHECK: arith.divf
// CHECK: arith.mulf
// CHECK: %[[OUT:.*]] = linalg.matmul ins(%[[H]], %[[A2]] : {{.*}}) outs({{.*}}) -> tensor<?x16xf32>
// CHECK: moe.yield %[[OUT]] : tensor<?x16xf32>
// CHECK: %[[Y:.*]] = moe.combine %[[O]], %[[SLOT]], %[[CW]] : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x16xf32>
// CHECK: return %[[Y]]
// CHECK-NOT: moe.layer
func.func @glu_ragged(%x: tensor<?x16xf32>, %wg: tensor<16x4xf32>,
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

// Switch-style: padded capacity with a static T (C = ceil(1.25 * 10 / 4) = 4),
// ReLU MLP, dropped tokens pass through, router bias added to the logits.
// CHECK-LABEL: func.func @mlp_padded_passthrough
// CHECK-SAME: (%[[X:.*]]: tensor<10x8xf32>, %[[WG:.*]]: tensor<8x4xf32>, %[[RB:.*]]: tensor<4xf32>
// CHECK: %[[MM:.*]] = linalg.matmul ins(%[[X]], %[[WG]]
// CHECK: %[[LOGITS:.*]] = linalg.generic {{.*}} ins(%[[MM]], %[[RB]] : tensor<10x4xf32>, tensor<4xf32>)
// CHECK: moe.route %[[LOGITS]] {routing = #moe.routing<k = 1>} : tensor<10x4xf32> -> tensor<10x1xf32>, tensor<10x1xi32>
// CHECK: moe.dispatch %[[X]], {{.*}} {capacity = #moe.capacity<factor = 1.25, on_drop = pass_through>} : {{.*}} -> tensor<4x4x8xf32>, tensor<4x4xi32>, tensor<4xi32>, tensor<10x1xi32>, tensor<10x1xf32>
// CHECK: moe.experts {{.*}} : tensor<4x4x8xf32>, tensor<4xi32> -> tensor<4x4x8xf32>
// CHECK: arith.maximumf
// CHECK: moe.combine {{.*}} passthrough(%[[X]] : tensor<10x8xf32>) : tensor<4x4x8xf32>, tensor<10x1xi32>, tensor<10x1xf32> -> tensor<10x8xf32>
func.func @mlp_padded_passthrough(%x: tensor<10x8xf32>, %wg: tensor<8x4xf32>,
                                  %rb: tensor<4xf32>,
                                  %w1: tensor<4x8x16xf32>,
                                  %w2: tensor<4x16x8xf32>) -> tensor<10x8xf32> {
  %y = moe.layer %x : tensor<10x8xf32> router(%wg : tensor<8x4xf32>)
         router_bias(%rb : tensor<4xf32>)
         w1(%w1 : tensor<4x8x16xf32>) w2(%w2 : tensor<4x16x8xf32>)
         {ffn = #moe.ffn<kind = mlp, activation = relu>,
          routing = #moe.routing<k = 1>,
          capacity = #moe.capacity<factor = 1.25, on_drop = pass_through>}
         -> tensor<10x8xf32>
  return %y : tensor<10x8xf32>
}

// -----

// A dynamic T with a capacity gives a dynamic C; dropped pairs are zeroed,
// so combine takes no pass-through.
// CHECK-LABEL: func.func @padded_dynamic
// CHECK: moe.dispatch {{.*}} -> tensor<4x?x8xf32>, tensor<4x?xi32>, tensor<4xi32>, tensor<?x2xi32>, tensor<?x2xf32>
// CHECK: moe.combine
// CHECK-NOT: passthrough
// CHECK-SAME: -> tensor<?x8xf32>
func.func @padded_dynamic(%x: tensor<?x8xf32>, %wg: tensor<8x4xf32>,
                          %w1: tensor<4x8x16xf32>,
                          %w2: tensor<4x16x8xf32>) -> tensor<?x8xf32> {
  %y = moe.layer %x : tensor<?x8xf32> router(%wg : tensor<8x4xf32>)
         w1(%w1 : tensor<4x8x16xf32>) w2(%w2 : tensor<4x16x8xf32>)
         {ffn = #moe.ffn<kind = mlp, activation = gelu>,
          routing = #moe.routing<k = 2>,
          capacity = #moe.capacity<factor = 2.0, order = choice_major, renormalize = true>}
         -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// Qwen-style shared expert with a sigmoid gate: routed to every token with
// weight sigmoid(x g), computed like routed experts, added to the output.
// CHECK-LABEL: func.func @shared_gated
// CHECK-SAME: %[[SG:[^:]*]]: tensor<8x1xf32>)
// CHECK: moe.route
// CHECK: moe.dispatch
// CHECK: %[[ROUTED:.*]] = moe.combine
// CHECK: %[[IDS:.*]] = linalg.generic
// CHECK: linalg.index 1
// CHECK: arith.index_cast
// CHECK: %[[GL:.*]] = linalg.matmul ins(%{{.*}}, %[[SG]] : tensor<?x8xf32>, tensor<8x1xf32>)
// CHECK: %[[GW:.*]] = linalg.generic {{.*}} ins(%[[GL]] : tensor<?x1xf32>)
// CHECK: math.exp
// CHECK: %{{.*}}, %{{.*}}, %[[SC:.*]], %[[SS:.*]], %[[SCW:.*]] = moe.dispatch %{{.*}}, %[[GW]], %[[IDS]] : tensor<?x8xf32>, tensor<?x1xf32>, tensor<?x1xi32> -> tensor<?x8xf32>, tensor<?xi32>, tensor<1xi32>, tensor<?x1xi32>, tensor<?x1xf32>
// CHECK: moe.experts {{.*}} weights({{.*}} : tensor<1x8x24xf32>, tensor<1x8x24xf32>, tensor<1x24x8xf32>)
// CHECK: %[[SHARED:.*]] = moe.combine
// CHECK: %[[SUM:.*]] = linalg.generic {{.*}} ins(%[[ROUTED]], %[[SHARED]] : tensor<?x8xf32>, tensor<?x8xf32>)
// CHECK: arith.addf
// CHECK: return %[[SUM]]
func.func @shared_gated(%x: tensor<?x8xf32>, %wg: tensor<8x4xf32>,
                        %w1: tensor<4x8x16xf32>, %w3: tensor<4x8x16xf32>,
                        %w2: tensor<4x16x8xf32>,
                        %sw1: tensor<1x8x24xf32>, %sw3: tensor<1x8x24xf32>,
                        %sw2: tensor<1x24x8xf32>, %sg: tensor<8x1xf32>) -> tensor<?x8xf32> {
  %y = moe.layer %x : tensor<?x8xf32> router(%wg : tensor<8x4xf32>)
         w1(%w1 : tensor<4x8x16xf32>) w3(%w3 : tensor<4x8x16xf32>)
         w2(%w2 : tensor<4x16x8xf32>)
         shared_w1(%sw1 : tensor<1x8x24xf32>) shared_w3(%sw3 : tensor<1x8x24xf32>)
         shared_w2(%sw2 : tensor<1x24x8xf32>) shared_gate(%sg : tensor<8x1xf32>)
         {ffn = #moe.ffn<>, routing = #moe.routing<k = 2>}
         -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// DeepSeek-style: ungated shared experts get weight 1; the selection bias
// goes to moe.route only.
// CHECK-LABEL: func.func @shared_ungated_grouped
// CHECK-SAME: %[[B:[^:]*]]: tensor<8xf32>
// CHECK: moe.route %{{.*}} bias(%[[B]] : tensor<8xf32>) {routing = #moe.routing<policy = grouped_top_k, k = 2, score = sigmoid, normalize = selected, scaling = 2.5, num_groups = 4, top_groups = 2>}
// CHECK: moe.combine
// CHECK: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-NEXT: %[[ONES:.*]] = linalg.fill ins(%[[ONE]] : f32) outs(%{{.*}} : tensor<?x2xf32>)
// CHECK: moe.dispatch %{{.*}}, %[[ONES]], %{{.*}} : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>
func.func @shared_ungated_grouped(%x: tensor<?x8xf32>, %wg: tensor<8x8xf32>,
                                  %b: tensor<8xf32>,
                                  %w1: tensor<8x8x16xf32>, %w3: tensor<8x8x16xf32>,
                                  %w2: tensor<8x16x8xf32>,
                                  %sw1: tensor<2x8x16xf32>, %sw3: tensor<2x8x16xf32>,
                                  %sw2: tensor<2x16x8xf32>) -> tensor<?x8xf32> {
  %y = moe.layer %x : tensor<?x8xf32> router(%wg : tensor<8x8xf32>)
         selection_bias(%b : tensor<8xf32>)
         w1(%w1 : tensor<8x8x16xf32>) w3(%w3 : tensor<8x8x16xf32>)
         w2(%w2 : tensor<8x16x8xf32>)
         shared_w1(%sw1 : tensor<2x8x16xf32>) shared_w3(%sw3 : tensor<2x8x16xf32>)
         shared_w2(%sw2 : tensor<2x16x8xf32>)
         {ffn = #moe.ffn<>,
          routing = #moe.routing<policy = grouped_top_k, k = 2, score = sigmoid,
                                 normalize = selected, scaling = 2.5,
                                 num_groups = 4, top_groups = 2>}
         -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// nn.Linear layout ([out][in]): products against transposed weights become
// linalg.generic contractions reading rhs as (n, k).
// CHECK-DAG: #[[$LHS:.*]] = affine_map<(d0, d1, d2) -> (d0, d2)>
// CHECK-DAG: #[[$RHST:.*]] = affine_map<(d0, d1, d2) -> (d1, d2)>
// CHECK-LABEL: func.func @out_in_layout
// CHECK: linalg.generic {indexing_maps = [#[[$LHS]], #[[$RHST]], #{{.*}}], iterator_types = ["parallel", "parallel", "reduction"]} ins(%{{.*}}, %{{.*}} : tensor<?x8xf32>, tensor<4x8xf32>)
// CHECK: moe.experts
// CHECK: ^bb0(%{{.*}}: tensor<?x8xf32>, %{{.*}}: tensor<16x8xf32>, %{{.*}}: tensor<8x16xf32>):
func.func @out_in_layout(%x: tensor<?x8xf32>, %wg: tensor<4x8xf32>,
                         %w1: tensor<4x16x8xf32>,
                         %w2: tensor<4x8x16xf32>) -> tensor<?x8xf32> {
  %y = moe.layer %x : tensor<?x8xf32> router(%wg : tensor<4x8xf32>)
         w1(%w1 : tensor<4x16x8xf32>) w2(%w2 : tensor<4x8x16xf32>)
         {ffn = #moe.ffn<kind = mlp, activation = gelu_tanh, layout = out_in>,
          routing = #moe.routing<k = 1>}
         -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// Fused gate/up weights: concatenated halves are contiguous column slices,
// interleaved ones are stride-2 slices. Biases are broadcast-added.
// CHECK-LABEL: func.func @fused_concatenated
// CHECK: moe.experts
// CHECK: %[[H:.*]] = linalg.matmul {{.*}} -> tensor<?x32xf32>
// CHECK: %[[HB:.*]] = linalg.generic {{.*}} ins(%[[H]], %{{.*}} : tensor<?x32xf32>, tensor<32xf32>)
// CHECK: tensor.extract_slice %[[HB]][0, 0] [%{{.*}}, 16] [1, 1] : tensor<?x32xf32> to tensor<?x16xf32>
// CHECK: tensor.extract_slice %[[HB]][0, 16] [%{{.*}}, 16] [1, 1] : tensor<?x32xf32> to tensor<?x16xf32>
func.func @fused_concatenated(%x: tensor<?x8xf32>, %wg: tensor<8x4xf32>,
                              %w1: tensor<4x8x32xf32>, %b1: tensor<4x32xf32>,
                              %w2: tensor<4x16x8xf32>, %b2: tensor<4x8xf32>) -> tensor<?x8xf32> {
  %y = moe.layer %x : tensor<?x8xf32> router(%wg : tensor<8x4xf32>)
         w1(%w1 : tensor<4x8x32xf32>) w2(%w2 : tensor<4x16x8xf32>)
         b1(%b1 : tensor<4x32xf32>) b2(%b2 : tensor<4x8xf32>)
         {ffn = #moe.ffn<gate_up = concatenated>, routing = #moe.routing<k = 2>}
         -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// GPT-OSS-style SwiGLU: interleaved gate/up, alpha = 1.702, clamp at 7, up + 1.
// CHECK-LABEL: func.func @fused_interleaved_clamped
// CHECK: tensor.extract_slice %{{.*}}[0, 0] [%{{.*}}, 16] [1, 2]
// CHECK: tensor.extract_slice %{{.*}}[0, 1] [%{{.*}}, 16] [1, 2]
// CHECK: linalg.generic
// CHECK: arith.minimumf %{{.*}}, %{{.*}} : f32
// CHECK: arith.minimumf
// CHECK: arith.maximumf
// CHECK: arith.constant 1.000000e+00 : f32
// CHECK: arith.addf
// CHECK: arith.constant -1.702000e+00 : f32
func.func @fused_interleaved_clamped(%x: tensor<?x8xf32>, %wg: tensor<8x4xf32>,
                                     %w1: tensor<4x8x32xf32>,
                                     %w2: tensor<4x16x8xf32>) -> tensor<?x8xf32> {
  %y = moe.layer %x : tensor<?x8xf32> router(%wg : tensor<8x4xf32>)
         w1(%w1 : tensor<4x8x32xf32>) w2(%w2 : tensor<4x16x8xf32>)
         {ffn = #moe.ffn<gate_up = interleaved, alpha = 1.702, up_shift = 1.0, limit = 7.0>,
          routing = #moe.routing<k = 2, score = softmax_selected>}
         -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// bf16 storage: products accumulate in f32, the segment output is truncated
// back to bf16, and a bf16 selection bias is widened for routing.
// CHECK-LABEL: func.func @bf16_weights
// CHECK: arith.extf %{{.*}} : bf16 to f32
// CHECK: moe.route {{.*}} bias(%{{.*}} : tensor<8xf32>)
// CHECK: moe.experts {{.*}} : tensor<?x8xbf16>, tensor<8xi32> -> tensor<?x8xbf16>
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK: moe.yield %{{.*}} : tensor<?x8xbf16>
func.func @bf16_weights(%x: tensor<?x8xbf16>, %wg: tensor<8x8xbf16>,
                        %b: tensor<8xbf16>,
                        %w1: tensor<8x8x16xbf16>, %w3: tensor<8x8x16xbf16>,
                        %w2: tensor<8x16x8xbf16>) -> tensor<?x8xbf16> {
  %y = moe.layer %x : tensor<?x8xbf16> router(%wg : tensor<8x8xbf16>)
         selection_bias(%b : tensor<8xbf16>)
         w1(%w1 : tensor<8x8x16xbf16>) w3(%w3 : tensor<8x8x16xbf16>)
         w2(%w2 : tensor<8x16x8xbf16>)
         {ffn = #moe.ffn<>, routing = #moe.routing<k = 2>}
         -> tensor<?x8xbf16>
  return %y : tensor<?x8xbf16>
}

// -----

// Every routing policy decomposes the same way: the routing attribute is
// carried to moe.route unchanged (null experts widen the router only).
// CHECK-LABEL: func.func @null_experts
// CHECK: moe.route %{{.*}} {routing = #moe.routing<k = 2, normalize = selected, null_experts = 2>} : tensor<?x6xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
// CHECK: moe.dispatch {{.*}} -> tensor<?x8xf32>, tensor<?xi32>, tensor<4xi32>, tensor<?x2xi32>, tensor<?x2xf32>
func.func @null_experts(%x: tensor<?x8xf32>, %wg: tensor<8x6xf32>,
                        %w1: tensor<4x8x16xf32>, %w2: tensor<4x16x8xf32>) -> tensor<?x8xf32> {
  %y = moe.layer %x : tensor<?x8xf32> router(%wg : tensor<8x6xf32>)
         w1(%w1 : tensor<4x8x16xf32>) w2(%w2 : tensor<4x16x8xf32>)
         {ffn = #moe.ffn<kind = mlp>,
          routing = #moe.routing<k = 2, normalize = selected, null_experts = 2>}
         -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// CHECK-LABEL: func.func @policies
// CHECK: moe.route %{{.*}} {routing = #moe.routing<policy = top_p, k = 3, top_p = 0.7>}
// CHECK: moe.route %{{.*}} {routing = #moe.routing<policy = sinkhorn, k = 2, sinkhorn_iterations = 5>}
// CHECK: moe.route %{{.*}} {routing = #moe.routing<policy = expert_choice, k = 4, capacity_factor = 2.0>}
// CHECK: moe.route %{{.*}} {routing = #moe.routing<policy = threshold, k = 4, threshold = 0.2>}
// CHECK: moe.route %{{.*}} {routing = #moe.routing<policy = sparse_mixer, k = 2>}
func.func @policies(%x: tensor<?x8xf32>, %wg: tensor<8x4xf32>,
                    %w1: tensor<4x8x16xf32>, %w2: tensor<4x16x8xf32>) -> tensor<?x8xf32> {
  %a = moe.layer %x : tensor<?x8xf32> router(%wg : tensor<8x4xf32>)
         w1(%w1 : tensor<4x8x16xf32>) w2(%w2 : tensor<4x16x8xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<policy = top_p, k = 3, top_p = 0.7>}
         -> tensor<?x8xf32>
  %b = moe.layer %a : tensor<?x8xf32> router(%wg : tensor<8x4xf32>)
         w1(%w1 : tensor<4x8x16xf32>) w2(%w2 : tensor<4x16x8xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<policy = sinkhorn, k = 2, sinkhorn_iterations = 5>}
         -> tensor<?x8xf32>
  %c = moe.layer %b : tensor<?x8xf32> router(%wg : tensor<8x4xf32>)
         w1(%w1 : tensor<4x8x16xf32>) w2(%w2 : tensor<4x16x8xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<policy = expert_choice, k = 4, capacity_factor = 2.0>}
         -> tensor<?x8xf32>
  %d = moe.layer %c : tensor<?x8xf32> router(%wg : tensor<8x4xf32>)
         w1(%w1 : tensor<4x8x16xf32>) w2(%w2 : tensor<4x16x8xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<policy = threshold, k = 4, threshold = 0.2>}
         -> tensor<?x8xf32>
  %e = moe.layer %d : tensor<?x8xf32> router(%wg : tensor<8x4xf32>)
         w1(%w1 : tensor<4x8x16xf32>) w2(%w2 : tensor<4x16x8xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<policy = sparse_mixer, k = 2>}
         -> tensor<?x8xf32>
  return %e : tensor<?x8xf32>
}
