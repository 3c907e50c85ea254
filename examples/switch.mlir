// Switch-Transformers-like MoE block: D = 768, F = 3072, 16 experts, top-1
// (argmax of a softmax, weight = p_max, no renormalisation), ReLU MLP
// experts wo(relu(x wi)). Capacity factor 1.25 per expert,
// C = ceil(1.25 * T / 16); tokens claim slots in token order and a token that
// finds its expert full is dropped: its output is p_max * x (pass-through),
// as in Hugging Face's Switch Transformers.
module @switch {
  func.func @switch_moe(%x: tensor<?x768xf32> {moe.name = "x"},
                        %router: tensor<768x16xf32> {moe.name = "router"},
                        %wi: tensor<16x768x3072xf32> {moe.name = "w1"},
                        %wo: tensor<16x3072x768xf32> {moe.name = "w2"}) -> tensor<?x768xf32> {
    %y = moe.layer %x : tensor<?x768xf32>
           router(%router : tensor<768x16xf32>)
           w1(%wi : tensor<16x768x3072xf32>)
           w2(%wo : tensor<16x3072x768xf32>)
           {routing = #moe.routing<k = 1>,
            ffn = #moe.ffn<kind = mlp, activation = relu>,
            capacity = #moe.capacity<factor = 1.25, order = position,
                                     on_drop = pass_through>}
           -> tensor<?x768xf32>
    return %y : tensor<?x768xf32>
  }
}
