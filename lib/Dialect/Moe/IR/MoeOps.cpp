//===- MoeOps.cpp - moe operations: verifiers and accessors ----------------===//
//
// Every verifier names the offending operand or attribute and the rule it
// breaks in plain words; one negative lit test exists per message
// (test/Dialect/Moe/invalid.mlir).
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/Moe/IR/MoeShapes.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/SymbolTable.h"

using namespace mlir;
using namespace mlir::moe;

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

namespace {
/// Renders a dimension for diagnostics ("?" for dynamic).
std::string dimStr(int64_t d) {
  return ShapedType::isDynamic(d) ? "?" : std::to_string(d);
}

/// Checks that `value` is a tensor of rank `rank`; emits "<name> must be a
/// rank-<rank> tensor ..." otherwise.
LogicalResult checkRank(Operation *op, Value value, int64_t rank,
                        StringRef name, StringRef shapeDesc) {
  auto type = cast<RankedTensorType>(value.getType());
  if (type.getRank() != rank)
    return op->emitOpError() << name << " must be a rank-" << rank << " tensor "
                             << shapeDesc << ", got " << type;
  return success();
}

/// Checks `actual` against `expected` where either may be dynamic.
LogicalResult checkDim(Operation *op, int64_t actual, int64_t expected,
                       const Twine &what) {
  if (dimsCompatible(actual, expected))
    return success();
  return op->emitOpError() << what << " is " << dimStr(actual) << " but must be "
                           << dimStr(expected);
}

RankedTensorType tensorType(Value v) {
  return cast<RankedTensorType>(v.getType());
}

/// Checks that a routing result pair shape [T, K] is consistent.
LogicalResult checkRoutingPair(Operation *op, Value weights, Value experts,
                               int64_t numTokens, StringRef wName,
                               StringRef eName) {
  if (failed(checkRank(op, weights, 2, wName, "[T, K]")) ||
      failed(checkRank(op, experts, 2, eName, "[T, K]")))
    return failure();
  auto wt = tensorType(weights), et = tensorType(experts);
  if (failed(checkDim(op, wt.getDimSize(0), numTokens,
                      Twine("token count of ") + wName)) ||
      failed(checkDim(op, et.getDimSize(0), numTokens,
                      Twine("token count of ") + eName)) ||
      failed(checkDim(op, et.getDimSize(1), wt.getDimSize(1),
                      Twine("slot count of ") + eName + " (vs " + wName + ")")))
    return failure();
  return success();
}

/// Common structural checks of a routing description against E' columns.
LogicalResult verifyRoutingAgainst(Operation *op, RoutingAttr routing,
                                   int64_t numColumns, Value selectionBias) {
  int64_t k = routing.getK();
  int64_t numNull = routing.getNullExperts();
  if (numNull >= numColumns)
    return op->emitOpError() << "null_experts (" << numNull
                             << ") leaves no real expert among " << numColumns
                             << " router columns";
  int64_t numReal = numColumns - numNull;
  if (k > numColumns)
    return op->emitOpError() << "k (" << k << ") exceeds the number of experts ("
                             << numColumns << ")";
  if (routing.getPolicy() == RoutingPolicy::ExpertChoice && k > numReal)
    return op->emitOpError() << "expert_choice k (" << k
                             << ") exceeds the number of experts (" << numReal
                             << ")";
  if (routing.getPolicy() == RoutingPolicy::GroupedTopK) {
    std::string why =
        checkGroupedTopK(numColumns, routing.getNumGroups(), routing.getTopGroups(),
                         routing.getGroupScoreK(), k);
    if (!why.empty())
      return op->emitOpError() << "grouped_top_k: " << why;
  }
  if (routing.getPolicy() == RoutingPolicy::TopP &&
      routing.getScore() == ScoreFunction::SoftmaxSelected)
    return op->emitOpError()
           << "top_p needs probabilities over all experts; score = "
              "softmax_selected is not allowed";
  if (routing.getPolicy() == RoutingPolicy::SparseMixer && numColumns < 2)
    return op->emitOpError() << "sparse_mixer needs at least 2 experts";
  if (!selectionBias)
    return success();
  switch (routing.getPolicy()) {
  case RoutingPolicy::TopK:
  case RoutingPolicy::GroupedTopK:
  case RoutingPolicy::TopP:
  case RoutingPolicy::Threshold:
    break;
  default:
    return op->emitOpError() << "a selection bias is not supported by policy "
                             << stringifyRoutingPolicy(routing.getPolicy());
  }
  auto biasType = tensorType(selectionBias);
  if (biasType.getRank() != 1)
    return op->emitOpError() << "selection bias must be a rank-1 tensor [E], got "
                             << biasType;
  if (biasType.getDimSize(0) != numColumns)
    return op->emitOpError() << "selection bias has "
                             << dimStr(biasType.getDimSize(0))
                             << " entries but there are " << numColumns
                             << " experts";
  return success();
}
} // namespace

