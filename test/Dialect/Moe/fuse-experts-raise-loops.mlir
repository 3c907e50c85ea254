// RUN: moe-opt %s -split-input-file -moe-fuse-experts | FileCheck %s

// A per-expert loop as a frontend traces it (constants hoisted, counts
// clamped, a GLU written out with its own constants): raised to one grouped
// computation, recognised as SwiGLU, and fused into moe.expert_ffn that
// gathers through the dispatch's row_token.
// CHECK-LABEL: func.func @traced_swiglu
//   CHECK-NOT:   scf.for
//       CHECK:   %{{.*}} = moe.expert_ffn %[[X:.*]], %[[ROWS:.*]], %[[COUNTS:.*]] : tensor<?x32xf32>, tensor<?xi32>, tensor<4xi32> w1(%{{.*}} : tensor<4x32x48xf32>) w3(%{{.*}} : tensor<4x32x48xf32>) w2(%{{.*}} : tensor<4x48x32xf32>){{.*}} {ffn = #moe.ffn<>}
//   CHECK-NOT:   scf.for
func.func @traced_swiglu(%x: tensor<?x32xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>,
                         %w1: tensor<4x32x48xf32>, %w3: tensor<4x32x48xf32>,
                         %w2: tensor<4x48x32xf32>) -> tensor<?x32xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %zero = arith.constant 0.0 : f32
  %one = arith.constant 1.0 : f32
  %mone = arith.constant -1.0 : f32
  %d, %rows, %counts, %slots, %cw = moe.dispatch %x, %w, %e : tensor<?x32xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x32xf32>, tensor<?xi32>, tensor<4xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  %n = tensor.dim %d, %c0 : tensor<?x32xf32>
  %empty = tensor.empty(%n) : tensor<?x32xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<?x32xf32>) -> tensor<?x32xf32>
  %r:2 = scf.for %i = %c0 to %c4 step %c1 iter_args(%acc = %init, %off = %c0) -> (tensor<?x32xf32>, index) {
    %c = tensor.extract %counts[%i] : tensor<4xi32>
    %ci = arith.index_cast %c : i32 to index
    %seg = tensor.extract_slice %d[%off, 0] [%ci, 32] [1, 1] : tensor<?x32xf32> to tensor<?x32xf32>
    %a = tensor.extract_slice %w1[%i, 0, 0] [1, 32, 48] [1, 1, 1] : tensor<4x32x48xf32> to tensor<32x48xf32>
    %b = tensor.extract_slice %w3[%i, 0, 0] [1, 32, 48] [1, 1, 1] : tensor<4x32x48xf32> to tensor<32x48xf32>
    %o = tensor.extract_slice %w2[%i, 0, 0] [1, 48, 32] [1, 1, 1] : tensor<4x48x32xf32> to tensor<48x32xf32>
    %h0 = tensor.empty(%ci) : tensor<?x48xf32>
    %hz = linalg.fill ins(%zero : f32) outs(%h0 : tensor<?x48xf32>) -> tensor<?x48xf32>
    %g = linalg.matmul ins(%seg, %a : tensor<?x32xf32>, tensor<32x48xf32>) outs(%hz : tensor<?x48xf32>) -> tensor<?x48xf32>
    %u = linalg.matmul ins(%seg, %b : tensor<?x32xf32>, tensor<32x48xf32>) outs(%hz : tensor<?x48xf32>) -> tensor<?x48xf32>
    %act = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%g, %u : tensor<?x48xf32>, tensor<?x48xf32>) outs(%h0 : tensor<?x48xf32>) {
    ^bb0(%gv: f32, %uv: f32, %out: f32):
      %t0 = arith.mulf %gv, %mone : f32
      %t1 = math.exp %t0 : f32
      %t2 = arith.addf %t1, %one : f32
      %t3 = arith.divf %gv, %t2 : f32
      %t4 = arith.mulf %t3, %uv : f32
      linalg.yield %t4 : f32
    } -> tensor<?x48xf32>
    %y0 = tensor.empty(%ci) : tensor<?x32xf32>
    %yz = linalg.fill ins(%zero : f32) outs(%y0 : tensor<?x32xf32>) -> tensor<?x32xf32>
    %y = linalg.matmul ins(%act, %o : tensor<?x48xf32>, tensor<48x32xf32>) outs(%yz : tensor<?x32xf32>) -> tensor<?x32xf32>
    %acc2 = tensor.insert_slice %y into %acc[%off, 0] [%ci, 32] [1, 1] : tensor<?x32xf32> into tensor<?x32xf32>
    %off2 = arith.addi %off, %ci : index
    scf.yield %acc2, %off2 : tensor<?x32xf32>, index
  }
  %out = moe.combine %r#0, %slots, %cw : tensor<?x32xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x32xf32>
  return %out : tensor<?x32xf32>
}

// -----

