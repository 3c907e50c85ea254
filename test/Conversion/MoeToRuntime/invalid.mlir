// RUN: moe-opt %s -convert-moe-to-runtime -split-input-file -verify-diagnostics

func.func @bf16_logits(%l: tensor<?x8xbf16>) -> (tensor<?x2xbf16>, tensor<?x2xi32>) {
  // expected-error @+1 {{the CPU kernels route f32 logits; extend the logits to f32 first}}
  %w, %e = moe.route %l {routing = #moe.routing<k = 2>} : tensor<?x8xbf16> -> tensor<?x2xbf16>, tensor<?x2xi32>
  return %w, %e : tensor<?x2xbf16>, tensor<?x2xi32>
}

// -----

func.func @bf16_weights(%x: tensor<?x16xf32>, %w: tensor<?x2xbf16>, %e: tensor<?x2xi32>) -> tensor<?x16xf32> {
  // expected-error @+1 {{the CPU kernels need f32 routing weights}}
  %d, %r, %c, %s, %cw = moe.dispatch %x, %w, %e : tensor<?x16xf32>, tensor<?x2xbf16>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32>, tensor<?x2xi32>, tensor<?x2xbf16>
  return %d : tensor<?x16xf32>
}
