//===- MoeToParallelLoops.h - moe data movement to parallel loops -*- C++ -*-===//

#ifndef MOE_CONVERSION_MOETOPARALLELLOOPS_MOETOPARALLELLOOPS_H
#define MOE_CONVERSION_MOETOPARALLELLOOPS_MOETOPARALLELLOOPS_H

#include "mlir/IR/PatternMatch.h"

namespace mlir::moe {
/// Patterns lowering moe.route, moe.dispatch, moe.expert_ffn, moe.combine and
/// moe.expert_stats to one-dimensional scf.parallel loops over buffers (the
/// form GPU code generation maps to blocks and threads). The expert FFN
/// works on tiles of `tileRows` rows, or, with `sharedTiles` (GPU targets
/// only), becomes shared-memory tiled gpu.launch kernels whose barrier
/// placeholders moe-resolve-workgroup-barriers rewrites after outlining.
void populateMoeToParallelLoopsPatterns(RewritePatternSet &patterns,
                                        int64_t tileRows = 8,
                                        bool sharedTiles = false);
} // namespace mlir::moe

#endif // MOE_CONVERSION_MOETOPARALLELLOOPS_MOETOPARALLELLOOPS_H