// A body that is no standard FFN form (tanh MLP) is raised to moe.experts
// (one grouped computation for the loop lowering) but not fused.
// CHECK-LABEL: func.func @traced_custom_body
//   CHECK-NOT:   scf.for
//       CHECK:   moe.experts %{{.*}}, %{{.*}} weights(%{{.*}} : tensor<4x32x32xf32>)
//       CHECK:   ^bb0(%[[SEG:.*]]: tensor<?x32xf32>, %[[W:.*]]: tensor<32x32xf32>):
//       CHECK:     tensor.dim %[[SEG]], %{{.*}}
//       CHECK:     linalg.matmul ins(%[[SEG]], %[[W]]
//       CHECK:     math.tanh
//       CHECK:     moe.yield
//   CHECK-NOT:   moe.expert_ffn
func.func @traced_custom_body(%d: tensor<?x32xf32>, %counts: tensor<4xi32>,
                              %w1: tensor<4x32x32xf32>) -> tensor<?x32xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %zero = arith.constant 0.0 : f32
  %n = tensor.dim %d, %c0 : tensor<?x32xf32>
  %empty = tensor.empty(%n) : tensor<?x32xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<?x32xf32>) -> tensor<?x32xf32>
  %r:2 = scf.for %i = %c0 to %c4 step %c1 iter_args(%acc = %init, %off = %c0) -> (tensor<?x32xf32>, index) {
    %c = tensor.extract %counts[%i] : tensor<4xi32>
    %ci = arith.index_cast %c : i32 to index
    %cc = arith.maxsi %ci, %c0 : index
    %seg = tensor.extract_slice %d[%off, 0] [%cc, 32] [1, 1] : tensor<?x32xf32> to tensor<?x32xf32>
    %a = tensor.extract_slice %w1[%i, 0, 0] [1, 32, 32] [1, 1, 1] : tensor<4x32x32xf32> to tensor<32x32xf32>
    %h0 = tensor.empty(%cc) : tensor<?x32xf32>
    %hz = linalg.fill ins(%zero : f32) outs(%h0 : tensor<?x32xf32>) -> tensor<?x32xf32>
    %g = linalg.matmul ins(%seg, %a : tensor<?x32xf32>, tensor<32x32xf32>) outs(%hz : tensor<?x32xf32>) -> tensor<?x32xf32>
    %t = math.tanh %g : tensor<?x32xf32>
    %acc2 = tensor.insert_slice %t into %acc[%off, 0] [%cc, 32] [1, 1] : tensor<?x32xf32> into tensor<?x32xf32>
    %off2 = arith.addi %off, %cc : index
    scf.yield %acc2, %off2 : tensor<?x32xf32>, index
  }
  return %r#0 : tensor<?x32xf32>
}

// -----

// Not a per-expert loop: the accumulator does not start at zero (rows
// outside the segments would differ), so nothing is raised.
// CHECK-LABEL: func.func @nonzero_init
//       CHECK:   scf.for
//   CHECK-NOT:   moe.experts
func.func @nonzero_init(%d: tensor<?x32xf32>, %counts: tensor<4xi32>,
                        %w1: tensor<4x32x32xf32>, %init: tensor<?x32xf32>) -> tensor<?x32xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %r:2 = scf.for %i = %c0 to %c4 step %c1 iter_args(%acc = %init, %off = %c0) -> (tensor<?x32xf32>, index) {
    %c = tensor.extract %counts[%i] : tensor<4xi32>
    %ci = arith.index_cast %c : i32 to index
    %seg = tensor.extract_slice %d[%off, 0] [%ci, 32] [1, 1] : tensor<?x32xf32> to tensor<?x32xf32>
    %t = math.tanh %seg : tensor<?x32xf32>
    %acc2 = tensor.insert_slice %t into %acc[%off, 0] [%ci, 32] [1, 1] : tensor<?x32xf32> into tensor<?x32xf32>
    %off2 = arith.addi %off, %ci : index
    scf.yield %acc2, %off2 : tensor<?x32xf32>, index
  }
  return %r#0 : tensor<?x32xf32>
}

// -----

// The body reads the expert index itself (an expert-dependent scale): it
// is not an expert-uniform computation, so nothing is raised.
// CHECK-LABEL: func.func @expert_dependent_body
//       CHECK:   scf.for
//   CHECK-NOT:   moe.experts
func.func @expert_dependent_body(%d: tensor<?x32xf32>, %counts: tensor<4xi32>) -> tensor<?x32xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %zero = arith.constant 0.0 : f32
  %n = tensor.dim %d, %c0 : tensor<?x32xf32>
  %empty = tensor.empty(%n) : tensor<?x32xf32>
  %init = linalg.fill ins(%zero : f32) outs(%empty : tensor<?x32xf32>) -> tensor<?x32xf32>
  %r:2 = scf.for %i = %c0 to %c4 step %c1 iter_args(%acc = %init, %off = %c0) -> (tensor<?x32xf32>, index) {
    %c = tensor.extract %counts[%i] : tensor<4xi32>
    %ci = arith.index_cast %c : i32 to index
    %seg = tensor.extract_slice %d[%off, 0] [%ci, 32] [1, 1] : tensor<?x32xf32> to tensor<?x32xf32>
    %ii = arith.index_cast %i : index to i32
    %s = arith.sitofp %ii : i32 to f32
    %e0 = tensor.empty(%ci) : tensor<?x32xf32>
    %t = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%seg : tensor<?x32xf32>) outs(%e0 : tensor<?x32xf32>) {
    ^bb0(%v: f32, %o: f32):
      %m = arith.mulf %v, %s : f32
      linalg.yield %m : f32
    } -> tensor<?x32xf32>
    %acc2 = tensor.insert_slice %t into %acc[%off, 0] [%ci, 32] [1, 1] : tensor<?x32xf32> into tensor<?x32xf32>
    %off2 = arith.addi %off, %ci : index
    scf.yield %acc2, %off2 : tensor<?x32xf32>, index
  }
  return %r#0 : tensor<?x32xf32>
}
