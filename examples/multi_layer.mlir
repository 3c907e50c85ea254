module {
  func.func @multi_layer(%input: tensor<?x64xf32> {moe.name = "input"}, %layers.0.norm: tensor<64xf32> {moe.name = "layers.0.norm"}, %layers.0.router: tensor<64x8xf32> {moe.name = "layers.0.router"}, %layers.0.w1: tensor<8x64x128xf32> {moe.name = "layers.0.w1"}, %layers.0.w3: tensor<8x64x128xf32> {moe.name = "layers.0.w3"}, %layers.0.w2: tensor<8x128x64xf32> {moe.name = "layers.0.w2"}, %layers.1.norm: tensor<64xf32> {moe.name = "layers.1.norm"}, %layers.1.router: tensor<64x8xf32> {moe.name = "layers.1.router"}, %layers.1.w1: tensor<8x64x128xf32> {moe.name = "layers.1.w1"}, %layers.1.w3: tensor<8x64x128xf32> {moe.name = "layers.1.w3"}, %layers.1.w2: tensor<8x128x64xf32> {moe.name = "layers.1.w2"}, %layers.2.norm: tensor<64xf32> {moe.name = "layers.2.norm"}, %layers.2.router: tensor<64x8xf32> {moe.name = "layers.2.router"}, %layers.2.w1: tensor<8x64x128xf32> {moe.name = "layers.2.w1"}, %layers.2.w3: tensor<8x64x128xf32> {moe.name = "layers.2.w3"}, %layers.2.w2: tensor<8x128x64xf32> {moe.name = "layers.2.w2"}, %final_norm: tensor<64xf32> {moe.name = "final_norm"}) -> tensor<?x64xf32> {
    %c0 = arith.constant 0 : index
    %cst = arith.constant 0.0 : f32
    %cst_1 = arith.constant 64.0 : f32
    %cst_2 = arith.constant 1.0e-05 : f32
    %tokens = tensor.dim %input, %c0 : tensor<?x64xf32>
    %empty = tensor.empty(%tokens) : tensor<?xf32>
    %sumsq_init = linalg.fill ins(%cst : f32) outs(%empty : tensor<?xf32>) -> tensor<?xf32>
    %sumsq = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%input : tensor<?x64xf32>) outs(%sumsq_init : tensor<?xf32>) {
    ^bb0(%x: f32, %acc: f32):
      %sq = arith.mulf %x, %x : f32
      %sum = arith.addf %acc, %sq : f32
      linalg.yield %sum : f32
    } -> tensor<?xf32>
    %empty_1 = tensor.empty(%tokens) : tensor<?x64xf32>
    %rms = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%input, %sumsq, %layers.0.norm : tensor<?x64xf32>, tensor<?xf32>, tensor<64xf32>) outs(%empty_1 : tensor<?x64xf32>) {
    ^bb0(%x_1: f32, %ss: f32, %g: f32, %o: f32):
      %mean = arith.divf %ss, %cst_1 : f32
      %var = arith.addf %mean, %cst_2 : f32
      %inv = math.rsqrt %var : f32
      %n = arith.mulf %x_1, %inv : f32
      %y = arith.mulf %g, %n : f32
      linalg.yield %y : f32
    } -> tensor<?x64xf32>
    %moe = moe.layer %rms : tensor<?x64xf32> router(%layers.0.router : tensor<64x8xf32>) w1(%layers.0.w1 : tensor<8x64x128xf32>) w3(%layers.0.w3 : tensor<8x64x128xf32>) w2(%layers.0.w2 : tensor<8x128x64xf32>) {ffn = #moe.ffn<>, routing = #moe.routing<k = 2, normalize = selected>} -> tensor<?x64xf32>
    %empty_2 = tensor.empty(%tokens) : tensor<?x64xf32>
    %residual = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%input, %moe : tensor<?x64xf32>, tensor<?x64xf32>) outs(%empty_2 : tensor<?x64xf32>) {
    ^bb0(%a: f32, %b: f32, %o_1: f32):
      %sum_1 = arith.addf %a, %b : f32
      linalg.yield %sum_1 : f32
    } -> tensor<?x64xf32>
    %empty_3 = tensor.empty(%tokens) : tensor<?xf32>
    %sumsq_init_1 = linalg.fill ins(%cst : f32) outs(%empty_3 : tensor<?xf32>) -> tensor<?xf32>
    %sumsq_1 = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%residual : tensor<?x64xf32>) outs(%sumsq_init_1 : tensor<?xf32>) {
    ^bb0(%x_2: f32, %acc_1: f32):
      %sq_1 = arith.mulf %x_2, %x_2 : f32
      %sum_2 = arith.addf %acc_1, %sq_1 : f32
      linalg.yield %sum_2 : f32
    } -> tensor<?xf32>
    %empty_4 = tensor.empty(%tokens) : tensor<?x64xf32>
    %rms_1 = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%residual, %sumsq_1, %layers.1.norm : tensor<?x64xf32>, tensor<?xf32>, tensor<64xf32>) outs(%empty_4 : tensor<?x64xf32>) {
    ^bb0(%x_3: f32, %ss_1: f32, %g_1: f32, %o_2: f32):
      %mean_1 = arith.divf %ss_1, %cst_1 : f32
      %var_1 = arith.addf %mean_1, %cst_2 : f32
      %inv_1 = math.rsqrt %var_1 : f32
      %n_1 = arith.mulf %x_3, %inv_1 : f32
      %y_1 = arith.mulf %g_1, %n_1 : f32
      linalg.yield %y_1 : f32
    } -> tensor<?x64xf32>
    %moe_1 = moe.layer %rms_1 : tensor<?x64xf32> router(%layers.1.router : tensor<64x8xf32>) w1(%layers.1.w1 : tensor<8x64x128xf32>) w3(%layers.1.w3 : tensor<8x64x128xf32>) w2(%layers.1.w2 : tensor<8x128x64xf32>) {ffn = #moe.ffn<>, routing = #moe.routing<k = 2, normalize = selected>} -> tensor<?x64xf32>
    %empty_5 = tensor.empty(%tokens) : tensor<?x64xf32>
    %residual_1 = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%residual, %moe_1 : tensor<?x64xf32>, tensor<?x64xf32>) outs(%empty_5 : tensor<?x64xf32>) {
    ^bb0(%a_1: f32, %b_1: f32, %o_3: f32):
      %sum_3 = arith.addf %a_1, %b_1 : f32
      linalg.yield %sum_3 : f32
    } -> tensor<?x64xf32>
    %empty_6 = tensor.empty(%tokens) : tensor<?xf32>
    %sumsq_init_2 = linalg.fill ins(%cst : f32) outs(%empty_6 : tensor<?xf32>) -> tensor<?xf32>
    %sumsq_2 = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%residual_1 : tensor<?x64xf32>) outs(%sumsq_init_2 : tensor<?xf32>) {
    ^bb0(%x_4: f32, %acc_2: f32):
      %sq_2 = arith.mulf %x_4, %x_4 : f32
      %sum_4 = arith.addf %acc_2, %sq_2 : f32
      linalg.yield %sum_4 : f32
    } -> tensor<?xf32>
    %empty_7 = tensor.empty(%tokens) : tensor<?x64xf32>
    %rms_2 = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%residual_1, %sumsq_2, %layers.2.norm : tensor<?x64xf32>, tensor<?xf32>, tensor<64xf32>) outs(%empty_7 : tensor<?x64xf32>) {
    ^bb0(%x_5: f32, %ss_2: f32, %g_2: f32, %o_4: f32):
      %mean_2 = arith.divf %ss_2, %cst_1 : f32
      %var_2 = arith.addf %mean_2, %cst_2 : f32
      %inv_2 = math.rsqrt %var_2 : f32
      %n_2 = arith.mulf %x_5, %inv_2 : f32
      %y_2 = arith.mulf %g_2, %n_2 : f32
      linalg.yield %y_2 : f32
    } -> tensor<?x64xf32>
    %moe_2 = moe.layer %rms_2 : tensor<?x64xf32> router(%layers.2.router : tensor<64x8xf32>) w1(%layers.2.w1 : tensor<8x64x128xf32>) w3(%layers.2.w3 : tensor<8x64x128xf32>) w2(%layers.2.w2 : tensor<8x128x64xf32>) {ffn = #moe.ffn<>, routing = #moe.routing<k = 2, normalize = selected>} -> tensor<?x64xf32>
    %empty_8 = tensor.empty(%tokens) : tensor<?x64xf32>
    %residual_2 = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%residual_1, %moe_2 : tensor<?x64xf32>, tensor<?x64xf32>) outs(%empty_8 : tensor<?x64xf32>) {
    ^bb0(%a_2: f32, %b_2: f32, %o_5: f32):
      %sum_5 = arith.addf %a_2, %b_2 : f32
      linalg.yield %sum_5 : f32
    } -> tensor<?x64xf32>
    %empty_9 = tensor.empty(%tokens) : tensor<?xf32>
    %sumsq_init_3 = linalg.fill ins(%cst : f32) outs(%empty_9 : tensor<?xf32>) -> tensor<?xf32>
    %sumsq_3 = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%residual_2 : tensor<?x64xf32>) outs(%sumsq_init_3 : tensor<?xf32>) {
    ^bb0(%x_6: f32, %acc_3: f32):
      %sq_3 = arith.mulf %x_6, %x_6 : f32
      %sum_6 = arith.addf %acc_3, %sq_3 : f32
      linalg.yield %sum_6 : f32
    } -> tensor<?xf32>
    %empty_10 = tensor.empty(%tokens) : tensor<?x64xf32>
    %rms_3 = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%residual_2, %sumsq_3, %final_norm : tensor<?x64xf32>, tensor<?xf32>, tensor<64xf32>) outs(%empty_10 : tensor<?x64xf32>) {
    ^bb0(%x_7: f32, %ss_3: f32, %g_3: f32, %o_6: f32):
      %mean_3 = arith.divf %ss_3, %cst_1 : f32
      %var_3 = arith.addf %mean_3, %cst_2 : f32
      %inv_3 = math.rsqrt %var_3 : f32
      %n_3 = arith.mulf %x_7, %inv_3 : f32
      %y_3 = arith.mulf %g_3, %n_3 : f32
      linalg.yield %y_3 : f32
    } -> tensor<?x64xf32>
    return %rms_3 : tensor<?x64xf32>
  }
}
