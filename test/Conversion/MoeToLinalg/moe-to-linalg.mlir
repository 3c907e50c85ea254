// RUN: moe-opt %s -convert-moe-to-linalg -split-input-file | FileCheck %s

// Ragged: a loop over the experts carrying (accumulator, row offset); each
// segment is a dynamic slice of the dispatched rows, the body is inlined on
// it, and the result is inserted back at the same rows.
// CHECK-LABEL: func.func @ragged_experts
// CHECK-SAME: (%[[D:.*]]: tensor<?x8xf32>, %[[CNT:.*]]: tensor<4xi32>, %[[W:.*]]: tensor<4x8x16xf32>)
// CHECK: %[[INIT:.*]] = linalg.fill {{.*}} -> tensor<?x16xf32>
// CHECK: %[[N:.*]] = tensor.dim %[[D]], %{{.*}} : tensor<?x8xf32>
// CHECK: %[[C0:.*]] = arith.constant 0 : index
// CHECK: %[[C1:.*]] = arith.constant 1 : index
// CHECK: %[[C4:.*]] = arith.constant 4 : index
// CHECK: %[[LOOP:.*]]:2 = scf.for %[[E:.*]] = %[[C0]] to %[[C4]] step %[[C1]] iter_args(%[[ACC:.*]] = %[[INIT]], %[[OFF:.*]] = %[[C0]]) -> (tensor<?x16xf32>, index) {
// CHECK:   %[[CI:.*]] = tensor.extract %[[CNT]][%[[E]]] : tensor<4xi32>
// CHECK:   %[[C:.*]] = arith.index_cast %[[CI]] : i32 to index
// CHECK:   %[[POS:.*]] = arith.maxsi %[[C]], %[[C0]] : index
// CHECK:   %[[ROOM:.*]] = arith.subi %[[N]], %[[OFF]] : index
// CHECK:   %[[CC:.*]] = arith.minsi %[[POS]], %[[ROOM]] : index
// CHECK:   %[[SEG:.*]] = tensor.extract_slice %[[D]][%[[OFF]], 0] [%[[CC]], 8] [1, 1] : tensor<?x8xf32> to tensor<?x8xf32>
// CHECK:   %[[WE:.*]] = tensor.extract_slice %[[W]][%[[E]], 0, 0] [1, 8, 16] [1, 1, 1] : tensor<4x8x16xf32> to tensor<8x16xf32>
// CHECK:   %[[OUT:.*]] = linalg.matmul ins(%[[SEG]], %[[WE]] : tensor<?x8xf32>, tensor<8x16xf32>)
// CHECK:   %[[UPD:.*]] = tensor.insert_slice %[[OUT]] into %[[ACC]][%[[OFF]], 0] [%[[CC]], 16] [1, 1]
// CHECK:   %[[NEXT:.*]] = arith.addi %[[OFF]], %[[CC]] : index
// CHECK:   scf.yield %[[UPD]], %[[NEXT]] : tensor<?x16xf32>, index
// CHECK: return %[[LOOP]]#0
func.func @ragged_experts(%d: tensor<?x8xf32>, %counts: tensor<4xi32>, %w: tensor<4x8x16xf32>) -> tensor<?x16xf32> {
  %o = moe.experts %d, %counts weights(%w : tensor<4x8x16xf32>) : tensor<?x8xf32>, tensor<4xi32> -> tensor<?x16xf32> {
  ^bb0(%seg: tensor<?x8xf32>, %we: tensor<8x16xf32>):
    %c0 = arith.constant 0 : index
    %n = tensor.dim %seg, %c0 : tensor<?x8xf32>
    %e = tensor.empty(%n) : tensor<?x16xf32>
    %r = linalg.matmul ins(%seg, %we : tensor<?x8xf32>, tensor<8x16xf32>) outs(%e : tensor<?x16xf32>) -> tensor<?x16xf32>
    moe.yield %r : tensor<?x16xf32>
  }
  return %o : tensor<?x16xf32>
}

// -----

