//===- MoeShapes.cpp - Shape rules shared by verifiers and passes ----------===//

#include "moe/Dialect/Moe/IR/MoeShapes.h"

#include "llvm/Support/MathExtras.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace mlir::moe;

std::optional<int64_t> mlir::moe::computeCapacity(const CapacityRule &rule,
                                                  int64_t numTokens, int64_t k,
                                                  int64_t numExperts) {
  if (numTokens < 0 || k < 1 || numExperts < 1 || rule.align < 1 ||
      rule.minCapacity < 0)
    return std::nullopt;
  constexpr double kMax = static_cast<double>(std::numeric_limits<int64_t>::max() / 2);
  double capacity = 0.0;
  switch (rule.formula) {
  case CapacityFormula::GShard:
    if (!(rule.factor > 0.0))
      return std::nullopt;
    capacity = std::ceil(rule.factor * static_cast<double>(numTokens) *
                         static_cast<double>(k) / static_cast<double>(numExperts));
    break;
  case CapacityFormula::Tutel: {
    if (!(rule.factor > 0.0))
      return std::nullopt;
    double perExpert = static_cast<double>(llvm::divideCeil(numTokens, numExperts));
    capacity = static_cast<double>(k) * std::floor(rule.factor * perExpert);
    break;
  }
  case CapacityFormula::Fixed:
    if (rule.fixed < 1)
      return std::nullopt;
    capacity = static_cast<double>(rule.fixed);
    break;
  }
  if (!(capacity <= kMax))
    return std::nullopt;
  int64_t result = std::max(static_cast<int64_t>(capacity), rule.minCapacity);
  result = static_cast<int64_t>(llvm::divideCeil(result, rule.align)) * rule.align;
  return result;
}

int64_t mlir::moe::mulDims(int64_t a, int64_t b) {
  if (ShapedType::isDynamic(a) || ShapedType::isDynamic(b))
    return ShapedType::kDynamic;
  return a * b;
}

std::string mlir::moe::checkGroupedTopK(int64_t numExperts, int64_t numGroups,
                                        int64_t topGroups, int64_t groupScoreK,
                                        int64_t k) {
  if (numGroups < 1 || numExperts % numGroups != 0)
    return "num_groups (" + std::to_string(numGroups) +
           ") must divide the number of experts (" + std::to_string(numExperts) +
           ")";
  int64_t groupSize = numExperts / numGroups;
  if (topGroups < 1 || topGroups > numGroups)
    return "top_groups (" + std::to_string(topGroups) + ") must be in [1, " +
           std::to_string(numGroups) + "]";
  if (groupScoreK > groupSize)
    return "group_score_k (" + std::to_string(groupScoreK) +
           ") exceeds the group size (" + std::to_string(groupSize) + ")";
  if (topGroups * groupSize < k)
    return "the " + std::to_string(topGroups) + " kept groups hold " +
           std::to_string(topGroups * groupSize) + " experts, fewer than k = " +
           std::to_string(k);
  return {};
}
