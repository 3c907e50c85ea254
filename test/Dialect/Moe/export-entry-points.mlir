// RUN: moe-opt %s -moe-export-entry-points -split-input-file -verify-diagnostics | FileCheck %s

// Public functions with bodies get the C interface; private ones and
// declarations are left alone.
// CHECK-LABEL: func.func @entry
// CHECK-SAME: attributes {llvm.emit_c_interface}
// CHECK-LABEL: func.func private @helper
// CHECK-NOT: llvm.emit_c_interface
func.func @entry(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %y = call @helper(%x) : (tensor<?x8xf32>) -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}
func.func private @helper(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  return %x : tensor<?x8xf32>
}

// -----

// expected-error @+1 {{entry point argument #1 ('index') is not a ranked tensor}}
func.func @scalar_arg(%x: tensor<?x8xf32>, %n: index) -> tensor<?x8xf32> {
  return %x : tensor<?x8xf32>
}

// -----

// expected-error @+1 {{entry point argument #0 ('tensor<4x?xf32>') has a dynamic dimension 1; only the leading (token) dimension may be dynamic}}
func.func @inner_dynamic(%x: tensor<4x?xf32>) -> tensor<4x8xf32> {
  %c = arith.constant dense<0.0> : tensor<4x8xf32>
  return %c : tensor<4x8xf32>
}

// -----

// expected-error @+1 {{entry point result #0 ('tensor<?x8xi8>') has element type that the runtime cannot pass}}
func.func @i8_result(%x: tensor<?x8xf32>) -> tensor<?x8xi8> {
  %c0 = arith.constant 0 : index
  %t = tensor.dim %x, %c0 : tensor<?x8xf32>
  %e = tensor.empty(%t) : tensor<?x8xi8>
  return %e : tensor<?x8xi8>
}

// -----

// expected-error @+1 {{entry point result #0 ('tensor<f32>') has rank 0; entry points pass tensors of rank 1 to 8}}
func.func @scalar_result(%x: tensor<?x8xf32>) -> tensor<f32> {
  %c = arith.constant dense<0.0> : tensor<f32>
  return %c : tensor<f32>
}
