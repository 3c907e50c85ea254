//===- CPUPipeline.cpp - moe to LLVM for the CPU ---------------------------===//

#include "moe/Pipelines/Pipelines.h"
#include "Stages.h"

using namespace mlir;

void mlir::moe::buildMoeLowerToCPUPipeline(
    OpPassManager &pm, const MoeCPUPipelineOptions &options) {
  std::string stages = detail::bufferizedStages(
      options.fuseExperts, options.parallelLoops, options.exportEntryPoints,
      /*tileRows=*/8, /*sharedTiles=*/false, options.foldSharedExperts,
      options.fuseCombine);
  // 3. Loops and LLVM. Math functions without an LLVM intrinsic (erf, tanh)
  //    become libm calls; the model library links -lm.
  stages += "convert-linalg-to-loops,expand-strided-metadata,lower-affine,"
            "convert-scf-to-cf,convert-math-to-llvm,convert-math-to-libm,"
            "convert-to-llvm,reconcile-unrealized-casts";
  detail::addStages(pm, stages, "moe-lower-to-cpu-pipeline");
}
