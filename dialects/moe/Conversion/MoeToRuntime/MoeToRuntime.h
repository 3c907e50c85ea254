//===- MoeToRuntime.h - moe data movement to runtime kernels -----*- C++ -*-===//

#ifndef MOE_CONVERSION_MOETORUNTIME_MOETORUNTIME_H
#define MOE_CONVERSION_MOETORUNTIME_MOETORUNTIME_H

#include "mlir/IR/PatternMatch.h"

namespace mlir::moe {
/// Patterns lowering moe.route, moe.dispatch, moe.combine and
/// moe.expert_stats to calls of the CPU kernels in
/// runtime/include/moert/cpu_kernels.h.
void populateMoeToRuntimePatterns(RewritePatternSet &patterns);
} // namespace mlir::moe

#endif // MOE_CONVERSION_MOETORUNTIME_MOETORUNTIME_H
