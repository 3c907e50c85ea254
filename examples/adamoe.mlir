// AdaMoE-like block: a Mixtral-small layer whose router has 8 real and 4
// null expert columns. Top-4 is taken over all 12 columns and the 4 weights
// renormalised; a slot that picked a null expert keeps no expert (id -1,
// weight 0) and costs no FLOPs, so tokens use between 0 and 4 real experts.
module @adamoe {
  func.func @adamoe(%x: tensor<?x1024xf32> {moe.name = "x"},
                    %router: tensor<1024x12xf32> {moe.name = "router"},
                    %w1: tensor<8x1024x3584xf32> {moe.name = "w1"},
                    %w3: tensor<8x1024x3584xf32> {moe.name = "w3"},
                    %w2: tensor<8x3584x1024xf32> {moe.name = "w2"}) -> tensor<?x1024xf32> {
    %y = moe.layer %x : tensor<?x1024xf32>
           router(%router : tensor<1024x12xf32>)
           w1(%w1 : tensor<8x1024x3584xf32>)
           w3(%w3 : tensor<8x1024x3584xf32>)
           w2(%w2 : tensor<8x3584x1024xf32>)
           {routing = #moe.routing<k = 4, normalize = selected, null_experts = 4>,
            ffn = #moe.ffn<kind = glu, activation = silu>}
           -> tensor<?x1024xf32>
    return %y : tensor<?x1024xf32>
  }
}
