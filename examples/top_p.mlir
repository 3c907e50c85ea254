// Dynamic top-p routing ("Harder Tasks Need More Experts"): 16 experts,
// D = 1024, F = 1024. Each token keeps the smallest set of highest-probability
// experts whose softmax mass reaches 0.4, at most 4; unused slots hold expert
// -1 with weight 0. The kept weights are used as they are (no renormalisation).
module @top_p {
  func.func @top_p_moe(%x: tensor<?x1024xf32> {moe.name = "x"},
                       %router: tensor<1024x16xf32> {moe.name = "router"},
                       %w1: tensor<16x1024x1024xf32> {moe.name = "w1"},
                       %w3: tensor<16x1024x1024xf32> {moe.name = "w3"},
                       %w2: tensor<16x1024x1024xf32> {moe.name = "w2"}) -> tensor<?x1024xf32> {
    %y = moe.layer %x : tensor<?x1024xf32>
           router(%router : tensor<1024x16xf32>)
           w1(%w1 : tensor<16x1024x1024xf32>)
           w3(%w3 : tensor<16x1024x1024xf32>)
           w2(%w2 : tensor<16x1024x1024xf32>)
           {routing = #moe.routing<policy = top_p, k = 4, top_p = 0.4>,
            ffn = #moe.ffn<kind = glu, activation = silu>}
           -> tensor<?x1024xf32>
    return %y : tensor<?x1024xf32>
  }
}