//===----------------------------------------------------------------------===//
// LayerOp
//===----------------------------------------------------------------------===//

/// Reads the (in, out) dimensions of a matrix stored per `layout`.
static std::pair<int64_t, int64_t> inOut(ArrayRef<int64_t> shape,
                                         WeightLayout layout) {
  int64_t a = shape[shape.size() - 2], b = shape[shape.size() - 1];
  return layout == WeightLayout::InOut ? std::make_pair(a, b)
                                       : std::make_pair(b, a);
}

int64_t LayerOp::getNumRouterColumns() {
  return inOut(getRouter().getType().getShape(), getFfn().getLayout()).second;
}
int64_t LayerOp::getNumExperts() { return getW1().getType().getDimSize(0); }
int64_t LayerOp::getModelWidth() { return getInput().getType().getDimSize(1); }
int64_t LayerOp::getFFNWidth() {
  return inOut(getW2().getType().getShape(), getFfn().getLayout()).first;
}
int64_t LayerOp::getNumSharedExperts() {
  return getSharedW1() ? getSharedW1().getType().getDimSize(0) : 0;
}

/// Verifies one stacked FFN (routed or shared): w1, optional w3, w2, optional
/// biases, against model width `d` and expert count `numExperts`.
static LogicalResult verifyStackedFFN(Operation *op, StringRef prefix,
                                      FFNAttr ffn, int64_t d, Value w1, Value w3,
                                      Value w2, Value b1, Value b2) {
  auto name = [&](StringRef n) { return (prefix + n).str(); };
  if (failed(checkRank(op, w1, 3, name("w1"), "[E, D, F]")) ||
      failed(checkRank(op, w2, 3, name("w2"), "[E, F, D]")))
    return failure();
  auto w1Type = tensorType(w1), w2Type = tensorType(w2);
  int64_t numExperts = w1Type.getDimSize(0);
  if (ShapedType::isDynamic(numExperts) || numExperts < 1)
    return op->emitOpError() << "the number of experts (leading dimension of "
                             << name("w1") << ") must be static and positive";
  if (ShapedType::isDynamic(w2Type.getDimSize(0)) ||
      w2Type.getDimSize(0) != numExperts)
    return op->emitOpError() << name("w2") << " has "
                             << dimStr(w2Type.getDimSize(0)) << " experts but "
                             << name("w1") << " has " << numExperts;
  WeightLayout layout = ffn.getLayout();
  auto [w1In, w1Out] = inOut(w1Type.getShape(), layout);
  auto [w2In, w2Out] = inOut(w2Type.getShape(), layout);
  if (w1Type.hasStaticShape() == false || w2Type.hasStaticShape() == false)
    return op->emitOpError() << "expert weights must have static shapes";
  if (w1In != d)
    return op->emitOpError() << name("w1") << " input width " << w1In
                             << " does not match the model width " << dimStr(d);
  if (w2Out != d)
    return op->emitOpError() << name("w2") << " output width " << w2Out
                             << " does not match the model width " << dimStr(d);
  int64_t f = w2In;
  bool glu = ffn.getKind() == FFNKind::GLU;
  bool fused = glu && ffn.getGateUp() != GateUpLayout::Separate;
  int64_t expectedW1Out = fused ? 2 * f : f;
  if (w1Out != expectedW1Out)
    return op->emitOpError() << name("w1") << " output width " << w1Out
                             << " must be " << expectedW1Out
                             << (fused ? " (2 x the FFN width of w2, fused gate/up)"
                                       : " (the FFN width of w2)");
  if (glu && !fused && !w3)
    return op->emitOpError() << "a GLU expert with separate gate/up weights "
                                "needs "
                             << name("w3");
  if (w3 && (!glu || fused))
    return op->emitOpError() << name("w3") << " is only used by a GLU with "
                                              "separate gate/up weights";
  if (w3 && tensorType(w3) != w1Type)
    return op->emitOpError() << name("w3") << " type " << w3.getType()
                             << " must equal " << name("w1") << " type "
                             << w1Type;
  if (b1) {
    auto t = tensorType(b1);
    if (t.getRank() != 2 || t.getDimSize(0) != numExperts ||
        t.getDimSize(1) != w1Out)
      return op->emitOpError() << name("b1") << " must be [" << numExperts
                               << ", " << w1Out << "], got " << t;
  }
  if (b2) {
    auto t = tensorType(b2);
    if (t.getRank() != 2 || t.getDimSize(0) != numExperts ||
        t.getDimSize(1) != d)
      return op->emitOpError() << name("b2") << " must be [" << numExperts
                               << ", " << dimStr(d) << "], got " << t;
  }
  return success();
}

