// RUN: moe-opt %s -split-input-file | FileCheck %s
// RUN: moe-opt %s -split-input-file | moe-opt -split-input-file | FileCheck %s
// RUN: moe-opt %s -split-input-file -mlir-print-op-generic | moe-opt -split-input-file | FileCheck %s

// Round-trip of every moe op and attribute. Fields of #moe.routing,
// #moe.capacity and #moe.ffn print only when they differ from their default,
// so every non-default value of every field appears in at least one CHECK.

//===----------------------------------------------------------------------===//
// moe.layer
//===----------------------------------------------------------------------===//

// Mixtral: dynamic T, GLU with separate gate/up, dropless.

// CHECK-LABEL: func.func @layer_mixtral
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf32>, %[[WG:.*]]: tensor<16x8xf32>, %[[W1:.*]]: tensor<8x16x32xf32>, %[[W3:.*]]: tensor<8x16x32xf32>, %[[W2:.*]]: tensor<8x32x16xf32>)
func.func @layer_mixtral(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>,
                         %w1: tensor<8x16x32xf32>, %w3: tensor<8x16x32xf32>,
                         %w2: tensor<8x32x16xf32>) -> tensor<?x16xf32> {
  // CHECK: %[[Y:.*]] = moe.layer %[[X]] : tensor<?x16xf32>
  // CHECK-SAME: router(%[[WG]] : tensor<16x8xf32>)
  // CHECK-SAME: w1(%[[W1]] : tensor<8x16x32xf32>) w3(%[[W3]] : tensor<8x16x32xf32>) w2(%[[W2]] : tensor<8x32x16xf32>)
  // CHECK-SAME: {ffn = #moe.ffn<>, routing = #moe.routing<k = 2, normalize = selected>} -> tensor<?x16xf32>
  %y = moe.layer %x : tensor<?x16xf32>
         router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w3(%w3 : tensor<8x16x32xf32>)
         w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<>, routing = #moe.routing<k = 2, normalize = selected>}
         -> tensor<?x16xf32>
  // CHECK: return %[[Y]] : tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Every optional operand group: router and selection biases, w3, b1, b2 and
// gated shared experts (static T).

// CHECK-LABEL: func.func @layer_all_operands
// CHECK-SAME: (%[[X:.*]]: tensor<6x16xf32>, %[[WG:.*]]: tensor<16x8xf32>, %[[RB:.*]]: tensor<8xf32>, %[[SB:.*]]: tensor<8xf32>, %[[W1:.*]]: tensor<8x16x32xf32>, %[[W3:.*]]: tensor<8x16x32xf32>, %[[W2:.*]]: tensor<8x32x16xf32>, %[[B1:.*]]: tensor<8x32xf32>, %[[B2:.*]]: tensor<8x16xf32>, %[[SW1:.*]]: tensor<2x16x24xf32>, %[[SW3:.*]]: tensor<2x16x24xf32>, %[[SW2:.*]]: tensor<2x24x16xf32>, %[[SG:.*]]: tensor<16x1xf32>)
func.func @layer_all_operands(%x: tensor<6x16xf32>, %wg: tensor<16x8xf32>,
                              %rb: tensor<8xf32>, %sb: tensor<8xf32>,
                              %w1: tensor<8x16x32xf32>, %w3: tensor<8x16x32xf32>,
                              %w2: tensor<8x32x16xf32>, %b1: tensor<8x32xf32>,
                              %b2: tensor<8x16xf32>, %sw1: tensor<2x16x24xf32>,
                              %sw3: tensor<2x16x24xf32>, %sw2: tensor<2x24x16xf32>,
                              %sg: tensor<16x1xf32>) -> tensor<6x16xf32> {
  // CHECK: %[[Y:.*]] = moe.layer %[[X]] : tensor<6x16xf32>
  // CHECK-SAME: router(%[[WG]] : tensor<16x8xf32>)
  // CHECK-SAME: router_bias(%[[RB]] : tensor<8xf32>)
  // CHECK-SAME: selection_bias(%[[SB]] : tensor<8xf32>)
  // CHECK-SAME: w1(%[[W1]] : tensor<8x16x32xf32>)
  // CHECK-SAME: w3(%[[W3]] : tensor<8x16x32xf32>)
  // CHECK-SAME: w2(%[[W2]] : tensor<8x32x16xf32>)
  // CHECK-SAME: b1(%[[B1]] : tensor<8x32xf32>)
  // CHECK-SAME: b2(%[[B2]] : tensor<8x16xf32>)
  // CHECK-SAME: shared_w1(%[[SW1]] : tensor<2x16x24xf32>)
  // CHECK-SAME: shared_w3(%[[SW3]] : tensor<2x16x24xf32>)
  // CHECK-SAME: shared_w2(%[[SW2]] : tensor<2x24x16xf32>)
  // CHECK-SAME: shared_gate(%[[SG]] : tensor<16x1xf32>)
  // CHECK-SAME: {ffn = #moe.ffn<>, routing = #moe.routing<k = 2, score = sigmoid, normalize = selected>} -> tensor<6x16xf32>
  %y = moe.layer %x : tensor<6x16xf32>
         router(%wg : tensor<16x8xf32>)
         router_bias(%rb : tensor<8xf32>)
         selection_bias(%sb : tensor<8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w3(%w3 : tensor<8x16x32xf32>)
         w2(%w2 : tensor<8x32x16xf32>)
         b1(%b1 : tensor<8x32xf32>) b2(%b2 : tensor<8x16xf32>)
         shared_w1(%sw1 : tensor<2x16x24xf32>) shared_w3(%sw3 : tensor<2x16x24xf32>)
         shared_w2(%sw2 : tensor<2x24x16xf32>) shared_gate(%sg : tensor<16x1xf32>)
         {ffn = #moe.ffn<>,
          routing = #moe.routing<k = 2, score = sigmoid, normalize = selected>}
         -> tensor<6x16xf32>
  return %y : tensor<6x16xf32>
}

// -----

// Ungated shared experts without w3 (MLP), no routed biases.

// CHECK-LABEL: func.func @layer_shared_mlp_ungated
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf16>, %[[WG:.*]]: tensor<16x4xf16>, %[[W1:.*]]: tensor<4x16x32xf16>, %[[W2:.*]]: tensor<4x32x16xf16>, %[[SW1:.*]]: tensor<1x16x64xf16>, %[[SW2:.*]]: tensor<1x64x16xf16>)
func.func @layer_shared_mlp_ungated(%x: tensor<?x16xf16>, %wg: tensor<16x4xf16>,
                                    %w1: tensor<4x16x32xf16>, %w2: tensor<4x32x16xf16>,
                                    %sw1: tensor<1x16x64xf16>,
                                    %sw2: tensor<1x64x16xf16>) -> tensor<?x16xf16> {
  // CHECK: moe.layer %[[X]] : tensor<?x16xf16> router(%[[WG]] : tensor<16x4xf16>)
  // CHECK-SAME: w1(%[[W1]] : tensor<4x16x32xf16>) w2(%[[W2]] : tensor<4x32x16xf16>)
  // CHECK-SAME: shared_w1(%[[SW1]] : tensor<1x16x64xf16>) shared_w2(%[[SW2]] : tensor<1x64x16xf16>)
  // CHECK-SAME: {ffn = #moe.ffn<kind = mlp, activation = gelu>, routing = #moe.routing<k = 1>} -> tensor<?x16xf16>
  %y = moe.layer %x : tensor<?x16xf16> router(%wg : tensor<16x4xf16>)
         w1(%w1 : tensor<4x16x32xf16>) w2(%w2 : tensor<4x32x16xf16>)
         shared_w1(%sw1 : tensor<1x16x64xf16>) shared_w2(%sw2 : tensor<1x64x16xf16>)
         {ffn = #moe.ffn<kind = mlp, activation = gelu>, routing = #moe.routing<k = 1>}
         -> tensor<?x16xf16>
  return %y : tensor<?x16xf16>
}

// -----

// out_in layout: router [E, D], w1 [E, F, D], w2 [E, D, F], shared_gate [1, D].

// CHECK-LABEL: func.func @layer_out_in
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xbf16>, %[[WG:.*]]: tensor<8x16xbf16>, %[[W1:.*]]: tensor<8x32x16xbf16>, %[[W2:.*]]: tensor<8x16x32xbf16>, %[[B1:.*]]: tensor<8x32xbf16>, %[[SW1:.*]]: tensor<2x24x16xbf16>, %[[SW2:.*]]: tensor<2x16x24xbf16>, %[[SG:.*]]: tensor<1x16xbf16>)
func.func @layer_out_in(%x: tensor<?x16xbf16>, %wg: tensor<8x16xbf16>,
                        %w1: tensor<8x32x16xbf16>, %w2: tensor<8x16x32xbf16>,
                        %b1: tensor<8x32xbf16>,
                        %sw1: tensor<2x24x16xbf16>, %sw2: tensor<2x16x24xbf16>,
                        %sg: tensor<1x16xbf16>) -> tensor<?x16xbf16> {
  // CHECK: moe.layer %[[X]] : tensor<?x16xbf16> router(%[[WG]] : tensor<8x16xbf16>)
  // CHECK-SAME: w1(%[[W1]] : tensor<8x32x16xbf16>) w2(%[[W2]] : tensor<8x16x32xbf16>)
  // CHECK-SAME: b1(%[[B1]] : tensor<8x32xbf16>)
  // CHECK-SAME: shared_w1(%[[SW1]] : tensor<2x24x16xbf16>) shared_w2(%[[SW2]] : tensor<2x16x24xbf16>)
  // CHECK-SAME: shared_gate(%[[SG]] : tensor<1x16xbf16>)
  // CHECK-SAME: {ffn = #moe.ffn<kind = mlp, activation = relu, layout = out_in>, routing = #moe.routing<k = 2>} -> tensor<?x16xbf16>
  %y = moe.layer %x : tensor<?x16xbf16> router(%wg : tensor<8x16xbf16>)
         w1(%w1 : tensor<8x32x16xbf16>) w2(%w2 : tensor<8x16x32xbf16>)
         b1(%b1 : tensor<8x32xbf16>)
         shared_w1(%sw1 : tensor<2x24x16xbf16>) shared_w2(%sw2 : tensor<2x16x24xbf16>)
         shared_gate(%sg : tensor<1x16xbf16>)
         {ffn = #moe.ffn<kind = mlp, activation = relu, layout = out_in>,
          routing = #moe.routing<k = 2>}
         -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// -----

// Fused, concatenated gate/up (w1 [E, D, 2F], b1 [E, 2F]) with the GPT-OSS
// SwiGLU parameters.

// CHECK-LABEL: func.func @layer_fused_concatenated
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf16>, %[[WG:.*]]: tensor<16x8xf16>, %[[W1:.*]]: tensor<8x16x64xf16>, %[[W2:.*]]: tensor<8x32x16xf16>, %[[B1:.*]]: tensor<8x64xf16>, %[[B2:.*]]: tensor<8x16xf16>)
func.func @layer_fused_concatenated(%x: tensor<?x16xf16>, %wg: tensor<16x8xf16>,
                                    %w1: tensor<8x16x64xf16>, %w2: tensor<8x32x16xf16>,
                                    %b1: tensor<8x64xf16>,
                                    %b2: tensor<8x16xf16>) -> tensor<?x16xf16> {
  // CHECK: moe.layer %[[X]] : tensor<?x16xf16> router(%[[WG]] : tensor<16x8xf16>)
  // CHECK-SAME: w1(%[[W1]] : tensor<8x16x64xf16>) w2(%[[W2]] : tensor<8x32x16xf16>)
  // CHECK-SAME: b1(%[[B1]] : tensor<8x64xf16>) b2(%[[B2]] : tensor<8x16xf16>)
  // CHECK-SAME: {ffn = #moe.ffn<gate_up = concatenated, alpha = 1.702, up_shift = 1.0, limit = 7.0>, routing = #moe.routing<k = 4, score = softmax_selected>} -> tensor<?x16xf16>
  %y = moe.layer %x : tensor<?x16xf16> router(%wg : tensor<16x8xf16>)
         w1(%w1 : tensor<8x16x64xf16>) w2(%w2 : tensor<8x32x16xf16>)
         b1(%b1 : tensor<8x64xf16>) b2(%b2 : tensor<8x16xf16>)
         {ffn = #moe.ffn<gate_up = concatenated, alpha = 1.702, up_shift = 1.0,
                         limit = 7.0>,
          routing = #moe.routing<k = 4, score = softmax_selected>}
         -> tensor<?x16xf16>
  return %y : tensor<?x16xf16>
}

// -----

// Fused, interleaved gate/up in out_in layout (w1 [E, 2F, D]).

// CHECK-LABEL: func.func @layer_fused_interleaved
// CHECK-SAME: (%[[X:.*]]: tensor<4x16xbf16>, %[[WG:.*]]: tensor<8x16xbf16>, %[[W1:.*]]: tensor<8x64x16xbf16>, %[[W2:.*]]: tensor<8x16x32xbf16>)
func.func @layer_fused_interleaved(%x: tensor<4x16xbf16>, %wg: tensor<8x16xbf16>,
                                   %w1: tensor<8x64x16xbf16>,
                                   %w2: tensor<8x16x32xbf16>) -> tensor<4x16xbf16> {
  // CHECK: moe.layer %[[X]] : tensor<4x16xbf16> router(%[[WG]] : tensor<8x16xbf16>)
  // CHECK-SAME: w1(%[[W1]] : tensor<8x64x16xbf16>) w2(%[[W2]] : tensor<8x16x32xbf16>)
  // CHECK-SAME: {ffn = #moe.ffn<activation = gelu_tanh, gate_up = interleaved, layout = out_in>, routing = #moe.routing<k = 2>} -> tensor<4x16xbf16>
  %y = moe.layer %x : tensor<4x16xbf16> router(%wg : tensor<8x16xbf16>)
         w1(%w1 : tensor<8x64x16xbf16>) w2(%w2 : tensor<8x16x32xbf16>)
         {ffn = #moe.ffn<activation = gelu_tanh, gate_up = interleaved, layout = out_in>,
          routing = #moe.routing<k = 2>}
         -> tensor<4x16xbf16>
  return %y : tensor<4x16xbf16>
}

// -----

// Padded-capacity layer (Switch: k = 1, tutel formula, overflow passes
// through).

// CHECK-LABEL: func.func @layer_capacity
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf32>, %[[WG:.*]]: tensor<16x8xf32>, %[[W1:.*]]: tensor<8x16x32xf32>, %[[W2:.*]]: tensor<8x32x16xf32>)
func.func @layer_capacity(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>,
                          %w1: tensor<8x16x32xf32>,
                          %w2: tensor<8x32x16xf32>) -> tensor<?x16xf32> {
  // CHECK: moe.layer %[[X]] : tensor<?x16xf32> router(%[[WG]] : tensor<16x8xf32>)
  // CHECK-SAME: w1(%[[W1]] : tensor<8x16x32xf32>) w2(%[[W2]] : tensor<8x32x16xf32>)
  // CHECK-SAME: {capacity = #moe.capacity<factor = 1.25, formula = tutel, min_capacity = 4, align = 8, order = score, on_drop = pass_through>, ffn = #moe.ffn<kind = mlp, activation = identity>, routing = #moe.routing<k = 1>} -> tensor<?x16xf32>
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {capacity = #moe.capacity<factor = 1.25, formula = tutel, min_capacity = 4,
                                   align = 8, order = score, on_drop = pass_through>,
          ffn = #moe.ffn<kind = mlp, activation = identity>,
          routing = #moe.routing<k = 1>}
         -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Null experts: the router has E + 2 columns.

// CHECK-LABEL: func.func @layer_null_experts
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf32>, %[[WG:.*]]: tensor<16x10xf32>, %[[RB:.*]]: tensor<10xf32>, %[[W1:.*]]: tensor<8x16x32xf32>, %[[W3:.*]]: tensor<8x16x32xf32>, %[[W2:.*]]: tensor<8x32x16xf32>)
func.func @layer_null_experts(%x: tensor<?x16xf32>, %wg: tensor<16x10xf32>,
                              %rb: tensor<10xf32>,
                              %w1: tensor<8x16x32xf32>, %w3: tensor<8x16x32xf32>,
                              %w2: tensor<8x32x16xf32>) -> tensor<?x16xf32> {
  // CHECK: moe.layer %[[X]] : tensor<?x16xf32> router(%[[WG]] : tensor<16x10xf32>)
  // CHECK-SAME: router_bias(%[[RB]] : tensor<10xf32>)
  // CHECK-SAME: w1(%[[W1]] : tensor<8x16x32xf32>) w3(%[[W3]] : tensor<8x16x32xf32>) w2(%[[W2]] : tensor<8x32x16xf32>)
  // CHECK-SAME: {capacity = #moe.capacity<formula = fixed, fixed = 16, order = choice_major, renormalize = true>, ffn = #moe.ffn<>, routing = #moe.routing<k = 2, null_experts = 2>} -> tensor<?x16xf32>
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x10xf32>)
         router_bias(%rb : tensor<10xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w3(%w3 : tensor<8x16x32xf32>)
         w2(%w2 : tensor<8x32x16xf32>)
         {capacity = #moe.capacity<formula = fixed, fixed = 16, order = choice_major,
                                   renormalize = true>,
          ffn = #moe.ffn<>, routing = #moe.routing<k = 2, null_experts = 2>}
         -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

//===----------------------------------------------------------------------===//
// moe.route
//===----------------------------------------------------------------------===//

// -----

// CHECK-LABEL: func.func @route_top_k
// CHECK-SAME: (%[[L:.*]]: tensor<?x8xf32>)
func.func @route_top_k(%logits: tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  // CHECK: %[[W:.*]], %[[E:.*]] = moe.route %[[L]] {routing = #moe.routing<k = 2>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %w, %e = moe.route %logits {routing = #moe.routing<k = 2>}
      : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  // CHECK: return %[[W]], %[[E]] : tensor<?x2xf32>, tensor<?x2xi32>
  return %w, %e : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

// Fields spelled out at their default value are not printed.

// CHECK-LABEL: func.func @route_defaults_elided
// CHECK-SAME: (%[[L:.*]]: tensor<?x8xf32>)
func.func @route_defaults_elided(%logits: tensor<?x8xf32>) -> tensor<?x2xf32> {
  // CHECK: moe.route %[[L]] {routing = #moe.routing<k = 2>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %w, %e = moe.route %logits {routing = #moe.routing<
      policy = top_k, k = 2, score = softmax, normalize = none,
      tie_break = lower_index, scaling = 1.0, top_p = 1.0, threshold = 0.0,
      num_groups = 1, top_groups = 1, group_score_k = 2, mask_with_zero = false,
      null_experts = 0, sinkhorn_iterations = 3, capacity_factor = 1.0,
      jitter_eps = 0.01, epsilon = 0.0>}
      : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %w : tensor<?x2xf32>
}

// -----

// Fields may be given in any order; integer literals are accepted for the
// floating-point fields.

// CHECK-LABEL: func.func @route_field_order
// CHECK-SAME: (%[[L:.*]]: tensor<3x8xf32>)
func.func @route_field_order(%logits: tensor<3x8xf32>) -> tensor<3x2xf32> {
  // CHECK: moe.route %[[L]] {routing = #moe.routing<k = 2, tie_break = higher_index, scaling = 2.0>} : tensor<3x8xf32> -> tensor<3x2xf32>, tensor<3x2xi32>
  %w, %e = moe.route %logits {routing = #moe.routing<scaling = 2, tie_break = higher_index, k = 2>}
      : tensor<3x8xf32> -> tensor<3x2xf32>, tensor<3x2xi32>
  return %w : tensor<3x2xf32>
}

// -----

// CHECK-LABEL: func.func @route_softmax_selected_f16
// CHECK-SAME: (%[[L:.*]]: tensor<5x8xf16>)
func.func @route_softmax_selected_f16(%logits: tensor<5x8xf16>) -> tensor<5x2xf16> {
  // CHECK: moe.route %[[L]] {routing = #moe.routing<k = 2, score = softmax_selected, tie_break = higher_index>} : tensor<5x8xf16> -> tensor<5x2xf16>, tensor<5x2xi32>
  %w, %e = moe.route %logits
      {routing = #moe.routing<k = 2, score = softmax_selected, tie_break = higher_index>}
      : tensor<5x8xf16> -> tensor<5x2xf16>, tensor<5x2xi32>
  return %w : tensor<5x2xf16>
}

// -----

// top_p with a selection bias.

// CHECK-LABEL: func.func @route_top_p
// CHECK-SAME: (%[[L:.*]]: tensor<?x8xbf16>, %[[B:.*]]: tensor<8xbf16>)
func.func @route_top_p(%logits: tensor<?x8xbf16>, %bias: tensor<8xbf16>) -> tensor<?x4xbf16> {
  // CHECK: moe.route %[[L]] bias(%[[B]] : tensor<8xbf16>) {routing = #moe.routing<policy = top_p, k = 4, top_p = 0.9>} : tensor<?x8xbf16> -> tensor<?x4xbf16>, tensor<?x4xi32>
  %w, %e = moe.route %logits bias(%bias : tensor<8xbf16>)
      {routing = #moe.routing<policy = top_p, k = 4, top_p = 0.9>}
      : tensor<?x8xbf16> -> tensor<?x4xbf16>, tensor<?x4xi32>
  return %w : tensor<?x4xbf16>
}

// -----

// DeepSeek-V3: grouped top-k over sigmoid scores with a selection bias.

// CHECK-LABEL: func.func @route_grouped_top_k
// CHECK-SAME: (%[[L:.*]]: tensor<?x16xf32>, %[[B:.*]]: tensor<16xf32>)
func.func @route_grouped_top_k(%logits: tensor<?x16xf32>, %bias: tensor<16xf32>) -> tensor<?x4xf32> {
  // CHECK: moe.route %[[L]] bias(%[[B]] : tensor<16xf32>)
  // CHECK-SAME: {routing = #moe.routing<policy = grouped_top_k, k = 4, score = sigmoid, normalize = selected, scaling = 2.5, num_groups = 4, top_groups = 2, epsilon = 1.0e-20>}
  // CHECK-SAME: : tensor<?x16xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  %w, %e = moe.route %logits bias(%bias : tensor<16xf32>)
      {routing = #moe.routing<policy = grouped_top_k, k = 4, score = sigmoid,
                              normalize = selected, scaling = 2.5, num_groups = 4,
                              top_groups = 2, epsilon = 1.0e-20>}
      : tensor<?x16xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  return %w : tensor<?x4xf32>
}

// -----

// Grouped top-k with a non-default group score and zero-masked groups.

// CHECK-LABEL: func.func @route_grouped_top_k_mask_with_zero
// CHECK-SAME: (%[[L:.*]]: tensor<7x12xf16>)
func.func @route_grouped_top_k_mask_with_zero(%logits: tensor<7x12xf16>) -> tensor<7x3xf16> {
  // CHECK: moe.route %[[L]] {routing = #moe.routing<policy = grouped_top_k, k = 3, num_groups = 3, top_groups = 2, group_score_k = 4, mask_with_zero = true>} : tensor<7x12xf16> -> tensor<7x3xf16>, tensor<7x3xi32>
  %w, %e = moe.route %logits
      {routing = #moe.routing<policy = grouped_top_k, k = 3, num_groups = 3,
                              top_groups = 2, group_score_k = 4, mask_with_zero = true>}
      : tensor<7x12xf16> -> tensor<7x3xf16>, tensor<7x3xi32>
  return %w : tensor<7x3xf16>
}

// -----

// CHECK-LABEL: func.func @route_sinkhorn
// CHECK-SAME: (%[[L:.*]]: tensor<?x8xf32>)
func.func @route_sinkhorn(%logits: tensor<?x8xf32>) -> tensor<?x1xf32> {
  // CHECK: moe.route %[[L]] {routing = #moe.routing<policy = sinkhorn, k = 1, score = identity, sinkhorn_iterations = 5>} : tensor<?x8xf32> -> tensor<?x1xf32>, tensor<?x1xi32>
  %w, %e = moe.route %logits
      {routing = #moe.routing<policy = sinkhorn, k = 1, score = identity, sinkhorn_iterations = 5>}
      : tensor<?x8xf32> -> tensor<?x1xf32>, tensor<?x1xi32>
  return %w : tensor<?x1xf32>
}

// -----

// CHECK-LABEL: func.func @route_expert_choice
// CHECK-SAME: (%[[L:.*]]: tensor<16x8xbf16>)
func.func @route_expert_choice(%logits: tensor<16x8xbf16>) -> tensor<16x2xbf16> {
  // CHECK: moe.route %[[L]] {routing = #moe.routing<policy = expert_choice, k = 2, capacity_factor = 2.0>} : tensor<16x8xbf16> -> tensor<16x2xbf16>, tensor<16x2xi32>
  %w, %e = moe.route %logits
      {routing = #moe.routing<policy = expert_choice, k = 2, capacity_factor = 2.0>}
      : tensor<16x8xbf16> -> tensor<16x2xbf16>, tensor<16x2xi32>
  return %w : tensor<16x2xbf16>
}

// -----

// CHECK-LABEL: func.func @route_threshold
// CHECK-SAME: (%[[L:.*]]: tensor<?x8xf32>, %[[B:.*]]: tensor<8xf32>)
func.func @route_threshold(%logits: tensor<?x8xf32>, %bias: tensor<8xf32>) -> tensor<?x3xf32> {
  // CHECK: moe.route %[[L]] bias(%[[B]] : tensor<8xf32>) {routing = #moe.routing<policy = threshold, k = 3, score = sigmoid, threshold = 0.25>} : tensor<?x8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  %w, %e = moe.route %logits bias(%bias : tensor<8xf32>)
      {routing = #moe.routing<policy = threshold, k = 3, score = sigmoid, threshold = 0.25>}
      : tensor<?x8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return %w : tensor<?x3xf32>
}

// -----

// CHECK-LABEL: func.func @route_sparse_mixer
// CHECK-SAME: (%[[L:.*]]: tensor<?x8xf16>)
func.func @route_sparse_mixer(%logits: tensor<?x8xf16>) -> tensor<?x2xf16> {
  // CHECK: moe.route %[[L]] {routing = #moe.routing<policy = sparse_mixer, k = 2, jitter_eps = 0.05>} : tensor<?x8xf16> -> tensor<?x2xf16>, tensor<?x2xi32>
  %w, %e = moe.route %logits
      {routing = #moe.routing<policy = sparse_mixer, k = 2, jitter_eps = 0.05>}
      : tensor<?x8xf16> -> tensor<?x2xf16>, tensor<?x2xi32>
  return %w : tensor<?x2xf16>
}

// -----

// Null experts: the logits have E + 2 columns; k may reach E'.

// CHECK-LABEL: func.func @route_null_experts
// CHECK-SAME: (%[[L:.*]]: tensor<?x10xf32>)
func.func @route_null_experts(%logits: tensor<?x10xf32>) -> tensor<?x10xf32> {
  // CHECK: moe.route %[[L]] {routing = #moe.routing<k = 10, null_experts = 2>} : tensor<?x10xf32> -> tensor<?x10xf32>, tensor<?x10xi32>
  %w, %e = moe.route %logits {routing = #moe.routing<k = 10, null_experts = 2>}
      : tensor<?x10xf32> -> tensor<?x10xf32>, tensor<?x10xi32>
  return %w : tensor<?x10xf32>
}

//===----------------------------------------------------------------------===//
// moe.dispatch
//===----------------------------------------------------------------------===//

// -----

// Ragged, dynamic T: N = T * K is dynamic.

// CHECK-LABEL: func.func @dispatch_ragged_dynamic
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf32>, %[[W:.*]]: tensor<?x2xf32>, %[[E:.*]]: tensor<?x2xi32>)
func.func @dispatch_ragged_dynamic(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>)
    -> (tensor<?x16xf32>, tensor<?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>) {
  // CHECK: %[[D:.*]], %[[R:.*]], %[[C:.*]], %[[S:.*]], %[[CW:.*]] = moe.dispatch %[[X]], %[[W]], %[[E]] : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  %d, %r, %c, %s, %cw = moe.dispatch %x, %w, %e
      : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32>
      -> tensor<?x16xf32>, tensor<?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  // CHECK: return %[[D]], %[[R]], %[[C]], %[[S]], %[[CW]]
  return %d, %r, %c, %s, %cw
      : tensor<?x16xf32>, tensor<?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
}

// -----

// Ragged, static T = 6, K = 2: N = 12.

// CHECK-LABEL: func.func @dispatch_ragged_static
// CHECK-SAME: (%[[X:.*]]: tensor<6x16xf16>, %[[W:.*]]: tensor<6x2xf16>, %[[E:.*]]: tensor<6x2xi32>)
func.func @dispatch_ragged_static(%x: tensor<6x16xf16>, %w: tensor<6x2xf16>, %e: tensor<6x2xi32>)
    -> tensor<12x16xf16> {
  // CHECK: moe.dispatch %[[X]], %[[W]], %[[E]] : tensor<6x16xf16>, tensor<6x2xf16>, tensor<6x2xi32> -> tensor<12x16xf16>, tensor<12xi32>, tensor<4xi32>, tensor<6x2xi32>, tensor<6x2xf16>
  %d, %r, %c, %s, %cw = moe.dispatch %x, %w, %e
      : tensor<6x16xf16>, tensor<6x2xf16>, tensor<6x2xi32>
      -> tensor<12x16xf16>, tensor<12xi32>, tensor<4xi32>, tensor<6x2xi32>, tensor<6x2xf16>
  return %d : tensor<12x16xf16>
}

// -----

// Padded, gshard, static T = 10, K = 2, E = 8, factor 1.25:
// C = ceil(1.25 * 10 * 2 / 8) = ceil(3.125) = 4.

// CHECK-LABEL: func.func @dispatch_padded_gshard
// CHECK-SAME: (%[[X:.*]]: tensor<10x16xf32>, %[[W:.*]]: tensor<10x2xf32>, %[[E:.*]]: tensor<10x2xi32>)
func.func @dispatch_padded_gshard(%x: tensor<10x16xf32>, %w: tensor<10x2xf32>, %e: tensor<10x2xi32>)
    -> tensor<8x4x16xf32> {
  // CHECK: moe.dispatch %[[X]], %[[W]], %[[E]] {capacity = #moe.capacity<factor = 1.25>} : tensor<10x16xf32>, tensor<10x2xf32>, tensor<10x2xi32> -> tensor<8x4x16xf32>, tensor<8x4xi32>, tensor<8xi32>, tensor<10x2xi32>, tensor<10x2xf32>
  %d, %r, %c, %s, %cw = moe.dispatch %x, %w, %e {capacity = #moe.capacity<factor = 1.25>}
      : tensor<10x16xf32>, tensor<10x2xf32>, tensor<10x2xi32>
      -> tensor<8x4x16xf32>, tensor<8x4xi32>, tensor<8xi32>, tensor<10x2xi32>, tensor<10x2xf32>
  return %d : tensor<8x4x16xf32>
}

// -----

// Padded, tutel, static T = 10, K = 2, E = 4, factor 1.5:
// C = 2 * floor(1.5 * ceil(10 / 4)) = 8, max(8, min_capacity = 10) = 10,
// rounded up to a multiple of align = 4: 12.

// CHECK-LABEL: func.func @dispatch_padded_tutel
// CHECK-SAME: (%[[X:.*]]: tensor<10x16xbf16>, %[[W:.*]]: tensor<10x2xbf16>, %[[E:.*]]: tensor<10x2xi32>)
func.func @dispatch_padded_tutel(%x: tensor<10x16xbf16>, %w: tensor<10x2xbf16>, %e: tensor<10x2xi32>)
    -> tensor<4x12x16xbf16> {
  // CHECK: moe.dispatch %[[X]], %[[W]], %[[E]] {capacity = #moe.capacity<factor = 1.5, formula = tutel, min_capacity = 10, align = 4>} : tensor<10x16xbf16>, tensor<10x2xbf16>, tensor<10x2xi32> -> tensor<4x12x16xbf16>, tensor<4x12xi32>, tensor<4xi32>, tensor<10x2xi32>, tensor<10x2xbf16>
  %d, %r, %c, %s, %cw = moe.dispatch %x, %w, %e
      {capacity = #moe.capacity<factor = 1.5, formula = tutel, min_capacity = 10, align = 4>}
      : tensor<10x16xbf16>, tensor<10x2xbf16>, tensor<10x2xi32>
      -> tensor<4x12x16xbf16>, tensor<4x12xi32>, tensor<4xi32>, tensor<10x2xi32>, tensor<10x2xbf16>
  return %d : tensor<4x12x16xbf16>
}

// -----

// Padded, fixed capacity: C = 5 even for dynamic T.

// CHECK-LABEL: func.func @dispatch_padded_fixed_dynamic
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf16>, %[[W:.*]]: tensor<?x1xf16>, %[[E:.*]]: tensor<?x1xi32>)
func.func @dispatch_padded_fixed_dynamic(%x: tensor<?x16xf16>, %w: tensor<?x1xf16>, %e: tensor<?x1xi32>)
    -> tensor<8x5x16xf16> {
  // CHECK: moe.dispatch %[[X]], %[[W]], %[[E]] {capacity = #moe.capacity<formula = fixed, fixed = 5, order = choice_major, on_drop = pass_through>} : tensor<?x16xf16>, tensor<?x1xf16>, tensor<?x1xi32> -> tensor<8x5x16xf16>, tensor<8x5xi32>, tensor<8xi32>, tensor<?x1xi32>, tensor<?x1xf16>
  %d, %r, %c, %s, %cw = moe.dispatch %x, %w, %e
      {capacity = #moe.capacity<formula = fixed, fixed = 5, order = choice_major,
                                on_drop = pass_through>}
      : tensor<?x16xf16>, tensor<?x1xf16>, tensor<?x1xi32>
      -> tensor<8x5x16xf16>, tensor<8x5xi32>, tensor<8xi32>, tensor<?x1xi32>, tensor<?x1xf16>
  return %d : tensor<8x5x16xf16>
}

// -----

// Padded, gshard, dynamic T: C is dynamic.

// CHECK-LABEL: func.func @dispatch_padded_dynamic
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf32>, %[[W:.*]]: tensor<?x2xf32>, %[[E:.*]]: tensor<?x2xi32>)
func.func @dispatch_padded_dynamic(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>)
    -> tensor<8x?x16xf32> {
  // CHECK: moe.dispatch %[[X]], %[[W]], %[[E]] {capacity = #moe.capacity<factor = 2.0, order = score, renormalize = true>} : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<8x?x16xf32>, tensor<8x?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  %d, %r, %c, %s, %cw = moe.dispatch %x, %w, %e
      {capacity = #moe.capacity<factor = 2.0, order = score, renormalize = true>}
      : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32>
      -> tensor<8x?x16xf32>, tensor<8x?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return %d : tensor<8x?x16xf32>
}

//===----------------------------------------------------------------------===//
// moe.experts
//===----------------------------------------------------------------------===//

// -----

// Ragged segments through a two-matrix MLP body.

// CHECK-LABEL: func.func @experts_ragged
// CHECK-SAME: (%[[D:.*]]: tensor<?x16xf32>, %[[C:.*]]: tensor<8xi32>, %[[W1:.*]]: tensor<8x16x32xf32>, %[[W2:.*]]: tensor<8x32x16xf32>)
func.func @experts_ragged(%d: tensor<?x16xf32>, %counts: tensor<8xi32>,
                          %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) -> tensor<?x16xf32> {
  // CHECK: %[[O:.*]] = moe.experts %[[D]], %[[C]] weights(%[[W1]], %[[W2]] : tensor<8x16x32xf32>, tensor<8x32x16xf32>) : tensor<?x16xf32>, tensor<8xi32> -> tensor<?x16xf32> {
  // CHECK-NEXT: ^bb0(%[[SEG:.*]]: tensor<?x16xf32>, %[[A:.*]]: tensor<16x32xf32>, %[[B:.*]]: tensor<32x16xf32>):
  // CHECK: %[[H:.*]] = linalg.matmul ins(%[[SEG]], %[[A]] : tensor<?x16xf32>, tensor<16x32xf32>)
  // CHECK: %[[OUT:.*]] = linalg.matmul ins(%[[H]], %[[B]] : tensor<?x32xf32>, tensor<32x16xf32>)
  // CHECK: moe.yield %[[OUT]] : tensor<?x16xf32>
  // CHECK-NEXT: }
  %o = moe.experts %d, %counts
      weights(%w1, %w2 : tensor<8x16x32xf32>, tensor<8x32x16xf32>)
      : tensor<?x16xf32>, tensor<8xi32> -> tensor<?x16xf32> {
  ^bb0(%seg: tensor<?x16xf32>, %a: tensor<16x32xf32>, %b: tensor<32x16xf32>):
    %c0 = arith.constant 0 : index
    %zero = arith.constant 0.0 : f32
    %n = tensor.dim %seg, %c0 : tensor<?x16xf32>
    %e0 = tensor.empty(%n) : tensor<?x32xf32>
    %f0 = linalg.fill ins(%zero : f32) outs(%e0 : tensor<?x32xf32>) -> tensor<?x32xf32>
    %h = linalg.matmul ins(%seg, %a : tensor<?x16xf32>, tensor<16x32xf32>)
                       outs(%f0 : tensor<?x32xf32>) -> tensor<?x32xf32>
    %e1 = tensor.empty(%n) : tensor<?x16xf32>
    %f1 = linalg.fill ins(%zero : f32) outs(%e1 : tensor<?x16xf32>) -> tensor<?x16xf32>
    %out = linalg.matmul ins(%h, %b : tensor<?x32xf32>, tensor<32x16xf32>)
                         outs(%f1 : tensor<?x16xf32>) -> tensor<?x16xf32>
    moe.yield %out : tensor<?x16xf32>
  }
  // CHECK: return %[[O]] : tensor<?x16xf32>
  return %o : tensor<?x16xf32>
}

// -----

// Padded segments, no stacked weights, output width differs from the input
// width; discardable attributes print after `attributes`.

// CHECK-LABEL: func.func @experts_padded_no_weights
// CHECK-SAME: (%[[D:.*]]: tensor<8x4x16xbf16>, %[[C:.*]]: tensor<8xi32>)
func.func @experts_padded_no_weights(%d: tensor<8x4x16xbf16>, %counts: tensor<8xi32>) -> tensor<8x4x8xbf16> {
  // CHECK: moe.experts %[[D]], %[[C]] : tensor<8x4x16xbf16>, tensor<8xi32> -> tensor<8x4x8xbf16> attributes {moe.test} {
  // CHECK-NEXT: ^bb0(%[[SEG:.*]]: tensor<?x16xbf16>):
  // CHECK-NEXT: %[[C0:.*]] = arith.constant 0 : index
  // CHECK-NEXT: %[[N:.*]] = tensor.dim %[[SEG]], %[[C0]] : tensor<?x16xbf16>
  // CHECK-NEXT: %[[S:.*]] = tensor.extract_slice %[[SEG]][0, 0] [%[[N]], 8] [1, 1] : tensor<?x16xbf16> to tensor<?x8xbf16>
  // CHECK-NEXT: moe.yield %[[S]] : tensor<?x8xbf16>
  // CHECK-NEXT: }
  %o = moe.experts %d, %counts : tensor<8x4x16xbf16>, tensor<8xi32> -> tensor<8x4x8xbf16>
      attributes {moe.test} {
  ^bb0(%seg: tensor<?x16xbf16>):
    %c0 = arith.constant 0 : index
    %n = tensor.dim %seg, %c0 : tensor<?x16xbf16>
    %s = tensor.extract_slice %seg[0, 0] [%n, 8] [1, 1] : tensor<?x16xbf16> to tensor<?x8xbf16>
    moe.yield %s : tensor<?x8xbf16>
  }
  return %o : tensor<8x4x8xbf16>
}

//===----------------------------------------------------------------------===//
// moe.grouped_matmul
//===----------------------------------------------------------------------===//

// -----

// CHECK-LABEL: func.func @grouped_matmul_ragged
// CHECK-SAME: (%[[L:.*]]: tensor<?x16xf32>, %[[R:.*]]: tensor<8x16x32xf32>, %[[C:.*]]: tensor<8xi32>)
func.func @grouped_matmul_ragged(%lhs: tensor<?x16xf32>, %rhs: tensor<8x16x32xf32>,
                                 %counts: tensor<8xi32>) -> tensor<?x32xf32> {
  // CHECK: %[[O:.*]] = moe.grouped_matmul %[[L]], %[[R]], %[[C]] : tensor<?x16xf32>, tensor<8x16x32xf32>, tensor<8xi32> -> tensor<?x32xf32>
  %o = moe.grouped_matmul %lhs, %rhs, %counts
      : tensor<?x16xf32>, tensor<8x16x32xf32>, tensor<8xi32> -> tensor<?x32xf32>
  // CHECK: return %[[O]]
  return %o : tensor<?x32xf32>
}

// -----

// CHECK-LABEL: func.func @grouped_matmul_padded
// CHECK-SAME: (%[[L:.*]]: tensor<8x4x16xbf16>, %[[R:.*]]: tensor<8x16x32xbf16>, %[[C:.*]]: tensor<8xi32>)
func.func @grouped_matmul_padded(%lhs: tensor<8x4x16xbf16>, %rhs: tensor<8x16x32xbf16>,
                                 %counts: tensor<8xi32>) -> tensor<8x4x32xbf16> {
  // CHECK: moe.grouped_matmul %[[L]], %[[R]], %[[C]] : tensor<8x4x16xbf16>, tensor<8x16x32xbf16>, tensor<8xi32> -> tensor<8x4x32xbf16>
  %o = moe.grouped_matmul %lhs, %rhs, %counts
      : tensor<8x4x16xbf16>, tensor<8x16x32xbf16>, tensor<8xi32> -> tensor<8x4x32xbf16>
  return %o : tensor<8x4x32xbf16>
}

// -----

// transpose_rhs: rhs is [E, M, K].

// CHECK-LABEL: func.func @grouped_matmul_transpose_rhs
// CHECK-SAME: (%[[L:.*]]: tensor<12x16xf16>, %[[R:.*]]: tensor<8x32x16xf16>, %[[C:.*]]: tensor<8xi32>)
func.func @grouped_matmul_transpose_rhs(%lhs: tensor<12x16xf16>, %rhs: tensor<8x32x16xf16>,
                                        %counts: tensor<8xi32>) -> tensor<12x32xf16> {
  // CHECK: moe.grouped_matmul %[[L]], %[[R]], %[[C]] {transpose_rhs} : tensor<12x16xf16>, tensor<8x32x16xf16>, tensor<8xi32> -> tensor<12x32xf16>
  %o = moe.grouped_matmul %lhs, %rhs, %counts {transpose_rhs}
      : tensor<12x16xf16>, tensor<8x32x16xf16>, tensor<8xi32> -> tensor<12x32xf16>
  return %o : tensor<12x32xf16>
}

//===----------------------------------------------------------------------===//
// moe.combine
//===----------------------------------------------------------------------===//

// -----

// CHECK-LABEL: func.func @combine_ragged
// CHECK-SAME: (%[[O:.*]]: tensor<?x16xf32>, %[[S:.*]]: tensor<?x2xi32>, %[[W:.*]]: tensor<?x2xf32>)
func.func @combine_ragged(%out: tensor<?x16xf32>, %slot: tensor<?x2xi32>,
                          %w: tensor<?x2xf32>) -> tensor<?x16xf32> {
  // CHECK: %[[Y:.*]] = moe.combine %[[O]], %[[S]], %[[W]] : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x16xf32>
  %y = moe.combine %out, %slot, %w
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x16xf32>
  // CHECK: return %[[Y]]
  return %y : tensor<?x16xf32>
}

// -----

// Padded expert outputs, dropped tokens pass through.

// CHECK-LABEL: func.func @combine_padded_passthrough
// CHECK-SAME: (%[[O:.*]]: tensor<8x4x16xf16>, %[[S:.*]]: tensor<10x2xi32>, %[[W:.*]]: tensor<10x2xf16>, %[[X:.*]]: tensor<10x16xf16>)
func.func @combine_padded_passthrough(%out: tensor<8x4x16xf16>, %slot: tensor<10x2xi32>,
                                      %w: tensor<10x2xf16>, %x: tensor<10x16xf16>) -> tensor<10x16xf16> {
  // CHECK: moe.combine %[[O]], %[[S]], %[[W]] passthrough(%[[X]] : tensor<10x16xf16>) : tensor<8x4x16xf16>, tensor<10x2xi32>, tensor<10x2xf16> -> tensor<10x16xf16>
  %y = moe.combine %out, %slot, %w passthrough(%x : tensor<10x16xf16>)
      : tensor<8x4x16xf16>, tensor<10x2xi32>, tensor<10x2xf16> -> tensor<10x16xf16>
  return %y : tensor<10x16xf16>
}

//===----------------------------------------------------------------------===//
// moe.expert_stats
//===----------------------------------------------------------------------===//

// -----

// CHECK-LABEL: func.func @expert_stats
// CHECK-SAME: (%[[E:.*]]: tensor<?x2xi32>, %[[W:.*]]: tensor<?x2xbf16>)
func.func @expert_stats(%e: tensor<?x2xi32>, %w: tensor<?x2xbf16>) -> (tensor<8xi64>, tensor<8xf32>) {
  // CHECK: %[[C:.*]], %[[M:.*]] = moe.expert_stats %[[E]], %[[W]] : tensor<?x2xi32>, tensor<?x2xbf16> -> tensor<8xi64>, tensor<8xf32>
  %c, %m = moe.expert_stats %e, %w : tensor<?x2xi32>, tensor<?x2xbf16> -> tensor<8xi64>, tensor<8xf32>
  // CHECK: return %[[C]], %[[M]]
  return %c, %m : tensor<8xi64>, tensor<8xf32>
}

//===----------------------------------------------------------------------===//
// moe.device_group and collectives
//===----------------------------------------------------------------------===//

// -----

// CHECK: moe.device_group @ep size = 4
moe.device_group @ep size = 4

// CHECK-LABEL: func.func @all_to_all
// CHECK-SAME: (%[[X:.*]]: tensor<8x16xf32>, %[[Y:.*]]: tensor<?x16xbf16>)
func.func @all_to_all(%x: tensor<8x16xf32>, %y: tensor<?x16xbf16>) -> (tensor<2x64xf32>, tensor<?x16xbf16>) {
  // Split rows, concatenate columns: [8, 16] -> [2, 64].
  // CHECK: %[[A:.*]] = moe.all_to_all %[[X]] on @ep {concat_dim = 1 : i64, split_dim = 0 : i64} : tensor<8x16xf32> -> tensor<2x64xf32>
  %a = moe.all_to_all %x on @ep {split_dim = 0 : i64, concat_dim = 1 : i64}
      : tensor<8x16xf32> -> tensor<2x64xf32>
  // split_dim = concat_dim: the shape is unchanged (dynamic T).
  // CHECK: %[[B:.*]] = moe.all_to_all %[[Y]] on @ep {concat_dim = 0 : i64, split_dim = 0 : i64} : tensor<?x16xbf16> -> tensor<?x16xbf16>
  %b = moe.all_to_all %y on @ep {split_dim = 0 : i64, concat_dim = 0 : i64}
      : tensor<?x16xbf16> -> tensor<?x16xbf16>
  // CHECK: return %[[A]], %[[B]]
  return %a, %b : tensor<2x64xf32>, tensor<?x16xbf16>
}

// -----

// CHECK: moe.device_group @ep size = 4
moe.device_group @ep size = 4

// CHECK-LABEL: func.func @all_gather
// CHECK-SAME: (%[[X:.*]]: tensor<2x16xf16>, %[[Y:.*]]: tensor<?x16xf32>)
func.func @all_gather(%x: tensor<2x16xf16>, %y: tensor<?x16xf32>) -> (tensor<8x16xf16>, tensor<?x16xf32>) {
  // CHECK: %[[A:.*]] = moe.all_gather %[[X]] on @ep {dim = 0 : i64} : tensor<2x16xf16> -> tensor<8x16xf16>
  %a = moe.all_gather %x on @ep {dim = 0 : i64} : tensor<2x16xf16> -> tensor<8x16xf16>
  // CHECK: %[[B:.*]] = moe.all_gather %[[Y]] on @ep {dim = 0 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  %b = moe.all_gather %y on @ep {dim = 0 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return %a, %b : tensor<8x16xf16>, tensor<?x16xf32>
}

// -----

// CHECK: moe.device_group @ep size = 4
moe.device_group @ep size = 4

// CHECK-LABEL: func.func @reduce_scatter
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf32>, %[[Y:.*]]: tensor<8x16xbf16>)
func.func @reduce_scatter(%x: tensor<?x16xf32>, %y: tensor<8x16xbf16>) -> (tensor<?x4xf32>, tensor<2x16xbf16>) {
  // CHECK: %[[A:.*]] = moe.reduce_scatter %[[X]] on @ep {dim = 1 : i64} : tensor<?x16xf32> -> tensor<?x4xf32>
  %a = moe.reduce_scatter %x on @ep {dim = 1 : i64} : tensor<?x16xf32> -> tensor<?x4xf32>
  // CHECK: %[[B:.*]] = moe.reduce_scatter %[[Y]] on @ep {dim = 0 : i64} : tensor<8x16xbf16> -> tensor<2x16xbf16>
  %b = moe.reduce_scatter %y on @ep {dim = 0 : i64} : tensor<8x16xbf16> -> tensor<2x16xbf16>
  return %a, %b : tensor<?x4xf32>, tensor<2x16xbf16>
}

// -----

// Collectives also accept integer tensors.

// CHECK: moe.device_group @tp size = 2
moe.device_group @tp size = 2

// CHECK-LABEL: func.func @collective_i32
// CHECK-SAME: (%[[X:.*]]: tensor<4x3xi32>)
func.func @collective_i32(%x: tensor<4x3xi32>) -> tensor<8x3xi32> {
  // CHECK: moe.all_gather %[[X]] on @tp {dim = 0 : i64} : tensor<4x3xi32> -> tensor<8x3xi32>
  %a = moe.all_gather %x on @tp {dim = 0 : i64} : tensor<4x3xi32> -> tensor<8x3xi32>
  return %a : tensor<8x3xi32>
}

// -----

// Negative and integer literals for real-valued fields.
// CHECK-LABEL: func.func @negative_reals
// CHECK: ffn = #moe.ffn<gate_up = concatenated, up_shift = -1.5>
// CHECK: routing = #moe.routing<k = 2, scaling = 3.0>
func.func @negative_reals(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x64xf32>, %w2: tensor<8x32x16xf32>) -> tensor<?x16xf32> {
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>) w1(%w1 : tensor<8x16x64xf32>) w2(%w2 : tensor<8x32x16xf32>) {ffn = #moe.ffn<gate_up = concatenated, up_shift = -1.5>, routing = #moe.routing<k = 2, scaling = 3>} -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// CHECK-LABEL: func.func @expert_ffn_forms
// CHECK: moe.expert_ffn %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%{{.*}} : tensor<4x16x32xbf16>) w3(%{{.*}} : tensor<4x16x32xbf16>) w2(%{{.*}} : tensor<4x32x16xbf16>) {ffn = #moe.ffn<>} -> tensor<?x16xf32>
// CHECK: moe.expert_ffn %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x16xf32>, tensor<4x3xi32>, tensor<4xi32> w1(%{{.*}} : tensor<4x16x64xf32>) w2(%{{.*}} : tensor<4x32x16xf32>) b1(%{{.*}} : tensor<4x64xf32>) b2(%{{.*}} : tensor<4x16xf32>) {ffn = #moe.ffn<gate_up = interleaved>} -> tensor<4x3x16xf32>
func.func @expert_ffn_forms(%x: tensor<?x16xf32>, %rows: tensor<?xi32>, %prow: tensor<4x3xi32>, %c: tensor<4xi32>,
                            %w1: tensor<4x16x32xbf16>, %w3: tensor<4x16x32xbf16>, %w2: tensor<4x32x16xbf16>,
                            %f1: tensor<4x16x64xf32>, %f2: tensor<4x32x16xf32>, %b1: tensor<4x64xf32>, %b2: tensor<4x16xf32>) -> (tensor<?x16xf32>, tensor<4x3x16xf32>) {
  %a = moe.expert_ffn %x, %rows, %c : tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%w1 : tensor<4x16x32xbf16>) w3(%w3 : tensor<4x16x32xbf16>) w2(%w2 : tensor<4x32x16xbf16>) {ffn = #moe.ffn<>} -> tensor<?x16xf32>
  %b = moe.expert_ffn %x, %prow, %c : tensor<?x16xf32>, tensor<4x3xi32>, tensor<4xi32> w1(%f1 : tensor<4x16x64xf32>) w2(%f2 : tensor<4x32x16xf32>) b1(%b1 : tensor<4x64xf32>) b2(%b2 : tensor<4x16xf32>) {ffn = #moe.ffn<gate_up = interleaved>} -> tensor<4x3x16xf32>
  return %a, %b : tensor<?x16xf32>, tensor<4x3x16xf32>
}

// -----

// Shared experts folded in as always-selected experts 4 and 5.
// CHECK-LABEL: func.func @expert_ffn_shared
// CHECK: moe.expert_ffn %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x16xf32>, tensor<?xi32>, tensor<6xi32> w1(%{{.*}} : tensor<4x16x32xf32>) w3(%{{.*}} : tensor<4x16x32xf32>) w2(%{{.*}} : tensor<4x32x16xf32>) shared_w1(%{{.*}} : tensor<2x16x32xf32>) shared_w3(%{{.*}} : tensor<2x16x32xf32>) shared_w2(%{{.*}} : tensor<2x32x16xf32>) {ffn = #moe.ffn<>} -> tensor<?x16xf32>
func.func @expert_ffn_shared(%x: tensor<?x16xf32>, %rows: tensor<?xi32>, %c: tensor<6xi32>,
                             %w1: tensor<4x16x32xf32>, %w3: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>,
                             %s1: tensor<2x16x32xf32>, %s3: tensor<2x16x32xf32>, %s2: tensor<2x32x16xf32>) -> tensor<?x16xf32> {
  %a = moe.expert_ffn %x, %rows, %c : tensor<?x16xf32>, tensor<?xi32>, tensor<6xi32> w1(%w1 : tensor<4x16x32xf32>) w3(%w3 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) shared_w1(%s1 : tensor<2x16x32xf32>) shared_w3(%s3 : tensor<2x16x32xf32>) shared_w2(%s2 : tensor<2x32x16xf32>) {ffn = #moe.ffn<>} -> tensor<?x16xf32>
  return %a : tensor<?x16xf32>
}

// -----

// The gate-weighted combine fused in: [T, D] result.
// CHECK-LABEL: func.func @expert_ffn_combined
// CHECK: moe.expert_ffn %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%{{.*}} : tensor<4x16x32xf32>) w2(%{{.*}} : tensor<4x32x16xf32>) combine(%{{.*}}, %{{.*}} : tensor<?x2xi32>, tensor<?x2xf32>) {ffn = #moe.ffn<kind = mlp>} -> tensor<?x16xf32>
func.func @expert_ffn_combined(%x: tensor<?x16xf32>, %rows: tensor<?xi32>, %c: tensor<4xi32>,
                               %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>,
                               %slot: tensor<?x2xi32>, %cw: tensor<?x2xf32>) -> tensor<?x16xf32> {
  %a = moe.expert_ffn %x, %rows, %c : tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) combine(%slot, %cw : tensor<?x2xi32>, tensor<?x2xf32>) {ffn = #moe.ffn<kind = mlp>} -> tensor<?x16xf32>
  return %a : tensor<?x16xf32>
}

// -----

// CHECK-LABEL: func.func @load_balance
// CHECK: moe.load_balance %{{.*}}, %{{.*}} : tensor<?x2xi32>, tensor<?x8xf32> -> tensor<f32>
func.func @load_balance(%e: tensor<?x2xi32>, %p: tensor<?x8xf32>) -> tensor<f32> {
  %r = moe.load_balance %e, %p : tensor<?x2xi32>, tensor<?x8xf32> -> tensor<f32>
  return %r : tensor<f32>
}
