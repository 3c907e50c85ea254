// RUN: moe-opt %s -convert-moe-to-parallel-loops -split-input-file | FileCheck %s

// One kernel per token: scores, selection, weights; results are fresh
// buffers handed back as tensors.
// CHECK-LABEL: func.func @route_top_k
//  CHECK-SAME: (%[[L:.*]]: tensor<?x8xf32>)
//       CHECK:   %[[LB:.*]] = bufferization.to_buffer %[[L]] read_only
//       CHECK:   %[[W:.*]] = memref.alloc(%{{.*}}) : memref<?x2xf32>
//       CHECK:   %[[E:.*]] = memref.alloc(%{{.*}}) : memref<?x2xi32>
//       CHECK:   scf.parallel (%[[T:.*]]) =
//       CHECK:     math.exp
//       CHECK:     memref.store %{{.*}}, %[[E]][%[[T]], %{{.*}}] : memref<?x2xi32>
//       CHECK:   }
//   CHECK-NOT:   scf.parallel
//       CHECK:   bufferization.to_tensor %[[W]] restrict writable
//       CHECK:   bufferization.to_tensor %[[E]] restrict writable
func.func @route_top_k(%l: tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %w, %e = moe.route %l {routing = #moe.routing<k = 2, normalize = selected>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %w, %e : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

// grouped_top_k keeps per-token group scores in a scratch row.
// CHECK-LABEL: func.func @route_grouped
//       CHECK:   memref.alloc(%{{.*}}) : memref<?x4xf32>
//       CHECK:   scf.parallel
//       CHECK:     arith.constant 0xFF800000 : f32
func.func @route_grouped(%l: tensor<?x16xf32>, %b: tensor<16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>) {
  %w, %e = moe.route %l bias(%b : tensor<16xf32>) {routing = #moe.routing<policy = grouped_top_k, k = 4, score = sigmoid, num_groups = 4, top_groups = 2, group_score_k = 2>} : tensor<?x16xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  return %w, %e : tensor<?x4xf32>, tensor<?x4xi32>
}

// -----

// Ragged dispatch: slots reset, then a counting sort parallel over
// (queue chunk of 256 pairs, expert): histogram, per-expert exclusive
// prefix (and counts), claims; then segment tails, combine weights and the
// row gather (its result is used).
// CHECK-LABEL: func.func @dispatch_ragged
//       CHECK:   %[[ROWS:.*]] = arith.muli %{{.*}}, %c2
//       CHECK:   %[[RT:.*]] = memref.alloc(%[[ROWS]]) : memref<?xi32>
//       CHECK:   %[[COUNTS:.*]] = memref.alloc() : memref<4xi32>
//       CHECK:   scf.parallel
//       CHECK:   %[[CHUNKS:.*]] = arith.ceildivui %[[ROWS]], %c256
//       CHECK:   %[[HIST:.*]] = memref.alloc(%[[CHUNKS]]) : memref<?x4xindex>
//       CHECK:   scf.parallel
//       CHECK:     memref.store %{{.*}}, %[[HIST]]
//       CHECK:   scf.parallel (%{{.*}}) = (%{{.*}}) to (%c4{{.*}})
//       CHECK:     memref.store %{{.*}}, %[[COUNTS]]
//       CHECK:   scf.parallel
//       CHECK:     memref.store %{{.*}}, %[[RT]]
//       CHECK:   scf.parallel
//       CHECK:   scf.parallel
//       CHECK:   %[[D:.*]] = memref.alloc(%[[ROWS]]) : memref<?x16xf32>
//       CHECK:   scf.parallel
//       CHECK:     memref.store %{{.*}}, %[[D]]
func.func @dispatch_ragged(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) -> (tensor<?x16xf32>, tensor<?x2xf32>) {
  %d, %r, %c, %s, %cw = moe.dispatch %x, %w, %e : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return %d, %cw : tensor<?x16xf32>, tensor<?x2xf32>
}

// -----

// A fused consumer gathers through row_token: no dispatched copy.
// CHECK-LABEL: func.func @dispatch_unused_rows
//       CHECK:   tensor.empty
//   CHECK-NOT:   memref<?x16xf32>
func.func @dispatch_unused_rows(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) -> (tensor<?xi32>, tensor<4xi32>) {
  %d, %r, %c, %s, %cw = moe.dispatch %x, %w, %e : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return %r, %c : tensor<?xi32>, tensor<4xi32>
}

// -----

// Padded capacity in score order: one iteration per pair ranks it among its
// expert's pairs; the capacity of a dynamic token count is computed in IR.
// CHECK-LABEL: func.func @dispatch_score
//       CHECK:   math.ceil
//       CHECK:   %[[RT:.*]] = memref.alloc(%{{.*}}) : memref<4x?xi32>
//       CHECK:   scf.parallel
//       CHECK:     scf.if
//       CHECK:       scf.for
//       CHECK:         arith.cmpf ogt
func.func @dispatch_score(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) -> tensor<4x?x16xf32> {
  %d, %r, %c, %s, %cw = moe.dispatch %x, %w, %e {capacity = #moe.capacity<factor = 1.0, order = score>} : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<4x?x16xf32>, tensor<4x?xi32>, tensor<4xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return %d : tensor<4x?x16xf32>
}

// -----

// The fused expert FFN: row experts, then hidden [R, F] and output [R, D]
// kernels, with bf16 weights widened to f32 at the load.
// CHECK-LABEL: func.func @expert_ffn_glu_bf16
//       CHECK:   %[[RE:.*]] = memref.alloc(%{{.*}}) : memref<?xindex>
//       CHECK:   scf.parallel
//       CHECK:     memref.store %{{.*}}, %[[RE]]
//       CHECK:   %[[H:.*]] = memref.alloc(%{{.*}}) : memref<?x32xf32>
//       CHECK:   scf.parallel
//       CHECK:     arith.extf %{{.*}} : bf16 to f32
//       CHECK:     memref.store %{{.*}}, %[[H]]
//       CHECK:   %[[O:.*]] = memref.alloc(%{{.*}}) : memref<?x16xf32>
//       CHECK:   scf.parallel
//       CHECK:     memref.load %[[H]]
//       CHECK:     memref.store %{{.*}}, %[[O]]
func.func @expert_ffn_glu_bf16(%x: tensor<?x16xf32>, %rt: tensor<?xi32>, %c: tensor<4xi32>, %w1: tensor<4x16x32xbf16>, %w3: tensor<4x16x32xbf16>, %w2: tensor<4x32x16xbf16>) -> tensor<?x16xf32> {
  %y = moe.expert_ffn %x, %rt, %c : tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%w1 : tensor<4x16x32xbf16>) w3(%w3 : tensor<4x16x32xbf16>) w2(%w2 : tensor<4x32x16xbf16>) {ffn = #moe.ffn<kind = glu, activation = silu>} -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Shared experts folded in as experts 4 and 5: every weight load picks the
// routed stack for e < 4 and the shared one at e - 4 otherwise; the
// routed experts' biases are not added to the shared ones.
// CHECK-LABEL: func.func @expert_ffn_shared
//  CHECK-SAME: %[[B2:[^:]*]]: tensor<4x16xf32>, %[[S1:[^:]*]]: tensor<2x16x32xf32>, %[[S2:[^:]*]]: tensor<2x32x16xf32>)
//       CHECK:   %[[SB1:.*]] = bufferization.to_buffer %[[S1]]
//       CHECK:   %[[SB2:.*]] = bufferization.to_buffer %[[S2]]
//       CHECK:   scf.parallel
//       CHECK:     %[[R1:.*]] = arith.cmpi slt, %[[E1:.*]], %c4
//       CHECK:     scf.if %[[R1]] -> (f32)
//       CHECK:     } else {
//       CHECK:       %[[I1:.*]] = arith.subi %[[E1]], %c4
//       CHECK:       memref.load %[[SB1]][%[[I1]],
//       CHECK:   scf.parallel
//       CHECK:       memref.load %[[SB2]][
//       CHECK:     scf.if %{{.*}} -> (f32) {
//       CHECK:       memref.load %{{.*}}[%{{.*}}, %{{.*}}] : memref<4x16xf32
func.func @expert_ffn_shared(%x: tensor<?x16xf32>, %rt: tensor<?xi32>, %c: tensor<6xi32>, %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>, %b2: tensor<4x16xf32>, %s1: tensor<2x16x32xf32>, %s2: tensor<2x32x16xf32>) -> tensor<?x16xf32> {
  %y = moe.expert_ffn %x, %rt, %c : tensor<?x16xf32>, tensor<?xi32>, tensor<6xi32> w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) b2(%b2 : tensor<4x16xf32>) shared_w1(%s1 : tensor<2x16x32xf32>) shared_w2(%s2 : tensor<2x32x16xf32>) {ffn = #moe.ffn<kind = mlp>} -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// A combine fused into moe.expert_ffn is lowered as the rows' kernels
// (into an [N, D] buffer) followed by the combine's loop over the slots.
// CHECK-LABEL: func.func @expert_ffn_combined
//       CHECK:   %[[ROWS:.*]] = memref.alloc(%{{.*}}) : memref<?x16xf32>
//       CHECK:   %[[R:.*]] = bufferization.to_tensor %[[ROWS]]
//       CHECK:   %[[RB:.*]] = bufferization.to_buffer %[[R]]
//       CHECK:   %[[OUT:.*]] = memref.alloc(%{{.*}}) : memref<?x16xf32>
//       CHECK:   scf.parallel
//       CHECK:     scf.for %{{.*}} = %{{.*}} to %c2
//       CHECK:       memref.load %[[RB]]
//       CHECK:     memref.store %{{.*}}, %[[OUT]]
func.func @expert_ffn_combined(%x: tensor<?x16xf32>, %rows: tensor<?xi32>, %c: tensor<4xi32>,
                               %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>,
                               %slot: tensor<?x2xi32>, %cw: tensor<?x2xf32>) -> tensor<?x16xf32> {
  %a = moe.expert_ffn %x, %rows, %c : tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) combine(%slot, %cw : tensor<?x2xi32>, tensor<?x2xf32>) {ffn = #moe.ffn<kind = mlp>} -> tensor<?x16xf32>
  return %a : tensor<?x16xf32>
}

// -----

// Combine: one iteration per output element sums the slots in order; a
// dropped slot with a weight adds the pass-through row.
// CHECK-LABEL: func.func @combine_passthrough
//       CHECK:   scf.parallel
//       CHECK:     scf.for
//       CHECK:       scf.if
//       CHECK:       arith.cmpf une
//       CHECK:       scf.if
func.func @combine_passthrough(%o: tensor<4x?x16xf32>, %s: tensor<?x1xi32>, %w: tensor<?x1xf32>, %x: tensor<?x16xf32>) -> tensor<?x16xf32> {
  %y = moe.combine %o, %s, %w passthrough(%x : tensor<?x16xf32>) : tensor<4x?x16xf32>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// CHECK-LABEL: func.func @stats
//       CHECK:   scf.parallel (%{{.*}}) = (%{{.*}}) to (%c4{{.*}})
//       CHECK:     arith.addi %{{.*}} : i64
func.func @stats(%e: tensor<?x2xi32>, %w: tensor<?x2xf32>) -> (tensor<4xi64>, tensor<4xf32>) {
  %c, %m = moe.expert_stats %e, %w : tensor<?x2xi32>, tensor<?x2xf32> -> tensor<4xi64>, tensor<4xf32>
  return %c, %m : tensor<4xi64>, tensor<4xf32>
}

// -----

// With tile-rows=2 each (tile, unit) iteration keeps 2 rows x (gate, up)
// accumulators.
// RUN: moe-opt %s -convert-moe-to-parallel-loops=tile-rows=2 -split-input-file | FileCheck %s --check-prefix=TILE2
// TILE2-LABEL: func.func @expert_ffn_tile2
//       TILE2:   scf.for %{{.*}} iter_args(%{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}) -> (f32, f32, f32, f32)
func.func @expert_ffn_tile2(%x: tensor<?x16xf32>, %rt: tensor<?xi32>, %c: tensor<4xi32>, %w1: tensor<4x16x32xf32>, %w3: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>) -> tensor<?x16xf32> {
  %y = moe.expert_ffn %x, %rt, %c : tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%w1 : tensor<4x16x32xf32>) w3(%w3 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) {ffn = #moe.ffn<kind = glu, activation = silu>} -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// The router product: one iteration per output element accumulating in a
// register (16 products per loop step, summed in k order, then the K % 16
// tail), stored once; linalg's own loop lowering would store and reload
// the accumulator at every k.
// CHECK-LABEL: func.func @router_matmul
//  CHECK-SAME: (%[[X:.*]]: tensor<?x40xf32>, %[[W:.*]]: tensor<40x8xf32>)
//       CHECK:   %[[O:.*]] = memref.alloc(%{{.*}}) : memref<?x8xf32>
//       CHECK:   scf.parallel
//       CHECK:     %[[INIT:.*]] = memref.load
//       CHECK:     %[[MAIN:.*]] = scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[A:.*]] = %[[INIT]]) -> (f32)
// CHECK-COUNT-16:    arith.mulf
//       CHECK:       %[[S0:.*]] = arith.addf %[[A]], %{{.*}} : f32
//       CHECK:     %[[ACC:.*]] = scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%{{.*}} = %[[MAIN]]) -> (f32)
//       CHECK:     memref.store %[[ACC]], %[[O]]
//   CHECK-NOT:   linalg.matmul
func.func @router_matmul(%x: tensor<?x40xf32>, %w: tensor<40x8xf32>) -> tensor<?x8xf32> {
  %c0 = arith.constant 0 : index
  %t = tensor.dim %x, %c0 : tensor<?x40xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty(%t) : tensor<?x8xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<?x8xf32>) -> tensor<?x8xf32>
  %r = linalg.matmul ins(%x, %w : tensor<?x40xf32>, tensor<40x8xf32>) outs(%init : tensor<?x8xf32>) -> tensor<?x8xf32>
  return %r : tensor<?x8xf32>
}
