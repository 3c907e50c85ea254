// RUN: moe-opt %s -convert-moe-to-parallel-loops=shared-tiles=true -split-input-file | FileCheck %s
// RUN: moe-opt %s -convert-moe-to-parallel-loops -split-input-file | FileCheck %s --check-prefix=COLUMNS

// shared-tiles: the two products of the fused expert FFN become gpu.launch
// kernels over (row tile, 64-column block) with 256 threads that stage
// 16-deep K slices in private workgroup globals between barrier
// placeholders (moe-resolve-workgroup-barriers makes them gpu.barrier after
// outlining), the SwiGLU epilogue in the first kernel's store. Each
// thread reads its four rows and four columns of a K step as 16-byte
// vectors. The loads
// of step s + 1 are issued after the barrier that publishes step s and
// before its products (software pipelining).
// CHECK-DAG:   func.func private @__moe_workgroup_barrier()
// CHECK-DAG:   memref.global "private" @__moe_tile_lhs : memref<16x64xf32, #gpu.address_space<workgroup>>
// CHECK-DAG:   memref.global "private" @__moe_tile_rhs0 : memref<16x64xf32, #gpu.address_space<workgroup>>
// CHECK-DAG:   memref.global "private" @__moe_tile_rhs1 : memref<16x64xf32, #gpu.address_space<workgroup>>
// CHECK-LABEL: func.func @expert_ffn_glu_bf16
//       CHECK:   %[[H:.*]] = memref.alloc(%{{.*}}) : memref<?x32xf32>
// Decode (few row tiles): the gate/up product splits K into at most 8
// ranges (grid z) whose partial sums a second kernel adds in range order
// before the epilogue; otherwise one kernel with the epilogue.
//       CHECK:   %[[S1:.*]] = arith.maxsi %{{.*}}, %c1{{.*}} : index
//       CHECK:   %[[SPLIT:.*]] = arith.cmpi ugt, %[[S1]], %{{.*}} : index
//       CHECK:   scf.if %[[SPLIT]] {
//       CHECK:     %[[PG:.*]] = memref.alloc(%{{.*}}) : memref<?x32xf32>
//       CHECK:     %[[PU:.*]] = memref.alloc(%{{.*}}) : memref<?x32xf32>
//       CHECK:     gpu.launch blocks({{.*}}) in ({{.*}}, %{{.*}} = %[[S1]])
//       CHECK:       memref.store %{{.*}}, %[[PG]]
//       CHECK:       memref.store %{{.*}}, %[[PU]]
//       CHECK:       gpu.terminator
//       CHECK:     scf.parallel
//       CHECK:       scf.for %{{.*}} = %{{.*}} to %[[S1]]
//       CHECK:       math.exp
//       CHECK:       memref.store %{{.*}}, %[[H]]
//       CHECK:   } else {
//       CHECK:     %[[C256:.*]] = arith.constant 256 : index
//       CHECK:     gpu.launch blocks({{.*}}) in ({{.*}}) threads({{.*}}) in (%{{.*}} = %[[C256]]
//       CHECK:       memref.get_global @__moe_tile_lhs
//       CHECK:       memref.get_global @__moe_tile_rhs1
//       CHECK:       arith.extf %{{.*}} : bf16 to f32
//       CHECK:       scf.for
//       CHECK:         memref.store %{{.*}} : memref<16x64xf32, #gpu.address_space<workgroup>>
//       CHECK:         func.call @__moe_workgroup_barrier() : () -> ()
//       CHECK:         arith.extf %{{.*}} : bf16 to f32
//       CHECK:         scf.for
//       CHECK:           vector.load %{{.*}} {alignment = 16 : i64} : memref<16x64xf32, #gpu.address_space<workgroup>>, vector<4xf32>
//       CHECK:           math.fma
//       CHECK:         func.call @__moe_workgroup_barrier() : () -> ()
//       CHECK:       math.exp
//       CHECK:       memref.store %{{.*}}, %[[H]]
//       CHECK:       gpu.terminator
//       CHECK:   }
//       CHECK:   %[[O:.*]] = memref.alloc(%{{.*}}) : memref<?x16xf32>
//       CHECK:   scf.parallel
// The down product splits K into at most 8 ranges (grid z): partial sums
// per range, then one kernel adds them in range order for rows with a
// valid token.
//       CHECK:   %[[SPLITS:.*]] = arith.maxsi %{{.*}}, %c1{{.*}} : index
//       CHECK:   %[[P:.*]] = memref.alloc(%{{.*}}) : memref<?x16xf32>
//       CHECK:   gpu.launch blocks({{.*}}) in ({{.*}}, %{{.*}} = %[[SPLITS]])
//       CHECK:     memref.get_global @__moe_tile_rhs0
//   CHECK-NOT:     memref.get_global @__moe_tile_rhs1
//       CHECK:     memref.load %[[H]]
//       CHECK:     memref.store %{{.*}}, %[[P]]
//       CHECK:     gpu.terminator
//       CHECK:   scf.parallel
//       CHECK:     scf.for %{{.*}} = %{{.*}} to %[[SPLITS]]
//       CHECK:       memref.load %[[P]]
//       CHECK:     memref.store %{{.*}}, %[[O]]
// Without the option: per-column parallel loops, no launch, no globals.
// COLUMNS-NOT: gpu.launch
// COLUMNS-NOT: memref.global
// COLUMNS-LABEL: func.func @expert_ffn_glu_bf16
//   COLUMNS-NOT: gpu.launch
func.func @expert_ffn_glu_bf16(%x: tensor<?x16xf32>, %rt: tensor<?xi32>, %c: tensor<4xi32>, %w1: tensor<4x16x32xbf16>, %w3: tensor<4x16x32xbf16>, %w2: tensor<4x32x16xbf16>) -> tensor<?x16xf32> {
  %y = moe.expert_ffn %x, %rt, %c : tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%w1 : tensor<4x16x32xbf16>) w3(%w3 : tensor<4x16x32xbf16>) w2(%w2 : tensor<4x32x16xbf16>) {ffn = #moe.ffn<kind = glu, activation = silu>} -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// A non-GLU FFN stages one weight slice per step; the declarations are
// made once per module however many expert FFNs there are.
// CHECK-COUNT-1: func.func private @__moe_workgroup_barrier()
// CHECK-LABEL: func.func @two_gelu_ffns
//       CHECK:   gpu.launch
//   CHECK-NOT:     memref.get_global @__moe_tile_rhs1
//       CHECK:     math.fma
//       CHECK:   gpu.launch
//       CHECK:   gpu.launch
//       CHECK:   gpu.launch
func.func @two_gelu_ffns(%x: tensor<?x16xf32>, %rt: tensor<?xi32>, %c: tensor<4xi32>, %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>) -> (tensor<?x16xf32>, tensor<?x16xf32>) {
  %y = moe.expert_ffn %x, %rt, %c : tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) {ffn = #moe.ffn<kind = mlp, activation = gelu>} -> tensor<?x16xf32>
  %z = moe.expert_ffn %x, %rt, %c : tensor<?x16xf32>, tensor<?xi32>, tensor<4xi32> w1(%w1 : tensor<4x16x32xf32>) w2(%w2 : tensor<4x32x16xf32>) {ffn = #moe.ffn<kind = mlp, activation = gelu>} -> tensor<?x16xf32>
  return %y, %z : tensor<?x16xf32>, tensor<?x16xf32>
}
