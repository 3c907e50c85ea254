// RUN: moe-opt %s -split-input-file -pass-pipeline='builtin.module(gpu.module(moe-expand-device-math{target=nvvm}))' | FileCheck %s --check-prefix=NVVM
// RUN: moe-opt %s -split-input-file -pass-pipeline='builtin.module(gpu.module(moe-expand-device-math{target=rocdl}))' | FileCheck %s --check-prefix=ROCDL

// exp through the target's exp2 instruction; rsqrt through sqrt.
// NVVM-LABEL: gpu.func @exp_rsqrt
//       NVVM:   %[[L:.*]] = arith.constant 1.44269502 : f32
//       NVVM:   %[[M:.*]] = arith.mulf %{{.*}}, %[[L]] : f32
//       NVVM:   llvm.inline_asm "ex2.approx.ftz.f32 $0, $1;", "=f,f" %[[M]] : (f32) -> f32
//       NVVM:   llvm.inline_asm "sqrt.rn.f32 $0, $1;", "=f,f"
//       NVVM:   arith.divf
//   NVVM-NOT:   math.
// ROCDL-LABEL: gpu.func @exp_rsqrt
//       ROCDL:   llvm.inline_asm "v_exp_f32 $0, $1", "=v,v"
//       ROCDL:   llvm.inline_asm "v_sqrt_f32 $0, $1", "=v,v"
gpu.module @kernels {
  gpu.func @exp_rsqrt(%x: f32, %out: memref<2xf32>) kernel {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %e = math.exp %x : f32
    %r = math.rsqrt %x : f32
    memref.store %e, %out[%c0] : memref<2xf32>
    memref.store %r, %out[%c1] : memref<2xf32>
    gpu.return
  }
}

// -----

// bf16 is widened to f32 and narrowed back; erf and tanh expand to
// arithmetic around exp2; absf clears the sign bit.
// NVVM-LABEL: gpu.func @bf16_erf_tanh_abs
//       NVVM:   arith.extf %{{.*}} : bf16 to f32
//       NVVM:   arith.andi %{{.*}}, %{{.*}} : i32
//       NVVM:   ex2.approx.ftz.f32
//       NVVM:   arith.truncf %{{.*}} : f32 to bf16
//       NVVM:   ex2.approx.ftz.f32
//       NVVM:   arith.andi
//   NVVM-NOT:   math.
gpu.module @kernels {
  gpu.func @bf16_erf_tanh_abs(%x: bf16, %y: f32, %out: memref<3xf32>, %outb: memref<1xbf16>) kernel {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %e = math.erf %x : bf16
    %t = math.tanh %y : f32
    %a = math.absf %y : f32
    memref.store %e, %outb[%c0] : memref<1xbf16>
    memref.store %t, %out[%c0] : memref<3xf32>
    memref.store %a, %out[%c1] : memref<3xf32>
    gpu.return
  }
}

// -----

// fma stays one fused instruction (llvm.intr.fma), not a multiply and an
// add rounded separately, and needs no device library.
// NVVM-LABEL: gpu.func @fused_multiply_add
//       NVVM:   llvm.intr.fma(%{{.*}}, %{{.*}}, %{{.*}}) : (f32, f32, f32) -> f32
//   NVVM-NOT:   arith.mulf
//   NVVM-NOT:   math.
// ROCDL-LABEL: gpu.func @fused_multiply_add
//       ROCDL:   llvm.intr.fma
gpu.module @kernels {
  gpu.func @fused_multiply_add(%x: f32, %y: f32, %z: f32, %out: memref<1xf32>) kernel {
    %c0 = arith.constant 0 : index
    %f = math.fma %x, %y, %z : f32
    memref.store %f, %out[%c0] : memref<1xf32>
    gpu.return
  }
}
