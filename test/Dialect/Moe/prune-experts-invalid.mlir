// RUN: moe-opt %s -moe-prune-experts="profile=%S/Inputs/profile.json" -split-input-file -verify-diagnostics
// RUN: not moe-opt %s -moe-prune-experts="profile=%t.missing" 2>&1 | FileCheck %s --check-prefix=MISSING
// RUN: not moe-opt %s -moe-prune-experts="profile=%S/Inputs/profile.json metric=size" 2>&1 | FileCheck %s --check-prefix=METRIC

// MISSING: moe-prune-experts: cannot read profile
// METRIC: moe-prune-experts: metric must be gate_mass, frequency or importance, got 'size'

// The profile's first layer has 8 experts; this layer has 4.
func.func @wrong_count(%x: tensor<?x8xf32>, %wg: tensor<8x4xf32>, %w1: tensor<4x8x16xf32>, %w2: tensor<4x16x8xf32>) -> tensor<?x8xf32> {
  // expected-error @+1 {{moe-prune-experts: the profile gives 8 gate_mass values for a layer of 4 experts}}
  %y = moe.layer %x : tensor<?x8xf32> router(%wg : tensor<8x4xf32>) w1(%w1 : tensor<4x8x16xf32>) w2(%w2 : tensor<4x16x8xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 1>} -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// Weights shared by two layers cannot be pruned for one of them.
func.func @shared_weights(%x: tensor<?x8xf32>, %wg: tensor<8x8xf32>, %w1: tensor<8x8x16xf32>, %w2: tensor<8x16x8xf32>) -> tensor<?x8xf32> {
  // expected-error @+1 {{moe-prune-experts needs 'router' to be an entry-point argument used by this layer only}}
  %y = moe.layer %x : tensor<?x8xf32> router(%wg : tensor<8x8xf32>) w1(%w1 : tensor<8x8x16xf32>) w2(%w2 : tensor<8x16x8xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 1>} -> tensor<?x8xf32>
  %z = moe.layer %y : tensor<?x8xf32> router(%wg : tensor<8x8xf32>) w1(%w1 : tensor<8x8x16xf32>) w2(%w2 : tensor<8x16x8xf32>)
         {ffn = #moe.ffn<kind = mlp>, routing = #moe.routing<k = 1>} -> tensor<?x8xf32>
  return %z : tensor<?x8xf32>
}
