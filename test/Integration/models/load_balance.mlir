// moe.load_balance compiled on its own (the load-balancing quantity
// E * sum_e f_e P_e), checked against the reference: one batch, the mean
// over micro-batches of 16 tokens, and the global-batch form.
module @lb {
  func.func @load_balance(%e: tensor<?x2xi32> {moe.name = "experts"},
                          %p: tensor<?x4xf32> {moe.name = "probs"}) -> tensor<1xf32> {
    %r = moe.load_balance %e, %p : tensor<?x2xi32>, tensor<?x4xf32> -> tensor<f32>
    %v = tensor.expand_shape %r [] output_shape [1] : tensor<f32> into tensor<1xf32>
    return %v : tensor<1xf32>
  }
  func.func @micro_batches(%e: tensor<?x16x2xi32> {moe.name = "experts"},
                           %p: tensor<?x16x4xf32> {moe.name = "probs"}) -> tensor<1xf32> {
    %r = moe.load_balance %e, %p : tensor<?x16x2xi32>, tensor<?x16x4xf32> -> tensor<f32>
    %v = tensor.expand_shape %r [] output_shape [1] : tensor<f32> into tensor<1xf32>
    return %v : tensor<1xf32>
  }
  func.func @global_batch(%e: tensor<?x16x2xi32> {moe.name = "experts"},
                          %p: tensor<?x16x4xf32> {moe.name = "probs"}) -> tensor<1xf32> {
    %r = moe.load_balance %e, %p {global_batch} : tensor<?x16x2xi32>, tensor<?x16x4xf32> -> tensor<f32>
    %v = tensor.expand_shape %r [] output_shape [1] : tensor<f32> into tensor<1xf32>
    return %v : tensor<1xf32>
  }
}
