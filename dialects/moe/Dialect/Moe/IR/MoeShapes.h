//===- MoeShapes.h - Shape rules shared by verifiers and passes --*- C++ -*-===//
//
// Small helpers for the shape arithmetic of MoE ops: capacity,
// ragged row counts, grouped top-k feasibility. Verifiers, passes and the
// unit tests all use these, so there is one definition of each rule.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_IR_MOESHAPES_H
#define MOE_DIALECT_MOE_IR_MOESHAPES_H

#include "moe/Dialect/Moe/IR/MoeDialect.h"
#include <cstdint>
#include <optional>
#include <string>

namespace mlir::moe {

/// Parameters of a capacity rule, independent of the attribute that holds them.
struct CapacityRule {
  double factor = 1.0;
  CapacityFormula formula = CapacityFormula::GShard;
  int64_t fixed = 0;
  int64_t minCapacity = 0;
  int64_t align = 1;
};

/// Per-expert capacity for `numTokens` tokens routed to `k` of `numExperts`
/// experts. Returns std::nullopt when the inputs make no sense (non-positive
/// counts or factor) or the result would overflow int64.
std::optional<int64_t> computeCapacity(const CapacityRule &rule,
                                       int64_t numTokens, int64_t k,
                                       int64_t numExperts);

/// Product of two dimensions where either may be dynamic.
int64_t mulDims(int64_t a, int64_t b);

/// True when two dimensions can be equal (either is dynamic or both match).
inline bool dimsCompatible(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
}

/// Checks the structure of grouped top-k: `numGroups` must divide
/// `numExperts`, `topGroups` in [1, numGroups], the kept groups must hold at
/// least `k` experts and each group at least `groupScoreK`. Returns an
/// explanation of the first violated rule, or an empty string.
std::string checkGroupedTopK(int64_t numExperts, int64_t numGroups,
                             int64_t topGroups, int64_t groupScoreK,
                             int64_t k);

} // namespace mlir::moe

#endif // MOE_DIALECT_MOE_IR_MOESHAPES_H
