// Qwen-MoE-like block (Qwen1.5-MoE-A2.7B shapes): D = 2048, 60 experts of
// F = 1408, top-4 of a softmax *without* renormalising the 4 weights
// (norm_topk_prob = false), SwiGLU experts, and one shared SwiGLU expert of
// width 5632 whose output is scaled by sigmoid(x shared_gate) before it is
// added.
module @qwen_moe {
  func.func @qwen_moe(%x: tensor<?x2048xf32> {moe.name = "x"},
                      %router: tensor<2048x60xf32> {moe.name = "router"},
                      %w1: tensor<60x2048x1408xf32> {moe.name = "w1"},
                      %w3: tensor<60x2048x1408xf32> {moe.name = "w3"},
                      %w2: tensor<60x1408x2048xf32> {moe.name = "w2"},
                      %sw1: tensor<1x2048x5632xf32> {moe.name = "shared_w1"},
                      %sw3: tensor<1x2048x5632xf32> {moe.name = "shared_w3"},
                      %sw2: tensor<1x5632x2048xf32> {moe.name = "shared_w2"},
                      %sgate: tensor<2048x1xf32> {moe.name = "shared_gate"}) -> tensor<?x2048xf32> {
    %y = moe.layer %x : tensor<?x2048xf32>
           router(%router : tensor<2048x60xf32>)
           w1(%w1 : tensor<60x2048x1408xf32>)
           w3(%w3 : tensor<60x2048x1408xf32>)
           w2(%w2 : tensor<60x1408x2048xf32>)
           shared_w1(%sw1 : tensor<1x2048x5632xf32>)
           shared_w3(%sw3 : tensor<1x2048x5632xf32>)
           shared_w2(%sw2 : tensor<1x5632x2048xf32>)
           shared_gate(%sgate : tensor<2048x1xf32>)
           {routing = #moe.routing<k = 4, normalize = none>,
            ffn = #moe.ffn<kind = glu, activation = silu>}
           -> tensor<?x2048xf32>
    return %y : tensor<?x2048xf32>
  }
}
