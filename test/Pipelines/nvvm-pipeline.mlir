// The CUDA pipeline on a layer with a residual add: the host side ends in
// the LLVM dialect and calls only the mgpu* launch ABI and the generic
// allocation functions; every kernel is PTX (format=isa, no toolkit) whose
// math uses native instructions instead of libdevice.
// RUN: moe-opt %s -moe-lower-to-nvvm-pipeline | FileCheck %s
// RUN: moe-opt %s -moe-lower-to-nvvm-pipeline | moe-translate --moe-extract-device-code | FileCheck %s --check-prefix=PTX
// RUN: moe-opt %s -moe-lower-to-nvvm-pipeline="chip=sm_90 features=+ptx80" | moe-translate --moe-extract-device-code | FileCheck %s --check-prefix=SM90
// RUN: moe-opt %s -moe-lower-to-nvvm-pipeline | moe-translate --mlir-to-llvmir | FileCheck %s --check-prefix=LLVMIR

// CHECK-NOT: moe.
// CHECK-NOT: tensor.
// CHECK-NOT: linalg.
// CHECK-NOT: scf.
// CHECK-DAG: gpu.binary @{{.*}} [#gpu.object<#nvvm.target<O = 3, chip = "sm_80", features = "+ptx80">
// CHECK-DAG: llvm.func @_mlir_memref_to_llvm_alloc(i64) -> !llvm.ptr
// CHECK-DAG: gpu.launch_func @
// CHECK-DAG: llvm.func @_mlir_ciface_layer_with_residual(
// CHECK-NOT: llvm.func @malloc
// CHECK-NOT: __moe_workgroup_barrier
// CHECK-NOT: #gpu.address_space<workgroup>

// PTX: // ----- gpu.binary @{{.*}} target #nvvm.target<O = 3, chip = "sm_80", features = "+ptx80"> format assembly
// PTX: .version 8.0
// PTX: .target sm_80
// PTX: .visible .entry
// PTX: ex2.approx.ftz.f32
// PTX-NOT: __nv_
// PTX-NOT: .extern .func

// SM90: .target sm_90

// The expert FFN's shared-memory kernels: K slices staged in .shared
// arrays between bar.sync, fused multiply-adds; the router product keeps
// its accumulator in a register. shared-tiles=false: no shared memory.
// RUN: moe-opt %s -moe-lower-to-nvvm-pipeline | moe-translate --moe-extract-device-code | FileCheck %s --check-prefix=TILES
// RUN: moe-opt %s -moe-lower-to-nvvm-pipeline="shared-tiles=false" | moe-translate --moe-extract-device-code | FileCheck %s --check-prefix=NOTILES
// TILES: .shared .align 16 .b8 __moe_tile_lhs[4096];
// TILES: st.shared.b32
// TILES: bar.sync 0;
// TILES: ld.shared.v4.b32
// TILES: fma.rn.f32
// TILES: bar.sync 0;
// TILES-NOT: __moe_workgroup_barrier
// NOTILES-NOT: .shared
// NOTILES-NOT: bar.sync

// Every parallel loop becomes blocks of `block-size` threads.
// RUN: moe-opt %s -moe-lower-to-nvvm-pipeline="block-size=128" | FileCheck %s --check-prefix=BLOCK
// BLOCK: %[[B:.*]] = llvm.mlir.constant(128 : index) : i64
// BLOCK: gpu.launch_func @{{.*}} threads in (%[[B]], 

// LLVMIR-DAG: @llvm.global_ctors
// LLVMIR-DAG: call ptr @mgpuModuleLoadJIT(
// LLVMIR-DAG: call void @mgpuLaunchKernel(
// LLVMIR-DAG: define void @_mlir_ciface_layer_with_residual(

func.func @layer_with_residual(%x: tensor<?x16xf32>, %wg: tensor<16x4xf32>,
                               %w1: tensor<4x16x32xf32>, %w3: tensor<4x16x32xf32>,
                               %w2: tensor<4x32x16xf32>) -> tensor<?x16xf32> {
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x4xf32>)
         w1(%w1 : tensor<4x16x32xf32>) w3(%w3 : tensor<4x16x32xf32>)
         w2(%w2 : tensor<4x32x16xf32>)
         {routing = #moe.routing<k = 2, normalize = selected>, ffn = #moe.ffn<>}
         -> tensor<?x16xf32>
  %c0 = arith.constant 0 : index
  %t = tensor.dim %x, %c0 : tensor<?x16xf32>
  %e = tensor.empty(%t) : tensor<?x16xf32>
  %r = linalg.add ins(%x, %y : tensor<?x16xf32>, tensor<?x16xf32>) outs(%e : tensor<?x16xf32>) -> tensor<?x16xf32>
  return %r : tensor<?x16xf32>
}
