// RUN: moe-opt %s -split-input-file -verify-diagnostics

// One case per verifier message of lib/Dialect/Moe/IR/MoeAttrs.cpp and
// lib/Dialect/Moe/IR/MoeOps.cpp. Attribute errors are reported at the `<` of
// the attribute, which is always on the line of the op here.

//===----------------------------------------------------------------------===//
// #moe.routing
//===----------------------------------------------------------------------===//

func.func @routing_k_zero(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{routing k must be at least 1, got 0}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 0>} : tensor<?x8xf32> -> tensor<?x1xf32>, tensor<?x1xi32>
  return
}

// -----

func.func @routing_scaling_not_positive(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{routing scaling factor must be positive and finite, got 0}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2, scaling = 0.0>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @routing_scaling_infinite(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{routing scaling must be finite}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2, scaling = 1.0e400>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @routing_top_p_above_one(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{top_p must be in (0, 1], got 1.5}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = top_p, k = 2, top_p = 1.5>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @routing_top_p_zero(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{top_p must be in (0, 1], got 0}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = top_p, k = 2, top_p = 0.0>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @routing_threshold_negative(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{routing threshold must be in [0, 1], got 1.5}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = threshold, k = 2, threshold = 1.5>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @routing_null_experts_negative(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{null_experts must not be negative, got -1}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2, null_experts = -1>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

// A negative real must be written as an integer literal here: the parser of
// the floating-point fields reads `-1.0` as a malformed integer.
func.func @routing_epsilon_negative(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{routing epsilon must be finite and >= 0, got -1}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2, normalize = selected, epsilon = -1.0e-3>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @routing_group_score_k_zero(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{num_groups, top_groups and group_score_k must be at least 1}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = grouped_top_k, k = 2, num_groups = 2, group_score_k = 0>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @routing_top_groups_exceed(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{top_groups (3) exceeds num_groups (2)}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = grouped_top_k, k = 2, num_groups = 2, top_groups = 3>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @routing_num_groups_not_grouped(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{num_groups is only meaningful for grouped_top_k}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2, num_groups = 2>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @routing_sinkhorn_zero_iterations(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{sinkhorn_iterations must be at least 1, got 0}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = sinkhorn, k = 1, sinkhorn_iterations = 0>} : tensor<?x8xf32> -> tensor<?x1xf32>, tensor<?x1xi32>
  return
}

// -----

func.func @routing_expert_choice_capacity_factor(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{routing capacity_factor must be positive, got 0}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = expert_choice, k = 2, capacity_factor = 0.0>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @routing_sparse_mixer_k(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{sparse_mixer selects exactly 2 experts, got k = 3}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = sparse_mixer, k = 3>} : tensor<?x8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return
}

// -----

func.func @routing_sparse_mixer_jitter(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{routing jitter_eps must be in (0, 1), got 1}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = sparse_mixer, k = 2, jitter_eps = 1.0>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @routing_softmax_selected_normalized(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{softmax_selected weights already sum to 1; normalize = selected is redundant}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2, score = softmax_selected, normalize = selected>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @routing_expert_choice_null_experts(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{expert_choice cannot be combined with null experts}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = expert_choice, k = 2, null_experts = 2>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

//===----------------------------------------------------------------------===//
// #moe.capacity
//===----------------------------------------------------------------------===//

// -----

func.func @capacity_fixed_zero(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{fixed capacity must be at least 1, got 0}}
  %d:5 = moe.dispatch %x, %w, %e {capacity = #moe.capacity<formula = fixed>} : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<8x?x16xf32>, tensor<8x?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @capacity_factor_not_positive(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{capacity factor must be positive, got 0}}
  %d:5 = moe.dispatch %x, %w, %e {capacity = #moe.capacity<factor = 0.0>} : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<8x?x16xf32>, tensor<8x?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @capacity_min_negative(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{min_capacity must not be negative, got -4}}
  %d:5 = moe.dispatch %x, %w, %e {capacity = #moe.capacity<min_capacity = -4>} : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<8x?x16xf32>, tensor<8x?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @capacity_align_zero(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{capacity align must be at least 1, got 0}}
  %d:5 = moe.dispatch %x, %w, %e {capacity = #moe.capacity<align = 0>} : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<8x?x16xf32>, tensor<8x?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @capacity_pass_through_renormalize(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{on_drop = pass_through keeps dropped weights; it cannot be combined with renormalize}}
  %d:5 = moe.dispatch %x, %w, %e {capacity = #moe.capacity<on_drop = pass_through, renormalize = true>} : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<8x?x16xf32>, tensor<8x?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

//===----------------------------------------------------------------------===//
// #moe.ffn
//===----------------------------------------------------------------------===//

// -----

func.func @ffn_gate_up_on_mlp(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x64xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{gate_up layout only applies to kind = glu}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>) w1(%w1 : tensor<8x16x64xf32>) w2(%w2 : tensor<8x32x16xf32>) {ffn = #moe.ffn<kind = mlp, gate_up = concatenated>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @ffn_alpha_not_positive(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x64xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{activation alpha must be positive, got 0}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>) w1(%w1 : tensor<8x16x64xf32>) w2(%w2 : tensor<8x32x16xf32>) {ffn = #moe.ffn<gate_up = concatenated, alpha = 0.0>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

// Integer literal: see @routing_epsilon_negative.
func.func @ffn_limit_negative(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x64xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{clamp limit must be >= 0 (0 disables it), got -7}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>) w1(%w1 : tensor<8x16x64xf32>) w2(%w2 : tensor<8x32x16xf32>) {ffn = #moe.ffn<gate_up = concatenated, limit = -7.5>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

// A decimal literal too large for a double parses as infinity.
func.func @ffn_up_shift_infinite(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x64xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{up_shift must be finite}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>) w1(%w1 : tensor<8x16x64xf32>) w2(%w2 : tensor<8x32x16xf32>) {ffn = #moe.ffn<gate_up = concatenated, up_shift = 1.0e400>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @ffn_up_shift_on_mlp(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{up_shift and limit only apply to kind = glu}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>) w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>) {ffn = #moe.ffn<kind = mlp, up_shift = 1.0>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @ffn_limit_on_mlp(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{up_shift and limit only apply to kind = glu}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>) w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>) {ffn = #moe.ffn<kind = mlp, limit = 7.0>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @ffn_alpha_not_silu(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{alpha scales the sigmoid of silu; it cannot be used with activation gelu}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>) w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>) {ffn = #moe.ffn<kind = mlp, activation = gelu, alpha = 1.702>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

//===----------------------------------------------------------------------===//
// moe.layer
//===----------------------------------------------------------------------===//

// -----

func.func @layer_input_rank(%x: tensor<16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w3: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{'moe.layer' op input must be a rank-2 tensor [T, D], got 'tensor<16xf32>'}}
  %y = moe.layer %x : tensor<16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w3(%w3 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<>, routing = #moe.routing<k = 2>} -> tensor<16xf32>
  return
}

// -----

func.func @layer_dynamic_model_width(%x: tensor<4x?xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w3: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{the model width D of the input must be static}}
  %y = moe.layer %x : tensor<4x?xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w3(%w3 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<>, routing = #moe.routing<k = 2>} -> tensor<4x?xf32>
  return
}

// -----

func.func @layer_result_type(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w3: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{result type 'tensor<?x16xf16>' must equal the input type 'tensor<?x16xf32>'}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w3(%w3 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<>, routing = #moe.routing<k = 2>} -> tensor<?x16xf16>
  return
}

// -----

func.func @layer_router_rank(%x: tensor<?x16xf32>, %wg: tensor<2x16x8xf32>, %w1: tensor<8x16x32xf32>, %w3: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{router must be a rank-2 tensor [D, E], got 'tensor<2x16x8xf32>'}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<2x16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w3(%w3 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_router_dynamic(%x: tensor<?x16xf32>, %wg: tensor<16x?xf32>, %w1: tensor<8x16x32xf32>, %w3: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{router weight must have a static shape}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x?xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w3(%w3 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

// With out_in layout the router is [E, D]; an in_out-shaped router is wrong.
func.func @layer_router_input_width(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x32x16xf32>, %w2: tensor<8x16x32xf32>) {
  // expected-error @+1 {{router input width 8 does not match the model width 16}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x32x16xf32>) w2(%w2 : tensor<8x16x32xf32>)
         {ffn = #moe.ffn<kind = mlp, layout = out_in>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_w1_rank(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{w1 must be a rank-3 tensor [E, D, F], got 'tensor<16x32xf32>'}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_w2_rank(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<32x16xf32>) {
  // expected-error @+1 {{w2 must be a rank-3 tensor [E, F, D], got 'tensor<32x16xf32>'}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<32x16xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_num_experts_dynamic(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<?x16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{the number of experts (leading dimension of w1) must be static and positive}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<?x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_num_experts_zero(%x: tensor<?x16xf32>, %wg: tensor<16x0xf32>, %w1: tensor<0x16x32xf32>, %w2: tensor<0x32x16xf32>) {
  // expected-error @+1 {{the number of experts (leading dimension of w1) must be static and positive}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x0xf32>)
         w1(%w1 : tensor<0x16x32xf32>) w2(%w2 : tensor<0x32x16xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 1>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_w2_num_experts(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<4x32x16xf32>) {
  // expected-error @+1 {{w2 has 4 experts but w1 has 8}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_weights_dynamic(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x?xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{expert weights must have static shapes}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x?xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_w1_input_width(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x12x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{w1 input width 12 does not match the model width 16}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x12x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_w2_output_width(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x12xf32>) {
  // expected-error @+1 {{w2 output width 12 does not match the model width 16}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x12xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_w1_output_width(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x24xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{w1 output width 24 must be 32 (the FFN width of w2)}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x24xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_w1_output_width_fused(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{w1 output width 32 must be 64 (2 x the FFN width of w2, fused gate/up)}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<gate_up = interleaved>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_glu_needs_w3(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{a GLU expert with separate gate/up weights needs w3}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_w3_with_mlp(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w3: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{w3 is only used by a GLU with separate gate/up weights}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w3(%w3 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_w3_with_fused(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x64xf32>, %w3: tensor<8x16x64xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{w3 is only used by a GLU with separate gate/up weights}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x64xf32>) w3(%w3 : tensor<8x16x64xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<gate_up = concatenated>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_w3_type(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w3: tensor<8x16x32xbf16>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{w3 type 'tensor<8x16x32xbf16>' must equal w1 type 'tensor<8x16x32xf32>'}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w3(%w3 : tensor<8x16x32xbf16>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

// A fused gate/up bias is [E, 2F].
func.func @layer_b1_shape(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x64xf32>, %w2: tensor<8x32x16xf32>, %b1: tensor<8x32xf32>) {
  // expected-error @+1 {{b1 must be [8, 64], got 'tensor<8x32xf32>'}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x64xf32>) w2(%w2 : tensor<8x32x16xf32>) b1(%b1 : tensor<8x32xf32>)
         {ffn = #moe.ffn<gate_up = concatenated>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_b2_shape(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>, %b2: tensor<16xf32>) {
  // expected-error @+1 {{b2 must be [8, 16], got 'tensor<16xf32>'}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>) b2(%b2 : tensor<16xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_router_columns(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{router has 8 columns (2 null) but there are 8 experts}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2, null_experts = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_k_exceeds_experts(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{k (9) exceeds the number of experts (8)}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 9>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_selection_bias_policy(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %sb: tensor<8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{a selection bias is not supported by policy expert_choice}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>) selection_bias(%sb : tensor<8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<policy = expert_choice, k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_router_bias_shape(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %rb: tensor<16xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{router bias must be [8], got 'tensor<16xf32>'}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>) router_bias(%rb : tensor<16xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_expert_choice_capacity(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) {
  // expected-error @+1 {{expert_choice routing is balanced by construction and takes no capacity}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {capacity = #moe.capacity<>, ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<policy = expert_choice, k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_shared_needs_w2(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>, %sw1: tensor<2x16x24xf32>) {
  // expected-error @+1 {{shared experts need both shared_w1 and shared_w2}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>) shared_w1(%sw1 : tensor<2x16x24xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_shared_gate_alone(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>, %sg: tensor<16x1xf32>) {
  // expected-error @+1 {{shared experts need both shared_w1 and shared_w2}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>) shared_gate(%sg : tensor<16x1xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

// The stacked-FFN checks name the shared operands with their prefix.
func.func @layer_shared_w1_input_width(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>, %sw1: tensor<2x8x24xf32>, %sw2: tensor<2x24x16xf32>) {
  // expected-error @+1 {{shared_w1 input width 8 does not match the model width 16}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         shared_w1(%sw1 : tensor<2x8x24xf32>) shared_w2(%sw2 : tensor<2x24x16xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_shared_needs_w3(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w3: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>, %sw1: tensor<2x16x24xf32>, %sw2: tensor<2x24x16xf32>) {
  // expected-error @+1 {{a GLU expert with separate gate/up weights needs shared_w3}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w3(%w3 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         shared_w1(%sw1 : tensor<2x16x24xf32>) shared_w2(%sw2 : tensor<2x24x16xf32>)
         {ffn = #moe.ffn<>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_shared_w2_num_experts(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>, %sw1: tensor<2x16x24xf32>, %sw2: tensor<1x24x16xf32>) {
  // expected-error @+1 {{shared_w2 has 1 experts but shared_w1 has 2}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         shared_w1(%sw1 : tensor<2x16x24xf32>) shared_w2(%sw2 : tensor<1x24x16xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_shared_gate_shape(%x: tensor<?x16xf32>, %wg: tensor<16x8xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>, %sw1: tensor<2x16x24xf32>, %sw2: tensor<2x24x16xf32>, %sg: tensor<16x2xf32>) {
  // expected-error @+1 {{shared_gate must map the model width 16 to 1 column, got 'tensor<16x2xf32>'}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x8xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         shared_w1(%sw1 : tensor<2x16x24xf32>) shared_w2(%sw2 : tensor<2x24x16xf32>) shared_gate(%sg : tensor<16x2xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

// -----

// With out_in layout the shared gate is [1, D].
func.func @layer_shared_gate_out_in(%x: tensor<?x16xf32>, %wg: tensor<8x16xf32>, %w1: tensor<8x32x16xf32>, %w2: tensor<8x16x32xf32>, %sw1: tensor<2x24x16xf32>, %sw2: tensor<2x16x24xf32>, %sg: tensor<16x1xf32>) {
  // expected-error @+1 {{shared_gate must map the model width 16 to 1 column, got 'tensor<16x1xf32>'}}
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<8x16xf32>)
         w1(%w1 : tensor<8x32x16xf32>) w2(%w2 : tensor<8x16x32xf32>)
         shared_w1(%sw1 : tensor<2x24x16xf32>) shared_w2(%sw2 : tensor<2x16x24xf32>) shared_gate(%sg : tensor<16x1xf32>)
         {ffn = #moe.ffn<kind = mlp, layout = out_in>, routing = #moe.routing<k = 2>} -> tensor<?x16xf32>
  return
}

//===----------------------------------------------------------------------===//
// moe.route (and the routing checks shared with moe.layer)
//===----------------------------------------------------------------------===//

// -----

func.func @route_logits_rank(%l: tensor<8xf32>) {
  // expected-error @+1 {{logits must be a rank-2 tensor [T, E], got 'tensor<8xf32>'}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2>} : tensor<8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @route_dynamic_experts(%l: tensor<4x?xf32>) {
  // expected-error @+1 {{the number of experts (logits dimension 1) must be static}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2>} : tensor<4x?xf32> -> tensor<4x2xf32>, tensor<4x2xi32>
  return
}

// -----

func.func @route_weights_rank(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{weights must be a rank-2 tensor [T, K], got 'tensor<8xf32>'}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2>} : tensor<4x8xf32> -> tensor<8xf32>, tensor<4x2xi32>
  return
}

// -----

func.func @route_experts_rank(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{experts must be a rank-2 tensor [T, K], got 'tensor<4x2x1xi32>'}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2>} : tensor<4x8xf32> -> tensor<4x2xf32>, tensor<4x2x1xi32>
  return
}

// -----

func.func @route_weights_token_count(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{token count of weights is 5 but must be 4}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2>} : tensor<4x8xf32> -> tensor<5x2xf32>, tensor<4x2xi32>
  return
}

// -----

func.func @route_experts_token_count(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{token count of experts is 3 but must be 4}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2>} : tensor<4x8xf32> -> tensor<?x2xf32>, tensor<3x2xi32>
  return
}

// -----

func.func @route_experts_slot_count(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{slot count of experts (vs weights) is 3 but must be 2}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x3xi32>
  return
}

// -----

func.func @route_slots_vs_k(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{results have 3 slots per token but routing k is 2}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2>} : tensor<?x8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return
}

// -----

func.func @route_dynamic_slots(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{results have ? slots per token but routing k is 2}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2>} : tensor<?x8xf32> -> tensor<?x?xf32>, tensor<?x?xi32>
  return
}

// -----

func.func @route_weights_element_type(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{weights element type 'f16' must match the logits element type 'f32'}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2>} : tensor<?x8xf32> -> tensor<?x2xf16>, tensor<?x2xi32>
  return
}

// -----

func.func @route_null_experts_only(%l: tensor<?x4xf32>) {
  // expected-error @+1 {{null_experts (4) leaves no real expert among 4 router columns}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2, null_experts = 4>} : tensor<?x4xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @route_k_exceeds_experts(%l: tensor<?x4xf32>) {
  // expected-error @+1 {{k (5) exceeds the number of experts (4)}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 5>} : tensor<?x4xf32> -> tensor<?x5xf32>, tensor<?x5xi32>
  return
}

// -----

func.func @route_grouped_num_groups_divide(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{grouped_top_k: num_groups (3) must divide the number of experts (8)}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = grouped_top_k, k = 2, num_groups = 3>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @route_grouped_group_score_k(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{grouped_top_k: group_score_k (3) exceeds the group size (2)}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = grouped_top_k, k = 2, num_groups = 4, group_score_k = 3>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @route_grouped_kept_groups_too_small(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{grouped_top_k: the 1 kept groups hold 2 experts, fewer than k = 4}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = grouped_top_k, k = 4, num_groups = 4, top_groups = 1>} : tensor<?x8xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  return
}

// -----

func.func @route_top_p_softmax_selected(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{top_p needs probabilities over all experts; score = softmax_selected is not allowed}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = top_p, k = 2, score = softmax_selected, top_p = 0.9>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @route_selection_bias_policy(%l: tensor<?x8xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{a selection bias is not supported by policy sinkhorn}}
  %w, %e = moe.route %l bias(%b : tensor<8xf32>) {routing = #moe.routing<policy = sinkhorn, k = 1>} : tensor<?x8xf32> -> tensor<?x1xf32>, tensor<?x1xi32>
  return
}

// -----

func.func @route_selection_bias_rank(%l: tensor<?x8xf32>, %b: tensor<1x8xf32>) {
  // expected-error @+1 {{selection bias must be a rank-1 tensor [E], got 'tensor<1x8xf32>'}}
  %w, %e = moe.route %l bias(%b : tensor<1x8xf32>) {routing = #moe.routing<k = 2>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @route_selection_bias_length(%l: tensor<?x8xf32>, %b: tensor<4xf32>) {
  // expected-error @+1 {{selection bias has 4 entries but there are 8 experts}}
  %w, %e = moe.route %l bias(%b : tensor<4xf32>) {routing = #moe.routing<policy = grouped_top_k, k = 2, num_groups = 2>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

//===----------------------------------------------------------------------===//
// moe.dispatch
//===----------------------------------------------------------------------===//

// -----

func.func @dispatch_input_rank(%x: tensor<16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{input must be a rank-2 tensor [T, D], got 'tensor<16xf32>'}}
  %d:5 = moe.dispatch %x, %w, %e : tensor<16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @dispatch_weights_rank(%x: tensor<?x16xf32>, %w: tensor<?xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{weights must be a rank-2 tensor [T, K], got 'tensor<?xf32>'}}
  %d:5 = moe.dispatch %x, %w, %e : tensor<?x16xf32>, tensor<?xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @dispatch_experts_token_count(%x: tensor<6x16xf32>, %w: tensor<6x2xf32>, %e: tensor<5x2xi32>) {
  // expected-error @+1 {{token count of experts is 5 but must be 6}}
  %d:5 = moe.dispatch %x, %w, %e : tensor<6x16xf32>, tensor<6x2xf32>, tensor<5x2xi32> -> tensor<12x16xf32>, tensor<12xi32>, tensor<8xi32>, tensor<6x2xi32>, tensor<6x2xf32>
  return
}

// -----

func.func @dispatch_dynamic_slots(%x: tensor<?x16xf32>, %w: tensor<?x?xf32>, %e: tensor<?x?xi32>) {
  // expected-error @+1 {{the number of slots K must be static}}
  %d:5 = moe.dispatch %x, %w, %e : tensor<?x16xf32>, tensor<?x?xf32>, tensor<?x?xi32> -> tensor<?x16xf32>, tensor<?xi32>, tensor<8xi32>, tensor<?x?xi32>, tensor<?x?xf32>
  return
}

// -----

func.func @dispatch_counts_rank(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{counts must be a rank-1 tensor [E], got 'tensor<8x1xi32>'}}
  %d:5 = moe.dispatch %x, %w, %e : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?xi32>, tensor<8x1xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @dispatch_dynamic_experts(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{the number of experts (counts length) must be static and positive}}
  %d:5 = moe.dispatch %x, %w, %e : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @dispatch_combine_weights_rank(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{combine_weights must be a rank-2 tensor [T, K], got 'tensor<?xf32>'}}
  %d:5 = moe.dispatch %x, %w, %e : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?xf32>
  return
}

// -----

func.func @dispatch_token_slot_token_count(%x: tensor<6x16xf32>, %w: tensor<6x2xf32>, %e: tensor<6x2xi32>) {
  // expected-error @+1 {{token count of token_slot is 7 but must be 6}}
  %d:5 = moe.dispatch %x, %w, %e : tensor<6x16xf32>, tensor<6x2xf32>, tensor<6x2xi32> -> tensor<12x16xf32>, tensor<12xi32>, tensor<8xi32>, tensor<7x2xi32>, tensor<6x2xf32>
  return
}

// -----

func.func @dispatch_token_slot_slots(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{slot count of token_slot is 3 but must be 2}}
  %d:5 = moe.dispatch %x, %w, %e : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?xi32>, tensor<8xi32>, tensor<?x3xi32>, tensor<?x?xf32>
  return
}

// -----

func.func @dispatch_combine_weights_element_type(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{combine_weights must have the element type of weights}}
  %d:5 = moe.dispatch %x, %w, %e : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xbf16>
  return
}

// -----

func.func @dispatch_dispatched_element_type(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{dispatched must have the element type of input}}
  %d:5 = moe.dispatch %x, %w, %e : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x16xf16>, tensor<?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @dispatch_ragged_rank(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{ragged dispatched must be a rank-2 tensor [T*K, D], got 'tensor<8x?x16xf32>'}}
  %d:5 = moe.dispatch %x, %w, %e : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<8x?x16xf32>, tensor<8x?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @dispatch_ragged_row_token_rank(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{ragged row_token must be a rank-1 tensor [T*K], got 'tensor<?x1xi32>'}}
  %d:5 = moe.dispatch %x, %w, %e : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?x1xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @dispatch_ragged_row_count(%x: tensor<6x16xf32>, %w: tensor<6x2xf32>, %e: tensor<6x2xi32>) {
  // expected-error @+1 {{ragged row count (T*K) is 6 but must be 12}}
  %d:5 = moe.dispatch %x, %w, %e : tensor<6x16xf32>, tensor<6x2xf32>, tensor<6x2xi32> -> tensor<6x16xf32>, tensor<6xi32>, tensor<8xi32>, tensor<6x2xi32>, tensor<6x2xf32>
  return
}

// -----

func.func @dispatch_ragged_width(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{dispatched width is 32 but must be 16}}
  %d:5 = moe.dispatch %x, %w, %e : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x32xf32>, tensor<?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @dispatch_row_token_length(%x: tensor<6x16xf32>, %w: tensor<6x2xf32>, %e: tensor<6x2xi32>) {
  // expected-error @+1 {{row_token length is 6 but must be 12}}
  %d:5 = moe.dispatch %x, %w, %e : tensor<6x16xf32>, tensor<6x2xf32>, tensor<6x2xi32> -> tensor<12x16xf32>, tensor<6xi32>, tensor<8xi32>, tensor<6x2xi32>, tensor<6x2xf32>
  return
}

// -----

func.func @dispatch_padded_rank(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{padded dispatched must be a rank-3 tensor [E, C, D], got 'tensor<?x16xf32>'}}
  %d:5 = moe.dispatch %x, %w, %e {capacity = #moe.capacity<>} : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @dispatch_padded_row_token_rank(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{padded row_token must be a rank-2 tensor [E, C], got 'tensor<?xi32>'}}
  %d:5 = moe.dispatch %x, %w, %e {capacity = #moe.capacity<>} : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<8x?x16xf32>, tensor<?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @dispatch_padded_experts(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{padded dispatched has 4 experts but counts has 8}}
  %d:5 = moe.dispatch %x, %w, %e {capacity = #moe.capacity<>} : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<4x?x16xf32>, tensor<4x?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @dispatch_padded_width(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{dispatched width is 8 but must be 16}}
  %d:5 = moe.dispatch %x, %w, %e {capacity = #moe.capacity<>} : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<8x?x8xf32>, tensor<8x?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

// gshard, T = 10, K = 2, E = 8, factor 1.25: C = ceil(3.125) = 4, not 3.
func.func @dispatch_capacity_gshard(%x: tensor<10x16xf32>, %w: tensor<10x2xf32>, %e: tensor<10x2xi32>) {
  // expected-error @+1 {{capacity (dispatched dimension 1) is 3 but must be 4}}
  %d:5 = moe.dispatch %x, %w, %e {capacity = #moe.capacity<factor = 1.25>} : tensor<10x16xf32>, tensor<10x2xf32>, tensor<10x2xi32> -> tensor<8x3x16xf32>, tensor<8x3xi32>, tensor<8xi32>, tensor<10x2xi32>, tensor<10x2xf32>
  return
}

// -----

// fixed = 5 rounded up to align = 4: C = 8, checked even for dynamic T.
func.func @dispatch_capacity_fixed(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{capacity (dispatched dimension 1) is 5 but must be 8}}
  %d:5 = moe.dispatch %x, %w, %e {capacity = #moe.capacity<formula = fixed, fixed = 5, align = 4>} : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<8x5x16xf32>, tensor<8x5xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @dispatch_padded_row_token_shape(%x: tensor<10x16xf32>, %w: tensor<10x2xf32>, %e: tensor<10x2xi32>) {
  // expected-error @+1 {{padded row_token must be [E, C] = [8, 4], got 'tensor<8x5xi32>'}}
  %d:5 = moe.dispatch %x, %w, %e {capacity = #moe.capacity<factor = 1.25>} : tensor<10x16xf32>, tensor<10x2xf32>, tensor<10x2xi32> -> tensor<8x4x16xf32>, tensor<8x5xi32>, tensor<8xi32>, tensor<10x2xi32>, tensor<10x2xf32>
  return
}

//===----------------------------------------------------------------------===//
// moe.experts
//===----------------------------------------------------------------------===//

// -----

func.func @experts_dispatched_rank(%d: tensor<16xf32>, %c: tensor<8xi32>) {
  // expected-error @+1 {{dispatched must be ragged [N, D] or padded [E, C, D], got 'tensor<16xf32>'}}
  %o = moe.experts %d, %c : tensor<16xf32>, tensor<8xi32> -> tensor<16xf32> {
  ^bb0(%seg: tensor<?x16xf32>):
    moe.yield %seg : tensor<?x16xf32>
  }
  return
}

// -----

func.func @experts_counts_rank(%d: tensor<?x16xf32>, %c: tensor<8x1xi32>) {
  // expected-error @+1 {{counts must be a rank-1 tensor [E], got 'tensor<8x1xi32>'}}
  %o = moe.experts %d, %c : tensor<?x16xf32>, tensor<8x1xi32> -> tensor<?x16xf32> {
  ^bb0(%seg: tensor<?x16xf32>):
    moe.yield %seg : tensor<?x16xf32>
  }
  return
}

// -----

func.func @experts_dynamic_experts(%d: tensor<?x16xf32>, %c: tensor<?xi32>) {
  // expected-error @+1 {{the number of experts (counts length) must be static and positive}}
  %o = moe.experts %d, %c : tensor<?x16xf32>, tensor<?xi32> -> tensor<?x16xf32> {
  ^bb0(%seg: tensor<?x16xf32>):
    moe.yield %seg : tensor<?x16xf32>
  }
  return
}

// -----

func.func @experts_padded_experts(%d: tensor<4x2x16xf32>, %c: tensor<8xi32>) {
  // expected-error @+1 {{padded dispatched has 4 experts but counts has 8}}
  %o = moe.experts %d, %c : tensor<4x2x16xf32>, tensor<8xi32> -> tensor<4x2x16xf32> {
  ^bb0(%seg: tensor<?x16xf32>):
    moe.yield %seg : tensor<?x16xf32>
  }
  return
}

// -----

func.func @experts_dynamic_input_width(%d: tensor<?x?xf32>, %c: tensor<8xi32>) {
  // expected-error @+1 {{the input width of dispatched must be static}}
  %o = moe.experts %d, %c : tensor<?x?xf32>, tensor<8xi32> -> tensor<?x16xf32> {
  ^bb0(%seg: tensor<?x16xf32>):
    moe.yield %seg : tensor<?x16xf32>
  }
  return
}

// -----

func.func @experts_weight_not_stacked(%d: tensor<?x16xf32>, %c: tensor<8xi32>, %w: tensor<4x16x32xf32>) {
  // expected-error @+1 {{weight #0 'tensor<4x16x32xf32>' must be stacked over the 8 experts (leading dimension 8)}}
  %o = moe.experts %d, %c weights(%w : tensor<4x16x32xf32>) : tensor<?x16xf32>, tensor<8xi32> -> tensor<?x16xf32> {
  ^bb0(%seg: tensor<?x16xf32>, %a: tensor<16x32xf32>):
    moe.yield %seg : tensor<?x16xf32>
  }
  return
}

// -----

func.func @experts_result_rank(%d: tensor<?x16xf32>, %c: tensor<8xi32>) {
  // expected-error @+1 {{result rank 3 must equal the rank of dispatched (2)}}
  %o = moe.experts %d, %c : tensor<?x16xf32>, tensor<8xi32> -> tensor<8x?x16xf32> {
  ^bb0(%seg: tensor<?x16xf32>):
    moe.yield %seg : tensor<?x16xf32>
  }
  return
}

// -----

func.func @experts_result_dimension(%d: tensor<8x4x16xf32>, %c: tensor<8xi32>) {
  // expected-error @+1 {{result dimension 1 is 2 but must be 4}}
  %o = moe.experts %d, %c : tensor<8x4x16xf32>, tensor<8xi32> -> tensor<8x2x16xf32> {
  ^bb0(%seg: tensor<?x16xf32>):
    moe.yield %seg : tensor<?x16xf32>
  }
  return
}

// -----

func.func @experts_dynamic_output_width(%d: tensor<?x16xf32>, %c: tensor<8xi32>) {
  // expected-error @+1 {{the output width of the result must be static}}
  %o = moe.experts %d, %c : tensor<?x16xf32>, tensor<8xi32> -> tensor<?x?xf32> {
  ^bb0(%seg: tensor<?x16xf32>):
    %r = tensor.cast %seg : tensor<?x16xf32> to tensor<?x?xf32>
    moe.yield %r : tensor<?x?xf32>
  }
  return
}

// -----

func.func @experts_body_arg_count(%d: tensor<?x16xf32>, %c: tensor<8xi32>, %w: tensor<8x16x32xf32>) {
  // expected-error @+1 {{body must take 2 arguments (the segment and one slice per weight), got 1}}
  %o = moe.experts %d, %c weights(%w : tensor<8x16x32xf32>) : tensor<?x16xf32>, tensor<8xi32> -> tensor<?x16xf32> {
  ^bb0(%seg: tensor<?x16xf32>):
    moe.yield %seg : tensor<?x16xf32>
  }
  return
}

// -----

// The segment has a dynamic row count, even for a padded (static C) layout.
func.func @experts_body_segment_type(%d: tensor<8x4x16xf32>, %c: tensor<8xi32>) {
  // expected-error @+1 {{body argument #0 must be the segment 'tensor<?x16xf32>', got 'tensor<4x16xf32>'}}
  %o = moe.experts %d, %c : tensor<8x4x16xf32>, tensor<8xi32> -> tensor<8x4x16xf32> {
  ^bb0(%seg: tensor<4x16xf32>):
    %r = tensor.cast %seg : tensor<4x16xf32> to tensor<?x16xf32>
    moe.yield %r : tensor<?x16xf32>
  }
  return
}

// -----

func.func @experts_body_slice_type(%d: tensor<?x16xf32>, %c: tensor<8xi32>, %w: tensor<8x16x32xf32>) {
  // expected-error @+1 {{body argument #1 must be the per-expert slice 'tensor<16x32xf32>' of weight #0, got 'tensor<8x16x32xf32>'}}
  %o = moe.experts %d, %c weights(%w : tensor<8x16x32xf32>) : tensor<?x16xf32>, tensor<8xi32> -> tensor<?x16xf32> {
  ^bb0(%seg: tensor<?x16xf32>, %a: tensor<8x16x32xf32>):
    moe.yield %seg : tensor<?x16xf32>
  }
  return
}

// -----

// Only reachable with a terminator that has no parent constraint.
func.func @experts_body_terminator(%d: tensor<?x16xf32>, %c: tensor<8xi32>) {
  // expected-error @+1 {{body must end with moe.yield}}
  %o = moe.experts %d, %c : tensor<?x16xf32>, tensor<8xi32> -> tensor<?x16xf32> {
  ^bb0(%seg: tensor<?x16xf32>):
    llvm.unreachable
  }
  return
}

// -----

func.func @experts_body_yield_type(%d: tensor<?x16xf32>, %c: tensor<8xi32>) {
  // expected-error @+1 {{body yields 'tensor<?x16xf32>' but the result needs segments of type 'tensor<?x8xf32>'}}
  %o = moe.experts %d, %c : tensor<?x16xf32>, tensor<8xi32> -> tensor<?x8xf32> {
  ^bb0(%seg: tensor<?x16xf32>):
    moe.yield %seg : tensor<?x16xf32>
  }
  return
}

//===----------------------------------------------------------------------===//
// moe.grouped_matmul
//===----------------------------------------------------------------------===//

// -----

func.func @grouped_matmul_rhs_rank(%l: tensor<?x16xf32>, %r: tensor<16x32xf32>, %c: tensor<8xi32>) {
  // expected-error @+1 {{rhs must be a rank-3 tensor [E, K, M], got 'tensor<16x32xf32>'}}
  %o = moe.grouped_matmul %l, %r, %c : tensor<?x16xf32>, tensor<16x32xf32>, tensor<8xi32> -> tensor<?x32xf32>
  return
}

// -----

func.func @grouped_matmul_counts_rank(%l: tensor<?x16xf32>, %r: tensor<8x16x32xf32>, %c: tensor<8x2xi32>) {
  // expected-error @+1 {{counts must be a rank-1 tensor [E], got 'tensor<8x2xi32>'}}
  %o = moe.grouped_matmul %l, %r, %c : tensor<?x16xf32>, tensor<8x16x32xf32>, tensor<8x2xi32> -> tensor<?x32xf32>
  return
}

// -----

func.func @grouped_matmul_experts(%l: tensor<?x16xf32>, %r: tensor<8x16x32xf32>, %c: tensor<4xi32>) {
  // expected-error @+1 {{rhs has 8 experts but counts has 4}}
  %o = moe.grouped_matmul %l, %r, %c : tensor<?x16xf32>, tensor<8x16x32xf32>, tensor<4xi32> -> tensor<?x32xf32>
  return
}

// -----

func.func @grouped_matmul_dynamic_experts(%l: tensor<?x16xf32>, %r: tensor<?x16x32xf32>, %c: tensor<?xi32>) {
  // expected-error @+1 {{rhs has ? experts but counts has ?}}
  %o = moe.grouped_matmul %l, %r, %c : tensor<?x16xf32>, tensor<?x16x32xf32>, tensor<?xi32> -> tensor<?x32xf32>
  return
}

// -----

func.func @grouped_matmul_lhs_rank(%l: tensor<16xf32>, %r: tensor<8x16x32xf32>, %c: tensor<8xi32>) {
  // expected-error @+1 {{lhs must be ragged [N, K] or padded [E, C, K], got 'tensor<16xf32>'}}
  %o = moe.grouped_matmul %l, %r, %c : tensor<16xf32>, tensor<8x16x32xf32>, tensor<8xi32> -> tensor<32xf32>
  return
}

// -----

func.func @grouped_matmul_padded_experts(%l: tensor<4x2x16xf32>, %r: tensor<8x16x32xf32>, %c: tensor<8xi32>) {
  // expected-error @+1 {{padded lhs has 4 experts but rhs has 8}}
  %o = moe.grouped_matmul %l, %r, %c : tensor<4x2x16xf32>, tensor<8x16x32xf32>, tensor<8xi32> -> tensor<4x2x32xf32>
  return
}

// -----

func.func @grouped_matmul_contraction(%l: tensor<?x32xf32>, %r: tensor<8x16x32xf32>, %c: tensor<8xi32>) {
  // expected-error @+1 {{contraction width of lhs is 32 but must be 16}}
  %o = moe.grouped_matmul %l, %r, %c : tensor<?x32xf32>, tensor<8x16x32xf32>, tensor<8xi32> -> tensor<?x32xf32>
  return
}

// -----

// transpose_rhs: rhs is [E, M, K], so K = 32 here.
func.func @grouped_matmul_contraction_transposed(%l: tensor<?x16xf32>, %r: tensor<8x16x32xf32>, %c: tensor<8xi32>) {
  // expected-error @+1 {{contraction width of lhs is 16 but must be 32}}
  %o = moe.grouped_matmul %l, %r, %c {transpose_rhs} : tensor<?x16xf32>, tensor<8x16x32xf32>, tensor<8xi32> -> tensor<?x16xf32>
  return
}

// -----

func.func @grouped_matmul_result_rank(%l: tensor<?x16xf32>, %r: tensor<8x16x32xf32>, %c: tensor<8xi32>) {
  // expected-error @+1 {{result must have the rank of lhs}}
  %o = moe.grouped_matmul %l, %r, %c : tensor<?x16xf32>, tensor<8x16x32xf32>, tensor<8xi32> -> tensor<8x?x32xf32>
  return
}

// -----

func.func @grouped_matmul_result_dimension(%l: tensor<12x16xf32>, %r: tensor<8x16x32xf32>, %c: tensor<8xi32>) {
  // expected-error @+1 {{result dimension 0 is 10 but must be 12}}
  %o = moe.grouped_matmul %l, %r, %c : tensor<12x16xf32>, tensor<8x16x32xf32>, tensor<8xi32> -> tensor<10x32xf32>
  return
}

// -----

func.func @grouped_matmul_result_width(%l: tensor<8x4x16xf32>, %r: tensor<8x16x32xf32>, %c: tensor<8xi32>) {
  // expected-error @+1 {{result width is 16 but must be 32}}
  %o = moe.grouped_matmul %l, %r, %c : tensor<8x4x16xf32>, tensor<8x16x32xf32>, tensor<8xi32> -> tensor<8x4x16xf32>
  return
}

//===----------------------------------------------------------------------===//
// moe.combine
//===----------------------------------------------------------------------===//

// -----

func.func @combine_expert_out_rank(%o: tensor<16xf32>, %s: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{expert_out must be ragged [N, D] or padded [E, C, D], got 'tensor<16xf32>'}}
  %y = moe.combine %o, %s, %w : tensor<16xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_result_rank(%o: tensor<?x16xf32>, %s: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{result must be a rank-2 tensor [T, D], got 'tensor<16xf32>'}}
  %y = moe.combine %o, %s, %w : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<16xf32>
  return
}

// -----

func.func @combine_token_slot_rank(%o: tensor<?x16xf32>, %s: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{token_slot must be a rank-2 tensor [T, K], got 'tensor<?xi32>'}}
  %y = moe.combine %o, %s, %w : tensor<?x16xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_weights_token_count(%o: tensor<?x16xf32>, %s: tensor<4x2xi32>, %w: tensor<5x2xf32>) {
  // expected-error @+1 {{token count of weights is 5 but must be 4}}
  %y = moe.combine %o, %s, %w : tensor<?x16xf32>, tensor<4x2xi32>, tensor<5x2xf32> -> tensor<4x16xf32>
  return
}

// -----

func.func @combine_token_slot_slots(%o: tensor<?x16xf32>, %s: tensor<?x1xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{slot count of token_slot (vs weights) is 1 but must be 2}}
  %y = moe.combine %o, %s, %w : tensor<?x16xf32>, tensor<?x1xi32>, tensor<?x2xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_result_width(%o: tensor<8x4x16xf32>, %s: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{result width is 32 but must be 16}}
  %y = moe.combine %o, %s, %w : tensor<8x4x16xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @combine_result_element_type(%o: tensor<?x16xf32>, %s: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{result must have the element type of expert_out}}
  %y = moe.combine %o, %s, %w : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x16xbf16>
  return
}

// -----

func.func @combine_passthrough_type(%o: tensor<?x16xf32>, %s: tensor<?x2xi32>, %w: tensor<?x2xf32>, %x: tensor<4x16xf32>) {
  // expected-error @+1 {{passthrough type 'tensor<4x16xf32>' must equal the result type 'tensor<?x16xf32>'}}
  %y = moe.combine %o, %s, %w passthrough(%x : tensor<4x16xf32>) : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x16xf32>
  return
}

//===----------------------------------------------------------------------===//
// moe.expert_stats
//===----------------------------------------------------------------------===//

// -----

func.func @expert_stats_experts_rank(%e: tensor<4x2x1xi32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{experts must be a rank-2 tensor [T, K], got 'tensor<4x2x1xi32>'}}
  %c, %m = moe.expert_stats %e, %w : tensor<4x2x1xi32>, tensor<4x2xf32> -> tensor<8xi64>, tensor<8xf32>
  return
}

// -----

func.func @expert_stats_weights_token_count(%e: tensor<4x2xi32>, %w: tensor<3x2xf32>) {
  // expected-error @+1 {{token count of weights is 3 but must be 4}}
  %c, %m = moe.expert_stats %e, %w : tensor<4x2xi32>, tensor<3x2xf32> -> tensor<8xi64>, tensor<8xf32>
  return
}

// -----

func.func @expert_stats_counts_rank(%e: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{counts must be a rank-1 tensor [E], got 'tensor<8x1xi64>'}}
  %c, %m = moe.expert_stats %e, %w : tensor<?x2xi32>, tensor<?x2xf32> -> tensor<8x1xi64>, tensor<8xf32>
  return
}

// -----

func.func @expert_stats_gate_mass_rank(%e: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{gate_mass must be a rank-1 tensor [E], got 'tensor<8x1xf32>'}}
  %c, %m = moe.expert_stats %e, %w : tensor<?x2xi32>, tensor<?x2xf32> -> tensor<8xi64>, tensor<8x1xf32>
  return
}

// -----

func.func @expert_stats_dynamic_experts(%e: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{the number of experts must be static and positive}}
  %c, %m = moe.expert_stats %e, %w : tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?xi64>, tensor<?xf32>
  return
}

// -----

func.func @expert_stats_gate_mass_length(%e: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{gate_mass has 4 entries but counts has 8}}
  %c, %m = moe.expert_stats %e, %w : tensor<?x2xi32>, tensor<?x2xf32> -> tensor<8xi64>, tensor<4xf32>
  return
}

//===----------------------------------------------------------------------===//
// moe.device_group and collectives
//===----------------------------------------------------------------------===//

// -----

// expected-error @+1 {{device group size must be at least 1, got 0}}
moe.device_group @ep size = 0

// -----

moe.device_group @ep size = 4

func.func @all_to_all_split_dim(%x: tensor<8x16xf32>) {
  // expected-error @+1 {{split_dim 2 is out of range for a rank-2 tensor}}
  %y = moe.all_to_all %x on @ep {split_dim = 2 : i64, concat_dim = 0 : i64} : tensor<8x16xf32> -> tensor<8x16xf32>
  return
}

// -----

moe.device_group @ep size = 4

func.func @all_to_all_concat_dim(%x: tensor<8x16xf32>) {
  // expected-error @+1 {{concat_dim -1 is out of range for a rank-2 tensor}}
  %y = moe.all_to_all %x on @ep {split_dim = 0 : i64, concat_dim = -1 : i64} : tensor<8x16xf32> -> tensor<8x16xf32>
  return
}

// -----

moe.device_group @ep size = 4

func.func @all_gather_dim(%x: tensor<8x16xf32>) {
  // expected-error @+1 {{dim 2 is out of range for a rank-2 tensor}}
  %y = moe.all_gather %x on @ep {dim = 2 : i64} : tensor<8x16xf32> -> tensor<8x16xf32>
  return
}

// -----

moe.device_group @ep size = 4

func.func @reduce_scatter_dim(%x: tensor<f32>) {
  // expected-error @+1 {{dim 0 is out of range for a rank-0 tensor}}
  %y = moe.reduce_scatter %x on @ep {dim = 0 : i64} : tensor<f32> -> tensor<f32>
  return
}

// -----

func.func @all_to_all_unknown_group(%x: tensor<8x16xf32>) {
  // expected-error @+1 {{'ep' does not name a moe.device_group}}
  %y = moe.all_to_all %x on @ep {split_dim = 0 : i64, concat_dim = 0 : i64} : tensor<8x16xf32> -> tensor<8x16xf32>
  return
}

// -----

// A symbol of another kind is not a device group.
func.func @all_gather_group_is_func(%x: tensor<8x16xf32>) {
  // expected-error @+1 {{'all_gather_group_is_func' does not name a moe.device_group}}
  %y = moe.all_gather %x on @all_gather_group_is_func {dim = 0 : i64} : tensor<8x16xf32> -> tensor<32x16xf32>
  return
}

// -----

moe.device_group @ep size = 4

func.func @all_to_all_split_not_divisible(%x: tensor<6x16xf32>) {
  // expected-error @+1 {{split dimension 0 (6) is not divisible by the group size 4}}
  %y = moe.all_to_all %x on @ep {split_dim = 0 : i64, concat_dim = 1 : i64} : tensor<6x16xf32> -> tensor<2x64xf32>
  return
}

// -----

moe.device_group @ep size = 4

func.func @all_to_all_result_rank(%x: tensor<8x16xf32>) {
  // expected-error @+1 {{result 'tensor<128xf32>' must have the rank and element type of the input 'tensor<8x16xf32>'}}
  %y = moe.all_to_all %x on @ep {split_dim = 0 : i64, concat_dim = 0 : i64} : tensor<8x16xf32> -> tensor<128xf32>
  return
}

// -----

moe.device_group @ep size = 4

func.func @all_gather_result_element_type(%x: tensor<8x16xf32>) {
  // expected-error @+1 {{result 'tensor<32x16xf16>' must have the rank and element type of the input 'tensor<8x16xf32>'}}
  %y = moe.all_gather %x on @ep {dim = 0 : i64} : tensor<8x16xf32> -> tensor<32x16xf16>
  return
}

// -----

moe.device_group @ep size = 4

func.func @all_to_all_result_dimension(%x: tensor<8x16xf32>) {
  // expected-error @+1 {{result dimension 1 is 16 but must be 64}}
  %y = moe.all_to_all %x on @ep {split_dim = 0 : i64, concat_dim = 1 : i64} : tensor<8x16xf32> -> tensor<2x16xf32>
  return
}

// -----

moe.device_group @ep size = 4

func.func @all_gather_result_dimension(%x: tensor<8x16xf32>) {
  // expected-error @+1 {{result dimension 0 is 8 but must be 32}}
  %y = moe.all_gather %x on @ep {dim = 0 : i64} : tensor<8x16xf32> -> tensor<8x16xf32>
  return
}

// -----

moe.device_group @ep size = 4

func.func @reduce_scatter_not_divisible(%x: tensor<8x6xf32>) {
  // expected-error @+1 {{dimension 1 (6) is not divisible by the group size 4}}
  %y = moe.reduce_scatter %x on @ep {dim = 1 : i64} : tensor<8x6xf32> -> tensor<8x1xf32>
  return
}

// -----

moe.device_group @ep size = 4

func.func @reduce_scatter_result_dimension(%x: tensor<8x16xf32>) {
  // expected-error @+1 {{result dimension 0 is 8 but must be 2}}
  %y = moe.reduce_scatter %x on @ep {dim = 0 : i64} : tensor<8x16xf32> -> tensor<8x16xf32>
  return
}

// -----

func.func @stats_rank0(%e: tensor<i32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{experts must be a rank-2 tensor [T, K]}}
  %c, %m = moe.expert_stats %e, %w : tensor<i32>, tensor<4x2xf32> -> tensor<8xi64>, tensor<8xf32>
  return
}

// -----

func.func @dispatch_static_capacity_dynamic_tokens(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) {
  // expected-error @+1 {{capacity (dispatched dimension 1) depends on the dynamic token count and must be '?', got 7}}
  %d, %r, %c, %s, %cw = moe.dispatch %x, %w, %e {capacity = #moe.capacity<factor = 1.0>} : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<8x7x16xf32>, tensor<8x7xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @expert_ffn_bf16_result(%x: tensor<?x16xf32>, %rows: tensor<?xi32>, %c: tensor<4xi32>, %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>) {
  // expected-error @+1 {{result must be f32 (the FFN accumulates in f32)}}
  %a = moe.expert_ffn %x, %rows, %c : tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) {ffn = #moe.ffn<kind = mlp>} -> tensor<?x16xbf16>
  return
}

// -----

func.func @expert_ffn_counts(%x: tensor<?x16xf32>, %rows: tensor<?xi32>, %c: tensor<5xi32>, %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>) {
  // expected-error @+1 {{counts has 5 entries but there are 4 experts}}
  %a = moe.expert_ffn %x, %rows, %c : tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32> w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) {ffn = #moe.ffn<kind = mlp>} -> tensor<?x16xf32>
  return
}

// -----

func.func @expert_ffn_shared_counts(%x: tensor<?x16xf32>, %rows: tensor<?xi32>, %c: tensor<4xi32>, %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>, %s1: tensor<1x16x32xf32>, %s2: tensor<1x32x16xf32>) {
  // expected-error @+1 {{counts has 4 entries but there are 5 experts (routed + shared)}}
  %a = moe.expert_ffn %x, %rows, %c : tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) shared_w1(%s1 : tensor<1x16x32xf32>) shared_w2(%s2 : tensor<1x32x16xf32>) {ffn = #moe.ffn<kind = mlp>} -> tensor<?x16xf32>
  return
}

// -----

func.func @expert_ffn_shared_half(%x: tensor<?x16xf32>, %rows: tensor<?xi32>, %c: tensor<5xi32>, %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>, %s1: tensor<1x16x32xf32>) {
  // expected-error @+1 {{shared experts need both shared_w1 and shared_w2}}
  %a = moe.expert_ffn %x, %rows, %c : tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32> w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) shared_w1(%s1 : tensor<1x16x32xf32>) {ffn = #moe.ffn<kind = mlp>} -> tensor<?x16xf32>
  return
}

// -----

func.func @expert_ffn_shared_width(%x: tensor<?x16xf32>, %rows: tensor<?xi32>, %c: tensor<5xi32>, %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>, %s1: tensor<1x16x48xf32>, %s2: tensor<1x48x16xf32>) {
  // expected-error @+1 {{shared experts must have the routed experts' per-expert weight shapes}}
  %a = moe.expert_ffn %x, %rows, %c : tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32> w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) shared_w1(%s1 : tensor<1x16x48xf32>) shared_w2(%s2 : tensor<1x48x16xf32>) {ffn = #moe.ffn<kind = mlp>} -> tensor<?x16xf32>
  return
}

// -----

func.func @expert_ffn_shared_dtype(%x: tensor<?x16xf32>, %rows: tensor<?xi32>, %c: tensor<5xi32>, %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>, %s1: tensor<1x16x32xbf16>, %s2: tensor<1x32x16xbf16>) {
  // expected-error @+1 {{shared experts must have the routed experts' weight element type}}
  %a = moe.expert_ffn %x, %rows, %c : tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32> w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) shared_w1(%s1 : tensor<1x16x32xbf16>) shared_w2(%s2 : tensor<1x32x16xbf16>) {ffn = #moe.ffn<kind = mlp>} -> tensor<?x16xf32>
  return
}

// -----

func.func @expert_ffn_shared_padded(%x: tensor<?x16xf32>, %rows: tensor<4x3xi32>, %c: tensor<5xi32>, %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>, %s1: tensor<1x16x32xf32>, %s2: tensor<1x32x16xf32>) {
  // expected-error @+1 {{shared experts need the ragged layout}}
  %a = moe.expert_ffn %x, %rows, %c : tensor<?x16xf32>, tensor<4x3xi32>, tensor<5xi32> w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) shared_w1(%s1 : tensor<1x16x32xf32>) shared_w2(%s2 : tensor<1x32x16xf32>) {ffn = #moe.ffn<kind = mlp>} -> tensor<4x3x16xf32>
  return
}

// -----

func.func @expert_ffn_combine_tokens(%x: tensor<8x16xf32>, %rows: tensor<?xi32>, %c: tensor<4xi32>, %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>, %slot: tensor<8x2xi32>, %cw: tensor<8x2xf32>) {
  // expected-error @+1 {{combined result tokens (vs input) is 16 but must be 8}}
  %a = moe.expert_ffn %x, %rows, %c : tensor<8x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) combine(%slot, %cw : tensor<8x2xi32>, tensor<8x2xf32>) {ffn = #moe.ffn<kind = mlp>} -> tensor<16x16xf32>
  return
}

// -----

func.func @expert_ffn_combine_slots(%x: tensor<8x16xf32>, %rows: tensor<?xi32>, %c: tensor<4xi32>, %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>, %slot: tensor<8x2xi32>, %cw: tensor<8x3xf32>) {
  // expected-error @+1 {{slot count of token_slot (vs combine weights) is 2 but must be 3}}
  %a = moe.expert_ffn %x, %rows, %c : tensor<8x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) combine(%slot, %cw : tensor<8x2xi32>, tensor<8x3xf32>) {ffn = #moe.ffn<kind = mlp>} -> tensor<8x16xf32>
  return
}

// -----

func.func @expert_ffn_combine_rank(%x: tensor<8x16xf32>, %rows: tensor<4x3xi32>, %c: tensor<4xi32>, %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>, %slot: tensor<8x2xi32>, %cw: tensor<8x2xf32>) {
  // expected-error @+1 {{combined result must be a rank-2 tensor [T, D]}}
  %a = moe.expert_ffn %x, %rows, %c : tensor<8x16xf32>, tensor<4x3xi32>, tensor<4xi32> w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) combine(%slot, %cw : tensor<8x2xi32>, tensor<8x2xf32>) {ffn = #moe.ffn<kind = mlp>} -> tensor<4x3x16xf32>
  return
}

// -----

func.func @expert_ffn_padded_rows(%x: tensor<?x16xf32>, %rows: tensor<4x3xi32>, %c: tensor<4xi32>, %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>) {
  // expected-error @+1 {{result capacity (vs row_token) is 5 but must be 3}}
  %a = moe.expert_ffn %x, %rows, %c : tensor<?x16xf32>, tensor<4x3xi32>, tensor<4xi32> w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) {ffn = #moe.ffn<kind = mlp>} -> tensor<4x5x16xf32>
  return
}

// -----

func.func @load_balance_tokens(%e: tensor<4x2xi32>, %p: tensor<5x8xf32>) {
  // expected-error @+1 {{token count of probs (vs experts) is 5 but must be 4}}
  %r = moe.load_balance %e, %p : tensor<4x2xi32>, tensor<5x8xf32> -> tensor<f32>
  return
}

// -----

func.func @load_balance_dynamic_experts(%e: tensor<4x2xi32>, %p: tensor<4x?xf32>) {
  // expected-error @+1 {{the number of experts (probs' last dimension) and of slots must be static}}
  %r = moe.load_balance %e, %p : tensor<4x2xi32>, tensor<4x?xf32> -> tensor<f32>
  return
}

// -----

func.func @load_balance_global_2d(%e: tensor<4x2xi32>, %p: tensor<4x8xf32>) {
  // expected-error @+1 {{global_batch needs micro-batched [B, T, K] inputs}}
  %r = moe.load_balance %e, %p {global_batch} : tensor<4x2xi32>, tensor<4x8xf32> -> tensor<f32>
  return
}