LogicalResult LayerOp::verify() {
  Operation *op = getOperation();
  if (failed(checkRank(op, getInput(), 2, "input", "[T, D]")))
    return failure();
  int64_t d = getModelWidth();
  if (ShapedType::isDynamic(d))
    return emitOpError() << "the model width D of the input must be static";
  if (getResult().getType() != getInput().getType())
    return emitOpError() << "result type " << getResult().getType()
                         << " must equal the input type " << getInput().getType();
  FFNAttr ffn = getFfn();
  if (failed(checkRank(op, getRouter(), 2, "router", "[D, E]")))
    return failure();
  auto routerType = getRouter().getType();
  if (!routerType.hasStaticShape())
    return emitOpError() << "router weight must have a static shape";
  auto [routerIn, numColumns] = inOut(routerType.getShape(), ffn.getLayout());
  if (routerIn != d)
    return emitOpError() << "router input width " << routerIn
                         << " does not match the model width " << d;
  if (failed(verifyStackedFFN(op, "", ffn, d, getW1(), getW3(), getW2(),
                              getB1(), getB2())))
    return failure();
  RoutingAttr routing = getRouting();
  int64_t numExperts = getNumExperts();
  if (numColumns - routing.getNullExperts() != numExperts)
    return emitOpError() << "router has " << numColumns << " columns ("
                         << routing.getNullExperts() << " null) but there are "
                         << numExperts << " experts";
  if (failed(verifyRoutingAgainst(op, routing, numColumns, getSelectionBias())))
    return failure();
  if (auto bias = getRouterBias()) {
    auto t = bias.getType();
    if (t.getRank() != 1 || t.getDimSize(0) != numColumns)
      return emitOpError() << "router bias must be [" << numColumns << "], got "
                           << t;
  }
  if (getCapacityAttr() && routing.getPolicy() == RoutingPolicy::ExpertChoice)
    return emitOpError() << "expert_choice routing is balanced by construction "
                            "and takes no capacity";
  // Shared experts.
  bool anyShared = getSharedW1() || getSharedW2() || getSharedW3() ||
                   getSharedGate();
  if (anyShared) {
    if (!getSharedW1() || !getSharedW2())
      return emitOpError() << "shared experts need both shared_w1 and shared_w2";
    if (failed(verifyStackedFFN(op, "shared_", ffn, d, getSharedW1(),
                                getSharedW3(), getSharedW2(), Value(), Value())))
      return failure();
    if (auto gate = getSharedGate()) {
      auto t = gate.getType();
      auto [gIn, gOut] = t.getRank() == 2
                             ? inOut(t.getShape(), ffn.getLayout())
                             : std::make_pair(int64_t(-1), int64_t(-1));
      if (gIn != d || gOut != 1)
        return emitOpError() << "shared_gate must map the model width " << d
                             << " to 1 column, got " << t;
    }
  }
  return success();
}

//===----------------------------------------------------------------------===//
// RouteOp
//===----------------------------------------------------------------------===//

int64_t RouteOp::getNumExperts() {
  return getLogits().getType().getDimSize(1) - getRouting().getNullExperts();
}

LogicalResult RouteOp::verify() {
  Operation *op = getOperation();
  if (failed(checkRank(op, getLogits(), 2, "logits", "[T, E]")))
    return failure();
  auto logitsType = getLogits().getType();
  int64_t numColumns = logitsType.getDimSize(1);
  if (ShapedType::isDynamic(numColumns))
    return emitOpError() << "the number of experts (logits dimension 1) must be "
                            "static";
  if (failed(checkRoutingPair(op, getWeights(), getExperts(),
                              logitsType.getDimSize(0), "weights", "experts")))
    return failure();
  RoutingAttr routing = getRouting();
  int64_t slots = getWeights().getType().getDimSize(1);
  if (slots != routing.getK())
    return emitOpError() << "results have " << dimStr(slots)
                         << " slots per token but routing k is "
                         << routing.getK();
  if (getWeights().getType().getElementType() != logitsType.getElementType())
    return emitOpError() << "weights element type "
                         << getWeights().getType().getElementType()
                         << " must match the logits element type "
                         << logitsType.getElementType();
  return verifyRoutingAgainst(op, routing, numColumns, getSelectionBias());
}

