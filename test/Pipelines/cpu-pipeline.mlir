// The whole CPU pipeline on a layer mixed with ordinary ops: everything ends
// in the LLVM dialect, the data-movement ops call the runtime kernels
// through their C interface, and no call needs MLIR's runner utilities.
// RUN: moe-opt %s -moe-lower-to-cpu-pipeline | FileCheck %s
// RUN: moe-opt %s -moe-lower-to-cpu-pipeline | moe-translate --mlir-to-llvmir | FileCheck %s --check-prefix=LLVMIR

// CHECK-NOT: moe.
// CHECK-NOT: tensor.
// CHECK-NOT: linalg.
// CHECK-DAG: llvm.func @_mlir_ciface_moert_cpu_route(
// CHECK-DAG: llvm.func @_mlir_ciface_moert_cpu_dispatch(
// CHECK-DAG: llvm.func @_mlir_ciface_moert_cpu_expert_ffn(
// CHECK-DAG: llvm.func @_mlir_ciface_layer_with_residual(
// CHECK-NOT: memrefCopy

// LLVMIR-DAG: define void @_mlir_ciface_layer_with_residual(
// LLVMIR-DAG: declare void @_mlir_ciface_moert_cpu_route(

func.func @layer_with_residual(%x: tensor<?x16xf32>, %wg: tensor<16x4xf32>,
                               %w1: tensor<4x16x32xf32>, %w3: tensor<4x16x32xf32>,
                               %w2: tensor<4x32x16xf32>) -> tensor<?x16xf32> {
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x4xf32>)
         w1(%w1 : tensor<4x16x32xf32>) w3(%w3 : tensor<4x16x32xf32>)
         w2(%w2 : tensor<4x32x16xf32>)
         {ffn = #moe.ffn<activation = gelu_tanh>, routing = #moe.routing<k = 2, normalize = selected>,
          capacity = #moe.capacity<factor = 1.5>}
         -> tensor<?x16xf32>
  %c0 = arith.constant 0 : index
  %t = tensor.dim %x, %c0 : tensor<?x16xf32>
  %e = tensor.empty(%t) : tensor<?x16xf32>
  %r = linalg.add ins(%x, %y : tensor<?x16xf32>, tensor<?x16xf32>) outs(%e : tensor<?x16xf32>) -> tensor<?x16xf32>
  return %r : tensor<?x16xf32>
}
