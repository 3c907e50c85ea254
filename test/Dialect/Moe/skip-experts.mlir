// RUN: moe-opt %s -moe-skip-experts="threshold=0.1" -split-input-file | FileCheck %s
// RUN: moe-opt %s -moe-skip-experts="threshold=0.2 layer-importance=2.0,0.5" -split-input-file | FileCheck %s --check-prefix=MODES

// CHECK-LABEL: func.func @two_layers
// CHECK: moe.layer {{.*}}routing = #moe.routing<k = 2, normalize = selected, threshold = 0.1>
// CHECK: moe.route {{.*}}routing = #moe.routing<policy = top_p, k = 3, top_p = 0.5, threshold = 0.1>
// MODES-LABEL: func.func @two_layers
// MODES: moe.layer {{.*}}routing = #moe.routing<k = 2, normalize = selected, threshold = 0.1>
// MODES: moe.route {{.*}}routing = #moe.routing<policy = top_p, k = 3, top_p = 0.5, threshold = 0.4>
func.func @two_layers(%x: tensor<?x8xf32>, %wg: tensor<8x4xf32>, %w1: tensor<4x8x16xf32>,
                      %w2: tensor<4x16x8xf32>, %l: tensor<?x4xf32>) -> (tensor<?x8xf32>, tensor<?x3xf32>) {
  %y = moe.layer %x : tensor<?x8xf32> router(%wg : tensor<8x4xf32>)
         w1(%w1 : tensor<4x8x16xf32>) w2(%w2 : tensor<4x16x8xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2, normalize = selected>}
         -> tensor<?x8xf32>
  %w, %e = moe.route %l {routing = #moe.routing<policy = top_p, k = 3, top_p = 0.5>} : tensor<?x4xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return %y, %w : tensor<?x8xf32>, tensor<?x3xf32>
}