//===----------------------------------------------------------------------===//
// DispatchOp
//===----------------------------------------------------------------------===//

int64_t DispatchOp::getNumExperts() {
  return getCounts().getType().getDimSize(0);
}

LogicalResult DispatchOp::verify() {
  Operation *op = getOperation();
  if (failed(checkRank(op, getInput(), 2, "input", "[T, D]")))
    return failure();
  auto inputType = getInput().getType();
  int64_t t = inputType.getDimSize(0), d = inputType.getDimSize(1);
  if (failed(checkRoutingPair(op, getWeights(), getExperts(), t, "weights",
                              "experts")))
    return failure();
  int64_t k = getExperts().getType().getDimSize(1);
  if (ShapedType::isDynamic(k))
    return emitOpError() << "the number of slots K must be static";
  if (failed(checkRank(op, getCounts(), 1, "counts", "[E]")))
    return failure();
  int64_t e = getNumExperts();
  if (ShapedType::isDynamic(e) || e < 1)
    return emitOpError() << "the number of experts (counts length) must be "
                            "static and positive";
  if (failed(checkRoutingPair(op, getCombineWeights(), getTokenSlot(), t,
                              "combine_weights", "token_slot")) ||
      failed(checkDim(op, getTokenSlot().getType().getDimSize(1), k,
                      "slot count of token_slot")))
    return failure();
  if (getCombineWeights().getType().getElementType() !=
      getWeights().getType().getElementType())
    return emitOpError() << "combine_weights must have the element type of "
                            "weights";
  if (getDispatched().getType().getElementType() != inputType.getElementType())
    return emitOpError() << "dispatched must have the element type of input";

  auto dispType = getDispatched().getType();
  auto rowType = getRowToken().getType();
  if (!isPadded()) {
    if (failed(checkRank(op, getDispatched(), 2, "ragged dispatched",
                         "[T*K, D]")) ||
        failed(checkRank(op, getRowToken(), 1, "ragged row_token", "[T*K]")))
      return failure();
    int64_t n = mulDims(t, k);
    if (failed(checkDim(op, dispType.getDimSize(0), n,
                        "ragged row count (T*K)")) ||
        failed(checkDim(op, dispType.getDimSize(1), d, "dispatched width")) ||
        failed(checkDim(op, rowType.getDimSize(0), dispType.getDimSize(0),
                        "row_token length")))
      return failure();
    return success();
  }
  if (failed(checkRank(op, getDispatched(), 3, "padded dispatched",
                       "[E, C, D]")) ||
      failed(checkRank(op, getRowToken(), 2, "padded row_token", "[E, C]")))
    return failure();
  if (dispType.getDimSize(0) != e)
    return emitOpError() << "padded dispatched has "
                         << dimStr(dispType.getDimSize(0))
                         << " experts but counts has " << e;
  if (failed(checkDim(op, dispType.getDimSize(2), d, "dispatched width")))
    return failure();
  CapacityAttr cap = getCapacityAttr();
  int64_t expectedC = ShapedType::kDynamic;
  if (cap.getFormula() == CapacityFormula::Fixed || !ShapedType::isDynamic(t))
    expectedC = cap.computeCapacity(ShapedType::isDynamic(t) ? 0 : t, k, e);
  if (cap.getFormula() == CapacityFormula::Fixed ||
      !ShapedType::isDynamic(t)) {
    if (failed(checkDim(op, dispType.getDimSize(1), expectedC,
                        "capacity (dispatched dimension 1)")))
      return failure();
  } else if (!dispType.isDynamicDim(1)) {
    return emitOpError() << "capacity (dispatched dimension 1) depends on the "
                            "dynamic token count and must be '?', got "
                         << dispType.getDimSize(1);
  }
  if (rowType.getDimSize(0) != e ||
      !dimsCompatible(rowType.getDimSize(1), dispType.getDimSize(1)))
    return emitOpError() << "padded row_token must be [E, C] = [" << e << ", "
                         << dimStr(dispType.getDimSize(1)) << "], got "
                         << rowType;
  return success();
}

