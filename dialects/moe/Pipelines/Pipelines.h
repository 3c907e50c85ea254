//===- Pipelines.h - moe lowering pipelines ----------------------*- C++ -*-===//

#ifndef MOE_PIPELINES_PIPELINES_H
#define MOE_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassOptions.h"

namespace mlir::moe {

/// Options of `moe-lower-to-cpu-pipeline`.
struct MoeCPUPipelineOptions
    : public PassPipelineOptions<MoeCPUPipelineOptions> {
  PassOptions::Option<bool> exportEntryPoints{
      *this, "export-entry-points",
      llvm::cl::desc("Give public functions a C interface "
                     "(_mlir_ciface_<name>) for model libraries"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> fuseExperts{
      *this, "fuse-experts",
      llvm::cl::desc("Fuse token gather and standard expert FFNs into "
                     "moe.expert_ffn (the tiled, multi-threaded CPU kernel)"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> parallelLoops{
      *this, "parallel-loops",
      llvm::cl::desc("Lower routing, dispatch, expert FFN and combine to the "
                     "parallel loops the GPU pipelines map to kernels "
                     "(convert-moe-to-parallel-loops) instead of calls of the "
                     "CPU runtime kernels; runs the GPU kernels' semantics on "
                     "the CPU"),
      llvm::cl::init(false)};
};

/// moe dialect (and ordinary tensor/linalg/arith/math ops) to the LLVM
/// dialect for the CPU: decompose, lower experts to loops and data movement
/// to runtime kernel calls, bufferize, lower to LLVM.
void buildMoeLowerToCPUPipeline(OpPassManager &pm,
                                const MoeCPUPipelineOptions &options);

/// Registers `moe-lower-to-cpu-pipeline`.
void registerMoePipelines();

} // namespace mlir::moe

#endif // MOE_PIPELINES_PIPELINES_H
