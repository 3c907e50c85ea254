//===- Transforms.h - moe rewrites as reusable functions ---------*- C++ -*-===//
//
// The logic of the moe passes as free functions and pattern populators, so
// pipelines, other passes and (later) transform ops can reuse it.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_TRANSFORMS_TRANSFORMS_H
#define MOE_DIALECT_MOE_TRANSFORMS_TRANSFORMS_H

#include "mlir/IR/PatternMatch.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"

namespace mlir::moe {

/// Rewrites `layer` into router matmul, moe.route, moe.dispatch, moe.experts
/// and moe.combine (plus the same for shared experts). Returns the value that
/// replaced the layer's result.
FailureOr<Value> decomposeLayer(RewriterBase &rewriter, LayerOp layer);

/// Adds the pattern form of decomposeLayer.
void populateDecomposeLayerPatterns(RewritePatternSet &patterns);

} // namespace mlir::moe

#endif // MOE_DIALECT_MOE_TRANSFORMS_TRANSFORMS_H
