// RUN: moe-opt %s -split-input-file -verify-diagnostics -pass-pipeline='builtin.module(gpu.module(moe-expand-device-math{target=nvvm}))'

gpu.module @kernels {
  gpu.func @sin(%x: f32, %out: memref<1xf32>) kernel {
    %c0 = arith.constant 0 : index
    // expected-error @+1 {{'math.sin' op has no GPU lowering without the vendor device library; supported: exp, exp2, log, log2, sqrt, rsqrt, absf, fma, floor, ceil, tanh, erf, powf}}
    %s = math.sin %x : f32
    memref.store %s, %out[%c0] : memref<1xf32>
    gpu.return
  }
}

// -----

gpu.module @kernels {
  gpu.func @f64(%x: f64, %out: memref<1xf64>) kernel {
    %c0 = arith.constant 0 : index
    // expected-error @+1 {{'math.exp' op has no GPU lowering without the vendor device library (only scalar f32, f16 and bf16 math is expanded)}}
    %s = math.exp %x : f64
    memref.store %s, %out[%c0] : memref<1xf64>
    gpu.return
  }
}
