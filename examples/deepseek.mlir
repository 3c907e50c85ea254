// DeepSeek-like MoE block: 64 fine-grained routed experts (F = 512) plus 2
// shared experts merged the DeepSeek way, D = 1024.
// Routing (DeepSeek-V3): sigmoid scores; a per-expert correction bias is added
// for the choice only; experts are split in 8 groups, each group scored by
// the sum of its 2 best corrected scores, the best 3 groups kept, then the
// top 6 experts inside them. Weights are the uncorrected sigmoid scores,
// renormalised (+1e-20) and multiplied by the routed scaling factor 2.5.
// Shared experts run on every token and are added unweighted.
module @deepseek {
  func.func @deepseek_moe(%x: tensor<?x1024xf32> {moe.name = "x"},
                          %router: tensor<1024x64xf32> {moe.name = "router"},
                          %bias: tensor<64xf32> {moe.name = "selection_bias"},
                          %w1: tensor<64x1024x512xf32> {moe.name = "w1"},
                          %w3: tensor<64x1024x512xf32> {moe.name = "w3"},
                          %w2: tensor<64x512x1024xf32> {moe.name = "w2"},
                          %sw1: tensor<2x1024x512xf32> {moe.name = "shared_w1"},
                          %sw3: tensor<2x1024x512xf32> {moe.name = "shared_w3"},
                          %sw2: tensor<2x512x1024xf32> {moe.name = "shared_w2"}) -> tensor<?x1024xf32> {
    %y = moe.layer %x : tensor<?x1024xf32>
           router(%router : tensor<1024x64xf32>)
           selection_bias(%bias : tensor<64xf32>)
           w1(%w1 : tensor<64x1024x512xf32>)
           w3(%w3 : tensor<64x1024x512xf32>)
           w2(%w2 : tensor<64x512x1024xf32>)
           shared_w1(%sw1 : tensor<2x1024x512xf32>)
           shared_w3(%sw3 : tensor<2x1024x512xf32>)
           shared_w2(%sw2 : tensor<2x512x1024xf32>)
           {routing = #moe.routing<policy = grouped_top_k, k = 6, score = sigmoid,
                                   normalize = selected, scaling = 2.5,
                                   num_groups = 8, top_groups = 3,
                                   group_score_k = 2, epsilon = 1.0e-20>,
            ffn = #moe.ffn<kind = glu, activation = silu>}
           -> tensor<?x1024xf32>
    return %y : tensor<?x1024xf32>
  }
}
