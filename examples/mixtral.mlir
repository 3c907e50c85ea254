// Mixtral-like MoE block (the "Mixtral-small" shape the benchmarks use):
// D = 1024, F = 3584, 8 experts, top-2 over a softmax, the two weights
// renormalised to sum 1, SwiGLU experts w2(silu(x w1) * (x w3)).
// The token count T is dynamic: one compiled model serves any T >= 1.
module @mixtral {
  func.func @mixtral_moe(%x: tensor<?x1024xf32> {moe.name = "x"},
                         %router: tensor<1024x8xf32> {moe.name = "router"},
                         %w1: tensor<8x1024x3584xf32> {moe.name = "w1"},
                         %w3: tensor<8x1024x3584xf32> {moe.name = "w3"},
                         %w2: tensor<8x3584x1024xf32> {moe.name = "w2"}) -> tensor<?x1024xf32> {
    %y = moe.layer %x : tensor<?x1024xf32>
           router(%router : tensor<1024x8xf32>)
           w1(%w1 : tensor<8x1024x3584xf32>)
           w3(%w3 : tensor<8x1024x3584xf32>)
           w2(%w2 : tensor<8x3584x1024xf32>)
           {routing = #moe.routing<k = 2, normalize = selected>,
            ffn = #moe.ffn<kind = glu, activation = silu>}
           -> tensor<?x1024xf32>
    return %y : tensor<?x1024xf32>
  }
}
