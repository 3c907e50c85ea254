// RUN: moe-opt %s -canonicalize -split-input-file | FileCheck %s

// One expert: every token picks expert 0 with weight 1 (softmax of a single
// logit), whatever the logits.
// CHECK-LABEL: func.func @single_expert_softmax
// CHECK-DAG: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-DAG: %[[ZERO:.*]] = arith.constant 0 : i32
// CHECK-DAG: %[[W:.*]] = linalg.fill ins(%[[ONE]] : f32) outs(%{{.*}} : tensor<?x1xf32>)
// CHECK-DAG: %[[E:.*]] = linalg.fill ins(%[[ZERO]] : i32) outs(%{{.*}} : tensor<?x1xi32>)
// CHECK-NOT: moe.route
// CHECK: return %[[W]], %[[E]]
func.func @single_expert_softmax(%l: tensor<?x1xf32>) -> (tensor<?x1xf32>, tensor<?x1xi32>) {
  %w, %e = moe.route %l {routing = #moe.routing<k = 1>}
      : tensor<?x1xf32> -> tensor<?x1xf32>, tensor<?x1xi32>
  return %w, %e : tensor<?x1xf32>, tensor<?x1xi32>
}

// -----

// The scaling factor still applies.
// CHECK-LABEL: func.func @single_expert_scaled
// CHECK: arith.constant 2.500000e+00 : f32
// CHECK-NOT: moe.route
func.func @single_expert_scaled(%l: tensor<4x1xf32>) -> (tensor<4x1xf32>, tensor<4x1xi32>) {
  %w, %e = moe.route %l {routing = #moe.routing<k = 1, scaling = 2.5>}
      : tensor<4x1xf32> -> tensor<4x1xf32>, tensor<4x1xi32>
  return %w, %e : tensor<4x1xf32>, tensor<4x1xi32>
}

// -----

// A sigmoid score is data dependent even for one expert: no fold.
// CHECK-LABEL: func.func @single_expert_sigmoid
// CHECK: moe.route
func.func @single_expert_sigmoid(%l: tensor<?x1xf32>) -> (tensor<?x1xf32>, tensor<?x1xi32>) {
  %w, %e = moe.route %l {routing = #moe.routing<k = 1, score = sigmoid>}
      : tensor<?x1xf32> -> tensor<?x1xf32>, tensor<?x1xi32>
  return %w, %e : tensor<?x1xf32>, tensor<?x1xi32>
}

// -----

// ... unless the single weight is renormalised.
// CHECK-LABEL: func.func @single_expert_sigmoid_normalized
// CHECK-NOT: moe.route
func.func @single_expert_sigmoid_normalized(%l: tensor<?x1xf32>) -> (tensor<?x1xf32>, tensor<?x1xi32>) {
  %w, %e = moe.route %l {routing = #moe.routing<k = 1, score = sigmoid, normalize = selected>}
      : tensor<?x1xf32> -> tensor<?x1xf32>, tensor<?x1xi32>
  return %w, %e : tensor<?x1xf32>, tensor<?x1xi32>
}

// -----

// top-k with k = E over a softmax: the k weights are the whole softmax and
// already sum to 1, so renormalising them is dropped.
// CHECK-LABEL: func.func @topk_all_experts
// CHECK: moe.route %{{.*}} {routing = #moe.routing<k = 4>}
func.func @topk_all_experts(%l: tensor<?x4xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>) {
  %w, %e = moe.route %l {routing = #moe.routing<k = 4, normalize = selected>}
      : tensor<?x4xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  return %w, %e : tensor<?x4xf32>, tensor<?x4xi32>
}

// -----

// With k < E (or an epsilon) the normalisation matters and stays.
// CHECK-LABEL: func.func @topk_partial
// CHECK: moe.route %{{.*}} {routing = #moe.routing<k = 3, normalize = selected>}
// CHECK: moe.route %{{.*}} {routing = #moe.routing<k = 4, normalize = selected, epsilon = 1.0e-20>}
func.func @topk_partial(%l: tensor<?x4xf32>) -> (tensor<?x3xf32>, tensor<?x4xf32>) {
  %w, %e = moe.route %l {routing = #moe.routing<k = 3, normalize = selected>}
      : tensor<?x4xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  %w2, %e2 = moe.route %l {routing = #moe.routing<k = 4, normalize = selected, epsilon = 1.0e-20>}
      : tensor<?x4xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  return %w, %w2 : tensor<?x3xf32>, tensor<?x4xf32>
}
