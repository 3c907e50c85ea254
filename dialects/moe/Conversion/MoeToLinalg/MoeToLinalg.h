//===- MoeToLinalg.h - moe expert computation to scf + linalg ----*- C++ -*-===//

#ifndef MOE_CONVERSION_MOETOLINALG_MOETOLINALG_H
#define MOE_CONVERSION_MOETOLINALG_MOETOLINALG_H

#include "mlir/IR/PatternMatch.h"

namespace mlir::moe {
/// Patterns lowering moe.experts and moe.grouped_matmul to an scf.for over
/// experts with tensor slices and linalg products.
void populateMoeToLinalgPatterns(RewritePatternSet &patterns);
} // namespace mlir::moe

#endif // MOE_CONVERSION_MOETOLINALG_MOETOLINALG_H
