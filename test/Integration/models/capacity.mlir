// Padded-capacity dispatch in every queue order, with the capacity formulas,
// renormalisation after dropping and interleaved / concatenated GLU weights:
// small top-2 layers whose capacity (factor < 1) makes experts overflow.
module @capacity {
  func.func @gshard_choice_major(%x: tensor<?x32xf32> {moe.name = "x"},
                                 %router: tensor<32x8xf32> {moe.name = "router"},
                                 %w1: tensor<8x32x48xf32> {moe.name = "w1"},
                                 %w3: tensor<8x32x48xf32> {moe.name = "w3"},
                                 %w2: tensor<8x48x32xf32> {moe.name = "w2"}) -> tensor<?x32xf32> {
    %y = moe.layer %x : tensor<?x32xf32>
           router(%router : tensor<32x8xf32>)
           w1(%w1 : tensor<8x32x48xf32>) w3(%w3 : tensor<8x32x48xf32>)
           w2(%w2 : tensor<8x48x32xf32>)
           {routing = #moe.routing<k = 2>,
            ffn = #moe.ffn<kind = glu, activation = silu>,
            capacity = #moe.capacity<factor = 0.75, order = choice_major,
                                     renormalize = true>}
           -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
  func.func @score_order(%x: tensor<?x32xf32> {moe.name = "x"},
                         %router: tensor<32x8xf32> {moe.name = "router"},
                         %w1: tensor<8x32x96xf32> {moe.name = "w1"},
                         %w2: tensor<8x48x32xf32> {moe.name = "w2"}) -> tensor<?x32xf32> {
    %y = moe.layer %x : tensor<?x32xf32>
           router(%router : tensor<32x8xf32>)
           w1(%w1 : tensor<8x32x96xf32>)
           w2(%w2 : tensor<8x48x32xf32>)
           {routing = #moe.routing<k = 2, normalize = selected>,
            ffn = #moe.ffn<kind = glu, activation = gelu, gate_up = interleaved>,
            capacity = #moe.capacity<factor = 0.5, order = score, min_capacity = 2>}
           -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
  func.func @tutel_position(%x: tensor<?x32xf32> {moe.name = "x"},
                            %router: tensor<32x8xf32> {moe.name = "router"},
                            %w1: tensor<8x32x96xf32> {moe.name = "w1"},
                            %w2: tensor<8x48x32xf32> {moe.name = "w2"}) -> tensor<?x32xf32> {
    %y = moe.layer %x : tensor<?x32xf32>
           router(%router : tensor<32x8xf32>)
           w1(%w1 : tensor<8x32x96xf32>)
           w2(%w2 : tensor<8x48x32xf32>)
           {routing = #moe.routing<k = 2>,
            ffn = #moe.ffn<kind = glu, activation = gelu_tanh, gate_up = concatenated>,
            capacity = #moe.capacity<factor = 0.8, formula = tutel, align = 4>}
           -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
