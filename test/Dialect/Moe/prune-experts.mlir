// RUN: moe-opt %s -moe-prune-experts="profile=%S/Inputs/profile.json" -split-input-file | FileCheck %s
// RUN: moe-opt %s -moe-prune-experts="profile=%S/Inputs/profile.json metric=frequency keep=3" -split-input-file | FileCheck %s --check-prefix=FREQ

// Keep half of 8 experts by gate mass: experts 5, 2, 0, 7 (kept in index
// order). Router columns are re-indexed the same way; the two null-expert
// columns (8, 9) survive; every shrunk argument records what it kept.
// CHECK-LABEL: func.func @layer
// CHECK-SAME: %{{.*}}: tensor<16x6xf32> {moe.name = "router", moe.prune_dim = 1 : i64, moe.prune_keep = array<i64: 0, 2, 5, 7, 8, 9>}
// CHECK-SAME: %{{.*}}: tensor<6xf32> {moe.name = "bias", moe.prune_dim = 0 : i64, moe.prune_keep = array<i64: 0, 2, 5, 7, 8, 9>}
// CHECK-SAME: %{{.*}}: tensor<4x16x32xf32> {moe.name = "w1", moe.prune_dim = 0 : i64, moe.prune_keep = array<i64: 0, 2, 5, 7>}
// CHECK-SAME: %{{.*}}: tensor<4x32x16xf32> {moe.name = "w2", moe.prune_dim = 0 : i64, moe.prune_keep = array<i64: 0, 2, 5, 7>}
// CHECK: moe.layer {{.*}} router(%{{.*}} : tensor<16x6xf32>) {{.*}} w1(%{{.*}} : tensor<4x16x32xf32>)
// FREQ-LABEL: func.func @layer
// FREQ-SAME: moe.prune_keep = array<i64: 0, 2, 5, 8, 9>
func.func @layer(%x: tensor<?x16xf32> {moe.name = "x"}, %wg: tensor<16x10xf32> {moe.name = "router"},
                 %b: tensor<10xf32> {moe.name = "bias"},
                 %w1: tensor<8x16x32xf32> {moe.name = "w1"}, %w2: tensor<8x32x16xf32> {moe.name = "w2"}) -> tensor<?x16xf32> {
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x10xf32>)
         selection_bias(%b : tensor<10xf32>)
         w1(%w1 : tensor<8x16x32xf32>) w2(%w2 : tensor<8x32x16xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 2, null_experts = 2>}
         -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