// Padded: segments are the first counts[e] rows of dispatched[e], clamped to
// the capacity.
// CHECK-LABEL: func.func @padded_experts
// CHECK: linalg.fill
// CHECK: %[[CAP:.*]] = tensor.dim %{{.*}}, %{{.*}} : tensor<4x?x8xf32>
// CHECK: scf.for
// CHECK:   arith.minsi %{{.*}}, %[[CAP]] : index
// CHECK:   tensor.extract_slice %{{.*}}[%{{.*}}, 0, 0] [1, %{{.*}}, 8] [1, 1, 1] : tensor<4x?x8xf32> to tensor<?x8xf32>
// CHECK:   tensor.insert_slice %{{.*}} into %{{.*}}[%{{.*}}, 0, 0] [1, %{{.*}}, 8] [1, 1, 1] : tensor<?x8xf32> into tensor<4x?x8xf32>
func.func @padded_experts(%d: tensor<4x?x8xf32>, %counts: tensor<4xi32>) -> tensor<4x?x8xf32> {
  %o = moe.experts %d, %counts : tensor<4x?x8xf32>, tensor<4xi32> -> tensor<4x?x8xf32> {
  ^bb0(%seg: tensor<?x8xf32>):
    moe.yield %seg : tensor<?x8xf32>
  }
  return %o : tensor<4x?x8xf32>
}

// -----

// grouped_matmul: an f32 product per segment, truncated to bf16, and the
// transposed form reads rhs[e] as [N, K].
// CHECK-LABEL: func.func @grouped_matmul_bf16_transposed
// CHECK: scf.for
// CHECK:   tensor.extract_slice %{{.*}} : tensor<4x16x8xbf16> to tensor<16x8xbf16>
// CHECK:   linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction"]
// CHECK:     arith.extf
// CHECK:   arith.truncf %{{.*}} : f32 to bf16
// CHECK:   tensor.insert_slice
func.func @grouped_matmul_bf16_transposed(%lhs: tensor<?x8xbf16>, %rhs: tensor<4x16x8xbf16>, %counts: tensor<4xi32>) -> tensor<?x16xbf16> {
  %o = moe.grouped_matmul %lhs, %rhs, %counts {transpose_rhs} : tensor<?x8xbf16>, tensor<4x16x8xbf16>, tensor<4xi32> -> tensor<?x16xbf16>
  return %o : tensor<?x16xbf16>
}

// -----

// moe.load_balance: one batch becomes a single micro-batch [1, T, *]; pair
// counts per (batch, expert) compare ids with the expert index, probability
// sums per (batch, expert), their dot product, scaled by E / (T * K * T * B).
// CHECK-LABEL: func.func @load_balance
// CHECK: %[[EX:.*]] = tensor.expand_shape %{{.*}} {{\[}}[0, 1], [2]] output_shape [1, %{{.*}}, 2] : tensor<?x2xi32> into tensor<1x?x2xi32>
// CHECK: %[[PR:.*]] = tensor.expand_shape %{{.*}} {{\[}}[0, 1], [2]] output_shape [1, %{{.*}}, 8] : tensor<?x8xf32> into tensor<1x?x8xf32>
// CHECK: %[[CNT:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction", "reduction"]{{.*}} ins(%[[EX]] : tensor<1x?x2xi32>)
// CHECK:   linalg.index 1
// CHECK:   arith.cmpi eq
// CHECK: %[[PSUM:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction"]{{.*}} ins(%[[PR]] : tensor<1x?x8xf32>)
// CHECK: %[[DOT:.*]] = linalg.generic {{.*}}iterator_types = ["reduction", "reduction"]{{.*}} ins(%[[CNT]], %[[PSUM]] : tensor<1x8xf32>, tensor<1x8xf32>)
// CHECK: %[[E:.*]] = arith.constant 8.000000e+00 : f32
// CHECK: %[[SCALE:.*]] = arith.divf %[[E]], %{{.*}} : f32
// CHECK: %[[V:.*]] = tensor.extract %[[DOT]][] : tensor<f32>
// CHECK: %[[R:.*]] = arith.mulf %[[V]], %[[SCALE]] : f32
// CHECK: tensor.from_elements %[[R]] : tensor<f32>
func.func @load_balance(%e: tensor<?x2xi32>, %p: tensor<?x8xf32>) -> tensor<f32> {
  %r = moe.load_balance %e, %p : tensor<?x2xi32>, tensor<?x8xf32> -> tensor<f32>
  return %r : tensor<f32>
}

// -----

// global_batch collapses [B, T, *] into one batch of B * T tokens.
// CHECK-LABEL: func.func @load_balance_global
// CHECK: tensor.collapse_shape %{{.*}} {{\[}}[0, 1], [2]] : tensor<?x16x2xi32> into tensor<?x2xi32>
// CHECK: tensor.expand_shape {{.*}} into tensor<1x?x2xi32>
func.func @load_balance_global(%e: tensor<?x16x2xi32>, %p: tensor<?x16x8xf32>) -> tensor<f32> {
  %r = moe.load_balance %e, %p {global_batch} : tensor<?x16x2xi32>, tensor<?x16x8xf32> -> tensor<f32>
  return %r : tensor<f32>
}
