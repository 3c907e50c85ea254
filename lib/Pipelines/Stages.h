//===- Stages.h - Textual stages shared by the moe pipelines ----*- C++ -*-===//
//
// The pipelines are built from textual stages so that each stage can be
// replayed by hand with moe-opt (docs/Pipelines.md lists them).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_PIPELINES_STAGES_H
#define MOE_LIB_PIPELINES_STAGES_H

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "llvm/Support/raw_ostream.h"

#include <string>

namespace mlir::moe::detail {

/// Stage 1 and 2: moe ops to tensors, loops and kernel calls or parallel
/// loops, then bufferized with identity layouts at function boundaries (so
/// the C interface sees plain row-major descriptors) and deallocated.
/// Fusion runs right after decomposition, while expert bodies are still in
/// their canonical form. No CSE before bufferization: it would merge the
/// zero-filled accumulators of different products into one tensor.
/// `foldSharedExperts`, `fuseCombine`: the options of moe-fuse-experts
/// (the GPU pipelines keep shared experts separate until the folded
/// kernels' per-load expert branch is timed on a GPU).
inline std::string bufferizedStages(bool fuseExperts, bool parallelLoops,
                                    bool exportEntryPoints,
                                    int64_t tileRows = 8,
                                    bool sharedTiles = false,
                                    bool foldSharedExperts = true,
                                    bool fuseCombine = true) {
  auto flag = [](bool b) { return b ? "true" : "false"; };
  std::string s = "moe-decompose,";
  if (fuseExperts)
    s += std::string("moe-fuse-experts{fold-shared-experts=") +
         flag(foldSharedExperts) + " fuse-combine=" + flag(fuseCombine) + "},";
  s += "canonicalize,convert-moe-to-linalg,";
  s += parallelLoops ? "convert-moe-to-parallel-loops{tile-rows=" +
                           std::to_string(tileRows) + " shared-tiles=" +
                           (sharedTiles ? "true" : "false") + "},"
                     : std::string("convert-moe-to-runtime,");
  if (exportEntryPoints)
    s += "moe-export-entry-points,";
  s += "canonicalize,"
       // Expert outputs are computed in place in the accumulator instead of
       // being copied into it.
       "eliminate-empty-tensors,"
       "one-shot-bufferize{bufferize-function-boundaries "
       "function-boundary-type-conversion=identity-layout-map},"
       "canonicalize,buffer-deallocation-pipeline,";
  return s;
}

/// Adds `stages` to `pm`; malformed stages are a bug of the pipeline.
inline void addStages(OpPassManager &pm, const std::string &stages,
                      const char *pipeline) {
  if (failed(parsePassPipeline(stages, pm, llvm::errs())))
    llvm::report_fatal_error(llvm::Twine(pipeline) + ": malformed stages");
}

} // namespace mlir::moe::detail

#endif // MOE_LIB_PIPELINES_STAGES_H
