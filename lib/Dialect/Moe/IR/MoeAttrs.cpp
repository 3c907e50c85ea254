//===- MoeAttrs.cpp - moe attributes: parsing, printing, verification -----===//

#include "moe/Dialect/Moe/IR/MoeDialect.h"
#include "moe/Dialect/Moe/IR/MoeShapes.h"

#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace mlir;
using namespace mlir::moe;

#include "moe/Dialect/Moe/IR/MoeEnums.cpp.inc"

void mlir::moe::detail::printDouble(AsmPrinter &printer, double value) {
  // The shortest %g form that reads back to the same double, with a '.' in
  // the mantissa as MLIR's lexer wants ("1.0e-20", not "1e-20").
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, value);
    if (std::strtod(buf, nullptr) == value)
      break;
  }
  std::string s(buf);
  if (std::isfinite(value) && s.find('.') == std::string::npos) {
    size_t ePos = s.find('e');
    s.insert(ePos == std::string::npos ? s.size() : ePos, ".0");
  }
  printer << s;
}

FailureOr<Real> mlir::moe::detail::parseDouble(AsmParser &parser) {
  // Accept integer literals too (`scaling = 2` means 2.0), with a sign.
  bool negative = succeeded(parser.parseOptionalMinus());
  uint64_t intValue = 0;
  OptionalParseResult intResult = parser.parseOptionalInteger(intValue);
  double value = 0.0;
  if (intResult.has_value()) {
    if (failed(*intResult))
      return failure();
    value = static_cast<double>(intValue);
  } else if (parser.parseFloat(value)) {
    return failure();
  }
  return Real{negative ? -value : value};
}

#define GET_ATTRDEF_CLASSES
#include "moe/Dialect/Moe/IR/MoeAttrs.cpp.inc"

void MoeDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "moe/Dialect/Moe/IR/MoeAttrs.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// RoutingAttr
//===----------------------------------------------------------------------===//

LogicalResult
RoutingAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                    RoutingPolicy policy, int64_t k, ScoreFunction score,
                    Normalization normalize, TieBreak tieBreak, Real scaling,
                    Real topP, Real threshold, int64_t numGroups,
                    int64_t topGroups, int64_t groupScoreK, bool maskWithZero,
                    int64_t nullExperts, int64_t sinkhornIterations,
                    Real capacityFactor, Real jitterEps, Real epsilon) {
  if (k < 1)
    return emitError() << "routing k must be at least 1, got " << k;
  for (auto [name, value] :
       {std::pair<StringRef, double>{"scaling", scaling}, {"top_p", topP},
        {"threshold", threshold}, {"capacity_factor", capacityFactor},
        {"jitter_eps", jitterEps}, {"epsilon", epsilon}})
    if (!std::isfinite(value))
      return emitError() << "routing " << name << " must be finite";
  if (!(scaling > 0.0) || !std::isfinite(scaling))
    return emitError() << "routing scaling factor must be positive and finite, got "
                       << double(scaling);
  if (!(topP > 0.0 && topP <= 1.0))
    return emitError() << "top_p must be in (0, 1], got " << double(topP);
  if (!(threshold >= 0.0 && threshold <= 1.0))
    return emitError() << "routing threshold must be in [0, 1], got " << double(threshold);
  if (double(threshold) > 0.0 && policy != RoutingPolicy::TopK &&
      policy != RoutingPolicy::TopP && policy != RoutingPolicy::GroupedTopK &&
      policy != RoutingPolicy::Threshold)
    return emitError() << "threshold skipping applies to top_k, top_p, "
                          "grouped_top_k and threshold routing, not "
                       << stringifyRoutingPolicy(policy);
  if (nullExperts < 0)
    return emitError() << "null_experts must not be negative, got " << nullExperts;
  if (!(epsilon >= 0.0) || !std::isfinite(epsilon))
    return emitError() << "routing epsilon must be finite and >= 0, got " << double(epsilon);
  if (numGroups < 1 || topGroups < 1 || groupScoreK < 1)
    return emitError() << "num_groups, top_groups and group_score_k must be at "
                          "least 1";
  if (topGroups > numGroups)
    return emitError() << "top_groups (" << topGroups
                       << ") exceeds num_groups (" << numGroups << ")";
  if (policy != RoutingPolicy::GroupedTopK && numGroups != 1)
    return emitError() << "num_groups is only meaningful for grouped_top_k";
  if (sinkhornIterations < 1)
    return emitError() << "sinkhorn_iterations must be at least 1, got "
                       << sinkhornIterations;
  if (!(double(capacityFactor) > 0.0))
    return emitError() << "routing capacity_factor must be positive, got "
                       << double(capacityFactor);
  if (policy == RoutingPolicy::SparseMixer) {
    if (k != 2)
      return emitError() << "sparse_mixer selects exactly 2 experts, got k = " << k;
  }
  if (!(jitterEps > 0.0 && jitterEps < 1.0))
    return emitError() << "routing jitter_eps must be in (0, 1), got "
                       << double(jitterEps);
  if (score == ScoreFunction::SoftmaxSelected &&
      normalize == Normalization::Selected)
    return emitError() << "softmax_selected weights already sum to 1; "
                          "normalize = selected is redundant";
  if (policy == RoutingPolicy::ExpertChoice && nullExperts != 0)
    return emitError() << "expert_choice cannot be combined with null experts";
  (void)tieBreak;
  (void)maskWithZero;
  return success();
}