//===----------------------------------------------------------------------===//
// ExpertsOp
//===----------------------------------------------------------------------===//

int64_t ExpertsOp::getNumExperts() {
  return getCounts().getType().getDimSize(0);
}

LogicalResult ExpertsOp::verify() {
  Operation *op = getOperation();
  auto dispType = getDispatched().getType();
  if (dispType.getRank() != 2 && dispType.getRank() != 3)
    return emitOpError() << "dispatched must be ragged [N, D] or padded "
                            "[E, C, D], got "
                         << dispType;
  if (failed(checkRank(op, getCounts(), 1, "counts", "[E]")))
    return failure();
  int64_t e = getNumExperts();
  if (ShapedType::isDynamic(e) || e < 1)
    return emitOpError() << "the number of experts (counts length) must be "
                            "static and positive";
  if (dispType.getRank() == 3 && dispType.getDimSize(0) != e)
    return emitOpError() << "padded dispatched has "
                         << dimStr(dispType.getDimSize(0))
                         << " experts but counts has " << e;
  if (ShapedType::isDynamic(dispType.getShape().back()))
    return emitOpError() << "the input width of dispatched must be static";
  for (auto [i, w] : llvm::enumerate(getWeights())) {
    auto wt = tensorType(w);
    if (wt.getRank() < 1 || wt.getDimSize(0) != e)
      return emitOpError() << "weight #" << i << " " << wt
                           << " must be stacked over the " << e
                           << " experts (leading dimension " << e << ")";
  }
  auto resType = getResult().getType();
  if (resType.getRank() != dispType.getRank())
    return emitOpError() << "result rank " << resType.getRank()
                         << " must equal the rank of dispatched ("
                         << dispType.getRank() << ")";
  for (int64_t i = 0; i + 1 < dispType.getRank(); ++i)
    if (failed(checkDim(op, resType.getDimSize(i), dispType.getDimSize(i),
                        "result dimension " + Twine(i))))
      return failure();
  if (ShapedType::isDynamic(resType.getShape().back()))
    return emitOpError() << "the output width of the result must be static";
  return success();
}

LogicalResult ExpertsOp::verifyRegions() {
  Block &body = getBody().front();
  auto dispType = getDispatched().getType();
  size_t expectedArgs = 1 + getWeights().size();
  if (body.getNumArguments() != expectedArgs)
    return emitOpError() << "body must take " << expectedArgs
                         << " arguments (the segment and one slice per "
                            "weight), got "
                         << body.getNumArguments();
  auto segType = RankedTensorType::get({ShapedType::kDynamic,
                                        dispType.getShape().back()},
                                       dispType.getElementType());
  if (body.getArgument(0).getType() != segType)
    return emitOpError() << "body argument #0 must be the segment " << segType
                         << ", got " << body.getArgument(0).getType();
  for (auto [i, w] : llvm::enumerate(getWeights())) {
    auto wt = tensorType(w);
    auto sliceType = RankedTensorType::get(wt.getShape().drop_front(),
                                           wt.getElementType());
    Type argType = body.getArgument(i + 1).getType();
    if (argType != sliceType)
      return emitOpError() << "body argument #" << (i + 1)
                           << " must be the per-expert slice " << sliceType
                           << " of weight #" << i << ", got " << argType;
  }
  auto yield = dyn_cast<YieldOp>(body.getTerminator());
  if (!yield)
    return emitOpError() << "body must end with moe.yield";
  auto resType = getResult().getType();
  auto outSegType = RankedTensorType::get(
      {ShapedType::kDynamic, resType.getShape().back()}, resType.getElementType());
  if (yield.getValue().getType() != outSegType)
    return emitOpError() << "body yields " << yield.getValue().getType()
                         << " but the result needs segments of type "
                         << outSegType;
  return success();
}

//===----------------------------------------------------------------------===//
// GroupedMatmulOp
//===----------------------------------------------------------------------===//

