// The routing policies that plan across tokens or iterate (sinkhorn,
// expert_choice, sparse_mixer), one entry point each; the CPU runtime
// kernels implement them, the parallel-loop (GPU) lowering rejects them.
module {
  func.func @sinkhorn(%l: tensor<?x8xf32> {moe.name = "logits"}) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
    %w, %e = moe.route %l {routing = #moe.routing<policy = sinkhorn, k = 2, sinkhorn_iterations = 4>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
    return %w, %e : tensor<?x2xf32>, tensor<?x2xi32>
  }
  func.func @expert_choice(%l: tensor<?x8xf32> {moe.name = "logits"}) -> (tensor<?x4xf32>, tensor<?x4xi32>) {
    %w, %e = moe.route %l {routing = #moe.routing<policy = expert_choice, k = 4, capacity_factor = 1.0>} : tensor<?x8xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
    return %w, %e : tensor<?x4xf32>, tensor<?x4xi32>
  }
  func.func @sparse_mixer(%l: tensor<?x8xf32> {moe.name = "logits"}) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
    %w, %e = moe.route %l {routing = #moe.routing<policy = sparse_mixer, k = 2>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
    return %w, %e : tensor<?x2xf32>, tensor<?x2xi32>
  }
}
