// Small-shaped Mixtral layer with bf16 expert weights (f32 activations and
// router, f32 accumulation) for execution tests
module @mixtral_bf16 {
  func.func @mixtral_moe(%x: tensor<?x32xf32> {moe.name = "x"},
                         %router: tensor<32x8xf32> {moe.name = "router"},
                         %w1: tensor<8x32x48xbf16> {moe.name = "w1"},
                         %w3: tensor<8x32x48xbf16> {moe.name = "w3"},
                         %w2: tensor<8x48x32xbf16> {moe.name = "w2"}) -> tensor<?x32xf32> {
    %y = moe.layer %x : tensor<?x32xf32>
           router(%router : tensor<32x8xf32>)
           w1(%w1 : tensor<8x32x48xbf16>)
           w3(%w3 : tensor<8x32x48xbf16>)
           w2(%w2 : tensor<8x48x32xbf16>)
           {routing = #moe.routing<k = 2, normalize = selected>,
            ffn = #moe.ffn<kind = glu, activation = silu>}
           -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
