// RUN: moe-opt %s -convert-moe-to-parallel-loops -split-input-file -verify-diagnostics

func.func @sinkhorn(%l: tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  // expected-error @+1 {{routing policy 'sinkhorn' has no parallel-loop (GPU) lowering; supported: top_k, top_p, threshold, grouped_top_k}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = sinkhorn, k = 2>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %w, %e : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

func.func @expert_choice(%l: tensor<?x8xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>) {
  // expected-error @+1 {{routing policy 'expert_choice' has no parallel-loop (GPU) lowering}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = expert_choice, k = 4>} : tensor<?x8xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  return %w, %e : tensor<?x4xf32>, tensor<?x4xi32>
}

// -----

func.func @sparse_mixer(%l: tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  // expected-error @+1 {{routing policy 'sparse_mixer' has no parallel-loop (GPU) lowering}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = sparse_mixer, k = 2>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %w, %e : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

// RUN: not moe-opt %s -convert-moe-to-parallel-loops=tile-rows=0 -split-input-file 2>&1 | FileCheck %s --check-prefix=TILE
// TILE: error: convert-moe-to-parallel-loops: tile-rows must be in [1, 64], got 0
func.func @any() {
  return
}