//===----------------------------------------------------------------------===//
// CapacityAttr
//===----------------------------------------------------------------------===//

LogicalResult
CapacityAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                     Real factor, CapacityFormula formula, int64_t fixed,
                     int64_t minCapacity, int64_t align, QueueOrder order,
                     DropPolicy onDrop, bool renormalize) {
  if (formula == CapacityFormula::Fixed && fixed < 1)
    return emitError() << "fixed capacity must be at least 1, got " << fixed;
  if (!(factor > 0.0) || !std::isfinite(factor))
    return emitError() << "capacity factor must be positive, got " << double(factor);
  if (minCapacity < 0)
    return emitError() << "min_capacity must not be negative, got "
                       << minCapacity;
  if (align < 1)
    return emitError() << "capacity align must be at least 1, got " << align;
  if (onDrop == DropPolicy::PassThrough && renormalize)
    return emitError() << "on_drop = pass_through keeps dropped weights; it "
                          "cannot be combined with renormalize";
  (void)order;
  return success();
}

int64_t CapacityAttr::computeCapacity(int64_t numTokens, int64_t k,
                                      int64_t numExperts) const {
  CapacityRule rule{getFactor(), getFormula(), getFixed(), getMinCapacity(),
                    getAlign()};
  return moe::computeCapacity(rule, numTokens, k, numExperts)
      .value_or(ShapedType::kDynamic);
}

//===----------------------------------------------------------------------===//
// FFNAttr
//===----------------------------------------------------------------------===//

LogicalResult FFNAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                              FFNKind kind, Activation activation,
                              GateUpLayout gateUp, WeightLayout layout,
                              Real alpha, Real upShift, Real limit) {
  if (kind == FFNKind::MLP && gateUp != GateUpLayout::Separate)
    return emitError() << "gate_up layout only applies to kind = glu";
  if (!(alpha > 0.0) || !std::isfinite(alpha))
    return emitError() << "activation alpha must be positive, got " << double(alpha);
  if (!(limit >= 0.0) || !std::isfinite(limit))
    return emitError() << "clamp limit must be >= 0 (0 disables it), got "
                       << double(limit);
  if (!std::isfinite(upShift))
    return emitError() << "up_shift must be finite";
  if (kind == FFNKind::MLP && (upShift != 0.0 || limit != 0.0))
    return emitError() << "up_shift and limit only apply to kind = glu";
  if (double(alpha) != 1.0 && activation != Activation::SiLU)
    return emitError() << "alpha scales the sigmoid of silu; it cannot be used "
                          "with activation "
                       << stringifyActivation(activation);
  (void)layout;
  return success();
}
