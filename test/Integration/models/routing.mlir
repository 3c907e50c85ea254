// Routing and dispatch kernels on their own, one entry point per policy, so
// integration tests compare every routing decision (ties included) and
// every dispatch slot exactly with the reference.
module @routing {
  func.func @top_k_lower(%l: tensor<?x8xf32> {moe.name = "logits"}) -> (tensor<?x3xf32>, tensor<?x3xi32>) {
    %w, %e = moe.route %l {routing = #moe.routing<k = 3, normalize = selected>} : tensor<?x8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
    return %w, %e : tensor<?x3xf32>, tensor<?x3xi32>
  }
  func.func @top_k_higher(%l: tensor<?x8xf32> {moe.name = "logits"}) -> (tensor<?x3xf32>, tensor<?x3xi32>) {
    %w, %e = moe.route %l {routing = #moe.routing<k = 3, tie_break = higher_index>} : tensor<?x8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
    return %w, %e : tensor<?x3xf32>, tensor<?x3xi32>
  }
  func.func @softmax_selected(%l: tensor<?x8xf32> {moe.name = "logits"}) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
    %w, %e = moe.route %l {routing = #moe.routing<k = 2, score = softmax_selected>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
    return %w, %e : tensor<?x2xf32>, tensor<?x2xi32>
  }
  func.func @top_p(%l: tensor<?x8xf32> {moe.name = "logits"}) -> (tensor<?x4xf32>, tensor<?x4xi32>) {
    %w, %e = moe.route %l {routing = #moe.routing<policy = top_p, k = 4, top_p = 0.5>} : tensor<?x8xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
    return %w, %e : tensor<?x4xf32>, tensor<?x4xi32>
  }
  func.func @threshold(%l: tensor<?x8xf32> {moe.name = "logits"}) -> (tensor<?x4xf32>, tensor<?x4xi32>) {
    %w, %e = moe.route %l {routing = #moe.routing<policy = threshold, k = 4, threshold = 0.15>} : tensor<?x8xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
    return %w, %e : tensor<?x4xf32>, tensor<?x4xi32>
  }
  func.func @null_experts(%l: tensor<?x8xf32> {moe.name = "logits"}) -> (tensor<?x3xf32>, tensor<?x3xi32>) {
    %w, %e = moe.route %l {routing = #moe.routing<k = 3, normalize = selected, null_experts = 3>} : tensor<?x8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
    return %w, %e : tensor<?x3xf32>, tensor<?x3xi32>
  }
  func.func @grouped(%l: tensor<?x16xf32> {moe.name = "logits"}, %b: tensor<16xf32> {moe.name = "bias"}) -> (tensor<?x4xf32>, tensor<?x4xi32>) {
    %w, %e = moe.route %l bias(%b : tensor<16xf32>) {routing = #moe.routing<policy = grouped_top_k, k = 4, score = sigmoid, normalize = selected, scaling = 2.5, num_groups = 4, top_groups = 2, epsilon = 1.0e-20>} : tensor<?x16xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
    return %w, %e : tensor<?x4xf32>, tensor<?x4xi32>
  }
  func.func @grouped_zero_mask(%l: tensor<?x16xf32> {moe.name = "logits"}, %b: tensor<16xf32> {moe.name = "bias"}) -> (tensor<?x4xf32>, tensor<?x4xi32>) {
    %w, %e = moe.route %l bias(%b : tensor<16xf32>) {routing = #moe.routing<policy = grouped_top_k, k = 4, score = sigmoid, num_groups = 8, top_groups = 2, group_score_k = 1, mask_with_zero = true>} : tensor<?x16xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
    return %w, %e : tensor<?x4xf32>, tensor<?x4xi32>
  }
  func.func @identity_sigmoid(%l: tensor<?x8xf32> {moe.name = "logits"}) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
    %w, %e = moe.route %l {routing = #moe.routing<k = 2, score = sigmoid>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
    return %w, %e : tensor<?x2xf32>, tensor<?x2xi32>
  }
}
