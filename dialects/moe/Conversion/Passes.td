//===- Passes.td - moe conversion passes -----------------*- tablegen -*-===//

#ifndef MOE_CONVERSION_PASSES_TD
#define MOE_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def ConvertMoeToLinalgPass : Pass<"convert-moe-to-linalg"> {
  let summary = "Lower moe.experts and moe.grouped_matmul to scf loops over experts";
  let description = [{
    Expert computation becomes an `scf.for` over the E experts on tensors.
    Each iteration reads the expert's row count from `counts`, takes its
    segment of the dispatched tokens with `tensor.extract_slice` (rows
    `[offset, offset + count)` ragged, `[e, 0:count]` padded) and the expert's
    slice of every stacked weight, runs the body (cloned) or the product, and
    inserts the result into a zero-initialised accumulator. Counts are
    clamped to the rows that exist, so a corrupt count never addresses memory
    outside the tensors. An expert without rows does no arithmetic.

    `moe.grouped_matmul` accumulates in f32 and converts to the result type.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

def ConvertMoeToRuntimePass : Pass<"convert-moe-to-runtime", "::mlir::ModuleOp"> {
  let summary = "Lower routing, dispatch, combine, statistics and dense f32 products to runtime kernel calls";
  let description = [{
    `moe.route`, `moe.dispatch`, `moe.combine` and `moe.expert_stats` are
    data-dependent and cheap next to the expert products; on CPU they become
    one call each to the kernels of `runtime/include/moert/cpu_kernels.h`
    (`moert_cpu_route`, ...), which implement docs/Semantics.md. Operands
    cross into memrefs with `bufferization.to_buffer` (read-only), results are
    freshly allocated buffers wrapped by `bufferization.to_tensor restrict`, so
    one-shot bufferization composes with the rest of the function. The
    declarations carry `llvm.emit_c_interface`; a padded capacity that depends
    on a dynamic token count is computed in the IR with the formula of
    `#moe.capacity`.

    The CPU kernels take f32 routing values (logits, weights); activations may
    be f32, f16 or bf16.

    f32 `linalg.matmul` ops with the default maps (the router product of
    every layer, other dense products of the model) become
    `moert_cpu_matmul`, which computes the same sums in the same order but
    vectorised and on the runtime's threads; other element types stay on
    the generic loops.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::bufferization::BufferizationDialect",
    "::mlir::func::FuncDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

def ConvertMoeToParallelLoopsPass : Pass<"convert-moe-to-parallel-loops", "::mlir::ModuleOp"> {
  let summary = "Lower routing, dispatch, expert FFN, combine and statistics to parallel loops over buffers";
  let description = [{
    The device-kernel form of the data-dependent moe ops: each of
    `moe.route`, `moe.dispatch`, `moe.expert_ffn`, `moe.combine` and
    `moe.expert_stats` becomes a short sequence of one-dimensional
    `scf.parallel` loops over `memref`s whose iterations are independent
    (no atomics, no shared scratch), so that `gpu-map-parallel-loops` and
    `convert-parallel-loops-to-gpu` can turn each loop into one kernel
    launch, and `convert-scf-to-cf` can run the very same loops on the CPU
    (which is how the GPU kernels' semantics are tested on machines without
    a GPU).

    * route: one iteration per token; scores, selection (K passes of an
      arg-best over the strict rank order of docs/Semantics.md 1.2),
      grouped masking, top_p prefix, threshold skipping and normalisation
      follow the CPU kernel's operation order;
    * dispatch: a counting sort in queue order (`position`,
      `choice_major`; ragged is `position` without capacity) parallel over
      (chunk of 256 queue positions, expert): per-chunk histograms, a
      per-expert prefix over chunks (the counts), then per-chunk claims, so
      no iteration walks more than 256 pairs; for `score` one iteration per
      pair counts the pairs ranking before it; row gathers are one
      iteration per element;
    * expert_ffn: every expert's segment is cut into tiles of `tile-rows` rows (a
      tile table, one launch for all experts); one iteration per
      `(tile, f)` computes the activated gate/up products of the tile's rows
      into an `[R, F]` f32 buffer, loading each weight element once for the
      tile, and one iteration per `(tile, d)` the down product; with
      `shared-tiles` (GPU targets) the two products are instead
      `gpu.launch` kernels over (64-row tile, 64 columns[, K range]) that
      stage 16-deep K slices in workgroup memory; when few row tiles exist
      (decode) K is split into up to 8 ranges whose partial sums a second
      parallel loop adds in range order (and applies the epilogue);
    * combine and expert_stats: one iteration per output element / expert;
    * f32 `linalg.matmul` (the router products): one iteration per output
      element accumulating in a register in k order (16 products per step).

    Operands cross into memrefs with `bufferization.to_buffer` (read-only),
    results are fresh buffers wrapped by `bufferization.to_tensor restrict`.
    Not lowered (the op reports why): the `sinkhorn`, `expert_choice` and
    `sparse_mixer` routing policies, which need cross-token or iterative
    passes.
  }];
  let options = [
    Option<"tileRows", "tile-rows", "int64_t", /*default=*/"8",
           "Rows of an expert-FFN tile: each weight element loaded serves "
           "this many rows (in [1, 64]; more rows, more registers per thread)">,
    Option<"sharedTiles", "shared-tiles", "bool", /*default=*/"false",
           "GPU targets only: lower the expert FFN's two products to "
           "shared-memory tiled grouped GEMM kernels (gpu.launch, 64x64 "
           "output tiles, K steps of 16, 256 threads with 4x4 results each, "
           "K split for decode) instead of per-column loops; the kernels "
           "need moe-resolve-workgroup-barriers after gpu-kernel-outlining">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::bufferization::BufferizationDialect",
    "::mlir::func::FuncDialect",
    "::mlir::gpu::GPUDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect",
    "::mlir::vector::VectorDialect"
  ];
}

def MoeResolveWorkgroupBarriersPass
    : Pass<"moe-resolve-workgroup-barriers", "::mlir::ModuleOp"> {
  let summary = "Turn the barrier placeholders of moe's shared-memory kernels into gpu.barrier";
  let description = [{
    The shared-memory kernels of `convert-moe-to-parallel-loops{shared-tiles}`
    are built before bufferization, whose buffer deallocation rejects
    `gpu.barrier` (an op without declared memory effects) and workgroup
    attributions. They therefore synchronise through calls to the private
    declaration `@__moe_workgroup_barrier` and address their tiles through
    `memref.get_global` of private workgroup-space globals. Run after
    `gpu-kernel-outlining`, this pass replaces every such call inside a
    `gpu.module` with `gpu.barrier` and drops the declaration there, and
    removes the host module's copies of the declaration and of the
    workgroup globals, which host code cannot lower and never uses.
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
}

#endif // MOE_CONVERSION_PASSES_TD