LogicalResult GroupedMatmulOp::verify() {
  Operation *op = getOperation();
  if (failed(checkRank(op, getRhs(), 3, "rhs", "[E, K, M]")) ||
      failed(checkRank(op, getCounts(), 1, "counts", "[E]")))
    return failure();
  auto rhsType = getRhs().getType();
  int64_t e = rhsType.getDimSize(0);
  if (ShapedType::isDynamic(e) || e != getCounts().getType().getDimSize(0))
    return emitOpError() << "rhs has " << dimStr(e)
                         << " experts but counts has "
                         << dimStr(getCounts().getType().getDimSize(0));
  int64_t kDim = getTransposeRhs() ? rhsType.getDimSize(2) : rhsType.getDimSize(1);
  int64_t mDim = getTransposeRhs() ? rhsType.getDimSize(1) : rhsType.getDimSize(2);
  auto lhsType = getLhs().getType();
  auto resType = getResult().getType();
  if (lhsType.getRank() != 2 && lhsType.getRank() != 3)
    return emitOpError() << "lhs must be ragged [N, K] or padded [E, C, K], got "
                         << lhsType;
  if (lhsType.getRank() == 3 && lhsType.getDimSize(0) != e)
    return emitOpError() << "padded lhs has " << dimStr(lhsType.getDimSize(0))
                         << " experts but rhs has " << e;
  if (failed(checkDim(op, lhsType.getShape().back(), kDim,
                      "contraction width of lhs")))
    return failure();
  if (resType.getRank() != lhsType.getRank())
    return emitOpError() << "result must have the rank of lhs";
  for (int64_t i = 0; i + 1 < lhsType.getRank(); ++i)
    if (failed(checkDim(op, resType.getDimSize(i), lhsType.getDimSize(i),
                        "result dimension " + Twine(i))))
      return failure();
  return checkDim(op, resType.getShape().back(), mDim, "result width");
}

//===----------------------------------------------------------------------===//
// ExpertFFNOp
//===----------------------------------------------------------------------===//

LogicalResult ExpertFFNOp::verify() {
  Operation *op = getOperation();
  if (failed(checkRank(op, getInput(), 2, "input", "[T, D]")) ||
      failed(checkRank(op, getCounts(), 1, "counts", "[E]")))
    return failure();
  int64_t d = getInput().getType().getDimSize(1);
  if (ShapedType::isDynamic(d))
    return emitOpError() << "the model width D of the input must be static";
  if (failed(verifyStackedFFN(op, "", getFfn(), d, getW1(), getW3(), getW2(),
                              getB1(), getB2())))
    return failure();
  int64_t e = getNumRoutedExperts();
  auto rowType = getRowToken().getType();
  // Shared experts folded in as always-selected experts E .. E + S - 1.
  bool anyShared = getSharedW1() || getSharedW3() || getSharedW2();
  if (anyShared) {
    if (!getSharedW1() || !getSharedW2())
      return emitOpError() << "shared experts need both shared_w1 and shared_w2";
    if (failed(verifyStackedFFN(op, "shared_", getFfn(), d, getSharedW1(),
                                getSharedW3(), getSharedW2(), Value(), Value())))
      return failure();
    auto perExpert = [](Value v) {
      return cast<RankedTensorType>(v.getType()).getShape().drop_front();
    };
    if (perExpert(getSharedW1()) != perExpert(getW1()) ||
        perExpert(getSharedW2()) != perExpert(getW2()))
      return emitOpError() << "shared experts must have the routed experts' "
                              "per-expert weight shapes";
    for (auto [shared, routed] :
         {std::pair<Value, Value>{getSharedW1(), getW1()},
          {getSharedW3(), getW3()},
          {getSharedW2(), getW2()}})
      if (shared &&
          getElementTypeOrSelf(shared) != getElementTypeOrSelf(routed))
        return emitOpError() << "shared experts must have the routed experts' "
                                "weight element type";
    if (rowType.getRank() != 1)
      return emitOpError() << "shared experts need the ragged layout";
  }
  int64_t numExperts = e + getNumSharedExperts();
  if (getCounts().getType().getDimSize(0) != numExperts)
    return emitOpError() << "counts has "
                         << dimStr(getCounts().getType().getDimSize(0))
                         << " entries but there are " << numExperts
                         << " experts"
                         << (anyShared ? " (routed + shared)" : "");
  auto resType = getResult().getType();
  if (!resType.getElementType().isF32())
    return emitOpError() << "result must be f32 (the FFN accumulates in f32)";
  if (rowType.getRank() != 1 && rowType.getRank() != 2)
    return emitOpError() << "row_token must be ragged [N] or padded [E, C], got "
                         << rowType;
  if (rowType.getRank() == 2 && rowType.getDimSize(0) != e)
    return emitOpError() << "padded row_token has "
                         << dimStr(rowType.getDimSize(0))
                         << " experts but there are " << e;
  if (bool(getTokenSlot()) != bool(getCombineWeights()))
    return emitOpError() << "a fused combine needs token_slot and weights";
  if (hasFusedCombine()) {
    int64_t t = getInput().getType().getDimSize(0);
    if (failed(checkRoutingPair(op, getCombineWeights(), getTokenSlot(), t,
                                "combine weights", "token_slot")) ||
        failed(checkRank(op, getResult(), 2, "combined result", "[T, D]")) ||
        failed(checkDim(op, resType.getDimSize(0), t,
                        "combined result tokens (vs input)")))
      return failure();
    if (!getElementTypeOrSelf(getCombineWeights()).isF32())
      return emitOpError() << "combine weights must be f32";
  } else if (rowType.getRank() == 1) {
    if (failed(checkRank(op, getResult(), 2, "ragged result", "[N, D]")) ||
        failed(checkDim(op, resType.getDimSize(0), rowType.getDimSize(0),
                        "result rows (vs row_token)")))
      return failure();
  } else {
    if (failed(checkRank(op, getResult(), 3, "padded result", "[E, C, D]")) ||
        failed(checkDim(op, resType.getDimSize(0), e, "result experts")) ||
        failed(checkDim(op, resType.getDimSize(1), rowType.getDimSize(1),
                        "result capacity (vs row_token)")))
      return failure();
  }
  return checkDim(op, resType.getShape().back(), d, "result width");
}

