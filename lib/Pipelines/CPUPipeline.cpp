//===- CPUPipeline.cpp - moe to LLVM for the CPU ---------------------------===//

#include "moe/Pipelines/Pipelines.h"

#include "mlir/Pass/PassRegistry.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;

void mlir::moe::buildMoeLowerToCPUPipeline(
    OpPassManager &pm, const MoeCPUPipelineOptions &options) {
  // Stages, each a textual sub-pipeline so a stage can be replayed by hand
  // with moe-opt (docs/Pipelines.md lists them).
  // 1. moe ops to tensors, loops and kernel calls. Fusion runs right after
  //    decomposition, while expert bodies are still in their canonical form.
  std::string stages = "moe-decompose,";
  if (options.fuseExperts)
    stages += "moe-fuse-experts,";
  stages += "canonicalize,convert-moe-to-linalg,";
  stages += options.parallelLoops ? "convert-moe-to-parallel-loops,"
                                  : "convert-moe-to-runtime,";
  if (options.exportEntryPoints)
    stages += "moe-export-entry-points,";
  // No CSE before bufferization: it would merge the zero-filled accumulators
  // of different products into one tensor, forcing copies.
  stages +=
      "canonicalize,"
      // 2. Bufferize; function boundaries get identity layouts so the C
      //    interface sees plain row-major descriptors. Empty-tensor
      //    elimination lets expert outputs be computed in place in the
      //    accumulator instead of being copied into it.
      "eliminate-empty-tensors,"
      "one-shot-bufferize{bufferize-function-boundaries "
      "function-boundary-type-conversion=identity-layout-map},"
      "canonicalize,buffer-deallocation-pipeline,"
      // 3. Loops and LLVM. Math functions without an LLVM intrinsic (erf,
      //    tanh) become libm calls; the model library links -lm.
      "convert-linalg-to-loops,expand-strided-metadata,lower-affine,"
      "convert-scf-to-cf,convert-math-to-llvm,convert-math-to-libm,"
      "convert-to-llvm,reconcile-unrealized-casts";
  if (failed(parsePassPipeline(stages, pm, llvm::errs())))
    llvm::report_fatal_error("moe-lower-to-cpu-pipeline: malformed stages");
}

void mlir::moe::registerMoePipelines() {
  PassPipelineRegistration<MoeCPUPipelineOptions>(
      "moe-lower-to-cpu-pipeline",
      "Lower moe (and tensor/linalg/arith/math) to the LLVM dialect for CPU "
      "model libraries",
      buildMoeLowerToCPUPipeline);
}
