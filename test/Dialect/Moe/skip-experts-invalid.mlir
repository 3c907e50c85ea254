// RUN: moe-opt %s -moe-skip-experts="threshold=0.1" -split-input-file -verify-diagnostics
// RUN: not moe-opt %s -moe-skip-experts="threshold=0.1 layer-importance=1.0,2.0" -split-input-file 2>&1 | FileCheck %s --check-prefix=COUNT

// COUNT: moe-skip-experts: 2 layer importances given for 1 routing ops

func.func @sinkhorn(%l: tensor<?x4xf32>) -> tensor<?x2xf32> {
  // expected-error @+1 {{moe-skip-experts: sinkhorn routing does not rank slots by score and cannot skip experts}}
  %w, %e = moe.route %l {routing = #moe.routing<policy = sinkhorn, k = 2>} : tensor<?x4xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %w : tensor<?x2xf32>
}