//===----------------------------------------------------------------------===//
// CombineOp
//===----------------------------------------------------------------------===//

LogicalResult CombineOp::verify() {
  Operation *op = getOperation();
  auto outType = getExpertOut().getType();
  if (outType.getRank() != 2 && outType.getRank() != 3)
    return emitOpError() << "expert_out must be ragged [N, D] or padded "
                            "[E, C, D], got "
                         << outType;
  if (failed(checkRank(op, getResult(), 2, "result", "[T, D]")))
    return failure();
  auto resType = getResult().getType();
  int64_t t = resType.getDimSize(0);
  if (failed(checkRoutingPair(op, getWeights(), getTokenSlot(), t, "weights",
                              "token_slot")) ||
      failed(checkDim(op, resType.getDimSize(1), outType.getShape().back(),
                      "result width")))
    return failure();
  if (resType.getElementType() != outType.getElementType())
    return emitOpError() << "result must have the element type of expert_out";
  if (auto pt = getPassthrough()) {
    if (pt.getType() != resType)
      return emitOpError() << "passthrough type " << pt.getType()
                           << " must equal the result type " << resType;
  }
  return success();
}

//===----------------------------------------------------------------------===//
// ExpertStatsOp
//===----------------------------------------------------------------------===//

LogicalResult ExpertStatsOp::verify() {
  Operation *op = getOperation();
  if (failed(checkRank(op, getExperts(), 2, "experts", "[T, K]")) ||
      failed(checkRoutingPair(op, getWeights(), getExperts(),
                              getExperts().getType().getDimSize(0), "weights",
                              "experts")) ||
      failed(checkRank(op, getCounts(), 1, "counts", "[E]")) ||
      failed(checkRank(op, getGateMass(), 1, "gate_mass", "[E]")))
    return failure();
  int64_t e = getCounts().getType().getDimSize(0);
  if (ShapedType::isDynamic(e) || e < 1)
    return emitOpError() << "the number of experts must be static and positive";
  if (getGateMass().getType().getDimSize(0) != e)
    return emitOpError() << "gate_mass has "
                         << dimStr(getGateMass().getType().getDimSize(0))
                         << " entries but counts has " << e;
  return success();
}

//===----------------------------------------------------------------------===//
// LoadBalanceOp
//===----------------------------------------------------------------------===//

