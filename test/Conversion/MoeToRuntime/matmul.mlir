// RUN: moe-opt %s -convert-moe-to-runtime -split-input-file | FileCheck %s

// f32 products (the router of every layer) become moert_cpu_matmul with the
// init as a read-only input and a fresh result buffer.
//       CHECK: func.func private @moert_cpu_matmul({{.*}}) attributes {llvm.emit_c_interface}
// CHECK-LABEL: func.func @router
//  CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>, %[[W:.*]]: tensor<64x8xf32>)
//       CHECK:   %[[FILL:.*]] = linalg.fill
//       CHECK:   %[[OUT:.*]] = memref.alloc(%{{.*}}) : memref<?x8xf32>
//       CHECK:   bufferization.to_buffer %[[X]] read_only
//       CHECK:   bufferization.to_buffer %[[W]] read_only
//       CHECK:   bufferization.to_buffer %[[FILL]] read_only
//       CHECK:   call @moert_cpu_matmul(
//       CHECK:   bufferization.to_tensor %[[OUT]] restrict writable
//   CHECK-NOT:   linalg.matmul
func.func @router(%x: tensor<?x64xf32>, %w: tensor<64x8xf32>) -> tensor<?x8xf32> {
  %c0 = arith.constant 0 : index
  %zero = arith.constant 0.0 : f32
  %t = tensor.dim %x, %c0 : tensor<?x64xf32>
  %e = tensor.empty(%t) : tensor<?x8xf32>
  %f = linalg.fill ins(%zero : f32) outs(%e : tensor<?x8xf32>) -> tensor<?x8xf32>
  %r = linalg.matmul ins(%x, %w : tensor<?x64xf32>, tensor<64x8xf32>) outs(%f : tensor<?x8xf32>) -> tensor<?x8xf32>
  return %r : tensor<?x8xf32>
}

// -----

// Other element types stay on the generic loops.
// CHECK-LABEL: func.func @bf16_product
//       CHECK:   linalg.matmul
//   CHECK-NOT:   moert_cpu_matmul
func.func @bf16_product(%x: tensor<4x64xbf16>, %w: tensor<64x8xbf16>, %o: tensor<4x8xbf16>) -> tensor<4x8xbf16> {
  %r = linalg.matmul ins(%x, %w : tensor<4x64xbf16>, tensor<64x8xbf16>) outs(%o : tensor<4x8xbf16>) -> tensor<4x8xbf16>
  return %r : tensor<4x8xbf16>
}
