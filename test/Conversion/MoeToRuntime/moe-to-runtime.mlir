// RUN: moe-opt %s -convert-moe-to-runtime -split-input-file | FileCheck %s

// moe.route: logits cross into a read-only buffer, results are fresh
// buffers filled by the kernel and wrapped back as tensors; the routing
// attribute becomes scalar arguments (policy, k, score, normalize, ...).
// CHECK-LABEL: func.func private @moert_cpu_route
// CHECK-SAME: attributes {llvm.emit_c_interface}
// CHECK-LABEL: func.func @route
// CHECK-SAME: (%[[L:.*]]: tensor<?x8xf32>)
// CHECK: %[[LB:.*]] = bufferization.to_buffer %[[L]] read_only : tensor<?x8xf32> to memref<?x8xf32, strided<[?, ?], offset: ?>>
// CHECK: %[[LC:.*]] = memref.cast %[[LB]] : memref<?x8xf32, strided<[?, ?], offset: ?>> to memref<?x?xf32, strided<[?, ?], offset: ?>>
// CHECK: %[[NOBIAS:.*]] = memref.alloca() : memref<0xf32>
// CHECK: %[[W:.*]] = memref.alloc(%{{.*}}) : memref<?x2xf32>
// CHECK: %[[E:.*]] = memref.alloc(%{{.*}}) : memref<?x2xi32>
// CHECK-DAG: %[[TOPK:.*]] = arith.constant 2 : i64
// CHECK-DAG: %[[SCALE:.*]] = arith.constant 2.500000e+00 : f64
// CHECK: call @moert_cpu_route(%[[LC]], %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[TOPK]], %{{.*}}, %{{.*}}, %{{.*}}, %[[SCALE]],
// CHECK: %[[WT:.*]] = bufferization.to_tensor %[[W]] restrict writable : memref<?x2xf32> to tensor<?x2xf32>
// CHECK: %[[ET:.*]] = bufferization.to_tensor %[[E]] restrict writable : memref<?x2xi32> to tensor<?x2xi32>
// CHECK: return %[[WT]], %[[ET]]
func.func @route(%l: tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %w, %e = moe.route %l {routing = #moe.routing<k = 2, normalize = selected, scaling = 2.5>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %w, %e : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

// Ragged dispatch allocates T*K rows and passes capacity -1.
// CHECK-LABEL: func.func @ragged_dispatch
// CHECK: %[[T:.*]] = tensor.dim %{{.*}}, %{{.*}} : tensor<?x16xf32>
// CHECK: %[[N:.*]] = arith.muli %[[T]], %{{.*}} : index
// CHECK: %[[NOCAP:.*]] = arith.constant -1 : i64
// CHECK: memref.alloc(%[[N]]) : memref<?x16xf32>
// CHECK: memref.alloc(%[[N]]) : memref<?xi32>
// CHECK: memref.alloc() : memref<4xi32>
// CHECK: call @moert_cpu_dispatch({{.*}}, %[[NOCAP]],
func.func @ragged_dispatch(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) -> tensor<?x16xf32> {
  %d, %r, %c, %s, %cw = moe.dispatch %x, %w, %e : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return %d : tensor<?x16xf32>
}

// -----

// When nothing reads the dispatched rows (a fused moe.expert_ffn gathers
// them itself), the kernel gets a row-less buffer and copies nothing.
// CHECK-LABEL: func.func @rows_not_needed
// CHECK: %[[NOROWS:.*]] = memref.alloca() : memref<0x16xf32>
// CHECK: %[[NOROWSC:.*]] = memref.cast %[[NOROWS]]
// CHECK: call @moert_cpu_dispatch(%{{.*}}, %{{.*}}, %{{.*}}, %[[NOROWSC]],
func.func @rows_not_needed(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %e: tensor<?x2xi32>) -> tensor<?xi32> {
  %d, %r, %c, %s, %cw = moe.dispatch %x, %w, %e : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32>, tensor<?x2xi32>, tensor<?x2xf32>
  return %r : tensor<?xi32>
}

// -----

// moe.expert_ffn becomes one kernel call: the tokens, row_token, counts,
// the weights (absent ones as empty buffers), the output rows, the segment
// stride (-1 ragged), the #moe.ffn fields and the weight type (bf16 = 2).
// CHECK-LABEL: func.func @expert_ffn_bf16
// CHECK: %[[OUT:.*]] = memref.alloc(%{{.*}}) : memref<?x16xf32>
// CHECK: memref.alloca() : memref<0x0xbf16>
// CHECK: memref.alloca() : memref<0x0xbf16>
// CHECK: call @moert_cpu_expert_ffn(
// CHECK: bufferization.to_tensor %[[OUT]] restrict writable : memref<?x16xf32> to tensor<?x16xf32>
func.func @expert_ffn_bf16(%x: tensor<?x16xf32>, %rows: tensor<?xi32>, %counts: tensor<4xi32>, %w1: tensor<4x16x32xbf16>, %w3: tensor<4x16x32xbf16>, %w2: tensor<4x32x16xbf16>) -> tensor<?x16xf32> {
  %o = moe.expert_ffn %x, %rows, %counts : tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%w1 : tensor<4x16x32xbf16>) w3(%w3 : tensor<4x16x32xbf16>) w2(%w2 : tensor<4x32x16xbf16>) {ffn = #moe.ffn<>} -> tensor<?x16xf32>
  return %o : tensor<?x16xf32>
}

// -----

// Shared experts folded in as experts 4 and 5: their stacks follow the
// biases (here absent, empty buffers) in the call.
// CHECK-LABEL: func.func @expert_ffn_shared
// CHECK-SAME: %[[S1:[^:]*]]: tensor<2x16x32xf32>, %[[S3:[^:]*]]: tensor<2x16x32xf32>, %[[S2:[^:]*]]: tensor<2x32x16xf32>)
// CHECK: %[[B1:.*]] = bufferization.to_buffer %[[S1]] read_only
// CHECK: %[[C1:.*]] = memref.cast %[[B1]]
// CHECK: %[[B3:.*]] = bufferization.to_buffer %[[S3]] read_only
// CHECK: %[[C3:.*]] = memref.cast %[[B3]]
// CHECK: %[[B2:.*]] = bufferization.to_buffer %[[S2]] read_only
// CHECK: %[[C2:.*]] = memref.cast %[[B2]]
// CHECK: call @moert_cpu_expert_ffn(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[C1]], %[[C3]], %[[C2]], %{{.*}}, %{{.*}}
func.func @expert_ffn_shared(%x: tensor<?x16xf32>, %rows: tensor<?xi32>, %counts: tensor<6xi32>, %w1: tensor<4x16x32xf32>, %w3: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>, %s1: tensor<2x16x32xf32>, %s3: tensor<2x16x32xf32>, %s2: tensor<2x32x16xf32>) -> tensor<?x16xf32> {
  %o = moe.expert_ffn %x, %rows, %counts : tensor<?x16xf32>, tensor<?xi32>, tensor<6xi32> w1(%w1 : tensor<4x16x32xf32>) w3(%w3 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) shared_w1(%s1 : tensor<2x16x32xf32>) shared_w3(%s3 : tensor<2x16x32xf32>) shared_w2(%s2 : tensor<2x32x16xf32>) {ffn = #moe.ffn<>} -> tensor<?x16xf32>
  return %o : tensor<?x16xf32>
}

// -----

// The combine fused in: the call gets the slots and weights (after the
// shared stacks, empty here), writes the [T, D] output (sized by the
// slots' T) and is told to combine (1); the slots come from no dispatch,
// so no routing statistics (-1).
// CHECK-LABEL: func.func @expert_ffn_combined
// CHECK-SAME: %[[SLOT:[^:]*]]: tensor<?x2xi32>, %[[CW:[^:]*]]: tensor<?x2xf32>)
// CHECK: %[[T:.*]] = tensor.dim %[[SLOT]], %c0
// CHECK: %[[OUT:.*]] = memref.alloc(%[[T]]) : memref<?x16xf32>
// CHECK: %[[SB:.*]] = bufferization.to_buffer %[[SLOT]] read_only
// CHECK: %[[SC:.*]] = memref.cast %[[SB]]
// CHECK: %[[WB:.*]] = bufferization.to_buffer %[[CW]] read_only
// CHECK: %[[WC:.*]] = memref.cast %[[WB]]
// CHECK: %[[OC:.*]] = memref.cast %[[OUT]] :
// CHECK: %[[ONE:.*]] = arith.constant 1 : i64
// CHECK: call @moert_cpu_expert_ffn({{.*}}, %[[SC]], %[[WC]], %{{.*}}, %[[OC]], {{.*}}, %[[ONE]], %c-1_i64{{[_0-9]*}}) :
// CHECK-NOT: moert_cpu_combine
func.func @expert_ffn_combined(%x: tensor<?x16xf32>, %rows: tensor<?xi32>, %c: tensor<4xi32>,
                               %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>,
                               %slot: tensor<?x2xi32>, %cw: tensor<?x2xf32>) -> tensor<?x16xf32> {
  %a = moe.expert_ffn %x, %rows, %c : tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) combine(%slot, %cw : tensor<?x2xi32>, tensor<?x2xf32>) {ffn = #moe.ffn<kind = mlp>} -> tensor<?x16xf32>
  return %a : tensor<?x16xf32>
}

// -----

// A padded dispatch over a dynamic T computes C = ceil(1.25 * T * 1 / 4)
// in the IR (f64, the order of computeCapacity), then collapses [E, C, D] to
// the kernel's [E*C, D] view.
// CHECK-LABEL: func.func @padded_dynamic_capacity
// CHECK: arith.sitofp %{{.*}} : i64 to f64
// CHECK: arith.mulf
// CHECK: arith.divf
// CHECK: math.ceil
// CHECK: arith.fptosi
// CHECK: arith.maxsi
// CHECK: arith.ceildivsi
// CHECK: %[[C:.*]] = arith.index_cast %{{.*}} : i64 to index
// CHECK: %[[BUF:.*]] = memref.alloc(%[[C]]) : memref<4x?x16xbf16>
// CHECK: memref.collapse_shape %[[BUF]] {{\[}}[0, 1], [2]] : memref<4x?x16xbf16> into memref<?x16xbf16>
// CHECK: call @moert_cpu_dispatch
func.func @padded_dynamic_capacity(%x: tensor<?x16xbf16>, %w: tensor<?x1xf32>, %e: tensor<?x1xi32>) -> tensor<4x?x16xbf16> {
  %d, %r, %c, %s, %cw = moe.dispatch %x, %w, %e {capacity = #moe.capacity<factor = 1.25, order = score, on_drop = pass_through>} : tensor<?x16xbf16>, tensor<?x1xf32>, tensor<?x1xi32> -> tensor<4x?x16xbf16>, tensor<4x?xi32>, tensor<4xi32>, tensor<?x1xi32>, tensor<?x1xf32>
  return %d : tensor<4x?x16xbf16>
}

// -----

// Combine collapses a padded expert output and passes an empty pass-through
// when there is none; the last argument is the element type code (bf16 = 2).
// CHECK-LABEL: func.func @combine_padded
// CHECK: %[[FLAT:.*]] = tensor.collapse_shape %{{.*}} {{\[}}[0, 1], [2]] : tensor<4x5x16xbf16> into tensor<20x16xbf16>
// CHECK: memref.alloca() : memref<0x16xbf16>
// CHECK: bufferization.to_buffer %[[FLAT]] read_only
// CHECK: %[[BF16:.*]] = arith.constant 2 : i64
// CHECK: call @moert_cpu_combine({{.*}}, %[[BF16]])
func.func @combine_padded(%o: tensor<4x5x16xbf16>, %s: tensor<?x1xi32>, %w: tensor<?x1xf32>) -> tensor<?x16xbf16> {
  %y = moe.combine %o, %s, %w : tensor<4x5x16xbf16>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// -----

// CHECK-LABEL: func.func @stats
// CHECK: memref.alloc() : memref<4xi64>
// CHECK: memref.alloc() : memref<4xf32>
// CHECK: call @moert_cpu_expert_stats
func.func @stats(%e: tensor<?x2xi32>, %w: tensor<?x2xf32>) -> (tensor<4xi64>, tensor<4xf32>) {
  %c, %m = moe.expert_stats %e, %w : tensor<?x2xi32>, tensor<?x2xf32> -> tensor<4xi64>, tensor<4xf32>
  return %c, %m : tensor<4xi64>, tensor<4xf32>
}
