// RUN: moe-opt %s -moe-resolve-workgroup-barriers -split-input-file -verify-diagnostics | FileCheck %s

// After outlining: the kernel's placeholder calls become gpu.barrier and
// its copy of the declaration goes; the host loses the declaration and the
// workgroup globals (host code cannot lower workgroup memory), the kernel
// keeps its globals. Other host globals stay.
// CHECK-LABEL: module attributes {gpu.container_module}
//   CHECK-NOT:   @__moe_workgroup_barrier
//   CHECK-NOT:   memref.global "private" @__moe_tile_lhs
//       CHECK:   memref.global "private" constant @table
//       CHECK:   gpu.module @kernels
//       CHECK:     memref.global "private" @__moe_tile_lhs
//       CHECK:     gpu.func @tile
//       CHECK:       memref.store
//       CHECK:       gpu.barrier
//       CHECK:       memref.load
//       CHECK:       gpu.barrier
//   CHECK-NOT:   func.call
module attributes {gpu.container_module} {
  func.func private @__moe_workgroup_barrier()
  memref.global "private" @__moe_tile_lhs : memref<16x64xf32, #gpu.address_space<workgroup>>
  memref.global "private" constant @table : memref<2xf32> = dense<[1.0, 2.0]>
  func.func @host(%n: index, %out: memref<64xf32>) {
    %c1 = arith.constant 1 : index
    %c64 = arith.constant 64 : index
    gpu.launch_func @kernels::@tile blocks in (%n, %c1, %c1) threads in (%c64, %c1, %c1) args(%out : memref<64xf32>)
    return
  }
  gpu.module @kernels {
    memref.global "private" @__moe_tile_lhs : memref<16x64xf32, #gpu.address_space<workgroup>>
    func.func private @__moe_workgroup_barrier()
    gpu.func @tile(%out: memref<64xf32>) kernel {
      %c0 = arith.constant 0 : index
      %tx = gpu.thread_id x
      %tile = memref.get_global @__moe_tile_lhs : memref<16x64xf32, #gpu.address_space<workgroup>>
      %v = memref.load %out[%tx] : memref<64xf32>
      memref.store %v, %tile[%c0, %tx] : memref<16x64xf32, #gpu.address_space<workgroup>>
      func.call @__moe_workgroup_barrier() : () -> ()
      %w = memref.load %tile[%c0, %tx] : memref<16x64xf32, #gpu.address_space<workgroup>>
      func.call @__moe_workgroup_barrier() : () -> ()
      memref.store %w, %out[%tx] : memref<64xf32>
      gpu.return
    }
  }
}

// -----

// Before outlining there is nothing a barrier could synchronise.
module {
  func.func private @__moe_workgroup_barrier()
  func.func @not_outlined() {
    // expected-error @+1 {{moe-resolve-workgroup-barriers: a workgroup barrier outside a kernel (run gpu-kernel-outlining first)}}
    func.call @__moe_workgroup_barrier() : () -> ()
    return
  }
}

// -----

// Host code reading a workgroup global cannot be lowered: reported.
module {
  // expected-error @+1 {{moe-resolve-workgroup-barriers: a workgroup global still used by host code}}
  memref.global "private" @__moe_tile_lhs : memref<16x64xf32, #gpu.address_space<workgroup>>
  func.func @host_use() -> memref<16x64xf32, #gpu.address_space<workgroup>> {
    %g = memref.get_global @__moe_tile_lhs : memref<16x64xf32, #gpu.address_space<workgroup>>
    return %g : memref<16x64xf32, #gpu.address_space<workgroup>>
  }
}
