// The ROCm pipeline: the same host ABI as CUDA, kernels in GCN assembly
// (format=isa, no ROCm installation) for gfx90a and gfx942, math on native
// instructions instead of ocml.
// RUN: moe-opt %s -moe-lower-to-rocdl-pipeline | FileCheck %s
// RUN: moe-opt %s -moe-lower-to-rocdl-pipeline="format=isa" | moe-translate --moe-extract-device-code | FileCheck %s --check-prefix=GCN
// RUN: moe-opt %s -moe-lower-to-rocdl-pipeline="chip=gfx942 format=isa" | moe-translate --moe-extract-device-code | FileCheck %s --check-prefix=GFX942

// CHECK-NOT: moe.
// CHECK-NOT: scf.
// CHECK-DAG: gpu.binary @{{.*}} [#gpu.object<#rocdl.target<O = 3, chip = "gfx90a">
// CHECK-DAG: gpu.launch_func @
// CHECK-DAG: llvm.func @_mlir_memref_to_llvm_free(!llvm.ptr)

// GCN: format assembly
// GCN: .amdgcn_target "amdgcn-amd-amdhsa--gfx90a
// GCN: v_exp_f32
// GCN-NOT: __ocml_
// The expert FFN's shared-memory kernels: LDS stores, s_barrier, LDS loads.
// GCN: ds_write
// GCN: s_barrier
// GCN: ds_read_b128
// GCN: s_barrier

// GFX942: .amdgcn_target "amdgcn-amd-amdhsa--gfx942

func.func @layer(%x: tensor<?x16xf32>, %wg: tensor<16x4xf32>,
                 %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>) -> tensor<?x16xf32> {
  %y = moe.layer %x : tensor<?x16xf32> router(%wg : tensor<16x4xf32>)
         w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>)
         {routing = #moe.routing<k = 2>, ffn = #moe.ffn<kind = mlp, activation = gelu>}
         -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