LogicalResult LoadBalanceOp::verify() {
  auto et = getExperts().getType();
  auto pt = getProbs().getType();
  if ((et.getRank() != 2 && et.getRank() != 3) || pt.getRank() != et.getRank())
    return emitOpError() << "experts and probs must be [T, K] and [T, E], or "
                            "[B, T, K] and [B, T, E], got "
                         << et << " and " << pt;
  if (getGlobalBatch() && et.getRank() != 3)
    return emitOpError() << "global_batch needs micro-batched [B, T, K] inputs";
  if (ShapedType::isDynamic(pt.getShape().back()) ||
      ShapedType::isDynamic(et.getShape().back()))
    return emitOpError() << "the number of experts (probs' last dimension) and "
                            "of slots must be static";
  for (int64_t i = 0; i + 1 < et.getRank(); ++i)
    if (failed(checkDim(getOperation(), pt.getDimSize(i), et.getDimSize(i),
                        i + 2 == et.getRank() ? "token count of probs (vs experts)"
                                              : "micro-batch count of probs (vs experts)")))
      return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// DeviceGroupOp and collectives
//===----------------------------------------------------------------------===//

LogicalResult DeviceGroupOp::verify() {
  if (getSize() < 1)
    return emitOpError() << "device group size must be at least 1, got "
                         << getSize();
  return success();
}

/// Looks up the device group a collective names.
static FailureOr<int64_t> lookupGroupSize(Operation *op,
                                          FlatSymbolRefAttr group,
                                          SymbolTableCollection &symbolTable) {
  auto groupOp =
      symbolTable.lookupNearestSymbolFrom<DeviceGroupOp>(op, group.getAttr());
  if (!groupOp)
    return op->emitOpError() << "'" << group.getValue()
                             << "' does not name a moe.device_group";
  return groupOp.getSize();
}

static LogicalResult checkCollectiveDim(Operation *op, int64_t dim,
                                        RankedTensorType type, StringRef name) {
  if (dim < 0 || dim >= type.getRank())
    return op->emitOpError() << name << " " << dim
                             << " is out of range for a rank-" << type.getRank()
                             << " tensor";
  return success();
}

/// Checks `result` = `input` with dimension `grow` multiplied and `shrink`
/// divided by `size` (either may be -1 for none).
static LogicalResult checkCollectiveShape(Operation *op, RankedTensorType in,
                                          RankedTensorType out, int64_t size,
                                          int64_t grow, int64_t shrink) {
  if (in.getElementType() != out.getElementType() ||
      in.getRank() != out.getRank())
    return op->emitOpError() << "result " << out
                             << " must have the rank and element type of the "
                                "input "
                             << in;
  for (int64_t i = 0; i < in.getRank(); ++i) {
    int64_t expected = in.getDimSize(i);
    if (!ShapedType::isDynamic(expected)) {
      if (i == shrink && i != grow) {
        if (expected % size != 0)
          return op->emitOpError()
                 << "dimension " << i << " (" << expected
                 << ") is not divisible by the group size " << size;
        expected /= size;
      } else if (i == grow && i != shrink) {
        expected *= size;
      }
    }
    if (failed(checkDim(op, out.getDimSize(i), expected,
                        "result dimension " + Twine(i))))
      return failure();
  }
  return success();
}

LogicalResult AllToAllOp::verify() {
  auto t = getInput().getType();
  return success(
      succeeded(checkCollectiveDim(*this, getSplitDim(), t, "split_dim")) &&
      succeeded(checkCollectiveDim(*this, getConcatDim(), t, "concat_dim")));
}

LogicalResult
AllToAllOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  FailureOr<int64_t> size = lookupGroupSize(*this, getGroupAttr(), symbolTable);
  if (failed(size))
    return failure();
  auto in = getInput().getType();
  int64_t splitDim = getSplitDim();
  if (!ShapedType::isDynamic(in.getDimSize(splitDim)) &&
      in.getDimSize(splitDim) % *size != 0)
    return emitOpError() << "split dimension " << splitDim << " ("
                         << in.getDimSize(splitDim)
                         << ") is not divisible by the group size " << *size;
  return checkCollectiveShape(*this, in, getResult().getType(), *size,
                              getConcatDim(), splitDim);
}

LogicalResult AllGatherOp::verify() {
  return checkCollectiveDim(*this, getDim(), getInput().getType(), "dim");
}

LogicalResult
AllGatherOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  FailureOr<int64_t> size = lookupGroupSize(*this, getGroupAttr(), symbolTable);
  if (failed(size))
    return failure();
  return checkCollectiveShape(*this, getInput().getType(),
                              getResult().getType(), *size, getDim(), -1);
}

LogicalResult ReduceScatterOp::verify() {
  return checkCollectiveDim(*this, getDim(), getInput().getType(), "dim");
}

LogicalResult
ReduceScatterOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  FailureOr<int64_t> size = lookupGroupSize(*this, getGroupAttr(), symbolTable);
  if (failed(size))
    return failure();
  return checkCollectiveShape(*this, getInput().getType(),
                              getResult().getType(), *size, -1, getDim());
}

#define GET_OP_CLASSES
#include "moe/Dialect/Moe/IR/MoeOps.cpp.inc"
