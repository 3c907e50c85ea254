//===- FoldSharedExperts.cpp - Shared experts as always-selected experts --===//
//
// Part of `moe-fuse-experts` (after vertical fusion). moe-decompose emits a
// layer with shared experts (DeepSeek-MoE, Qwen-MoE) as two dispatched FFNs
// whose combined outputs are added:
//
//   %r  = combine(expert_ffn(%x, dispatch(%x, %w, %e)))          routed
//   %s  = combine(expert_ffn(%x, dispatch(%x, %sw, column ids)))  shared
//   %y  = %r + %s                                                 (linalg)
//
// When both FFNs have the same form and per-expert shapes, this becomes one
// routing of K + S slots per token, where slot K + s names expert E + s
// (shared expert s, selected for every token with its weight %sw[t, s]):
//
//   %y = combine(expert_ffn(%x, dispatch(%x, [%w | %sw], [%e | E + s]))
//                 w1(...) shared_w1(...) ...)
//
// One dispatch, one expert call and one combine instead of two each and an
// add: the shared experts' rows are scheduled with the routed ones (one
// parallel region, one balance), and the [T, D] partial results are not
// written, read back and added. The slots are summed in slot order, routed
// then shared, so the result equals the unfolded one up to the rounding of
// the final addition.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/Moe/Transforms/Transforms.h"

#include "moe/Dialect/Moe/IR/MoeShapes.h"
#include "moe/Dialect/Moe/Utils/TensorBuilder.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace mlir::moe;

namespace {

/// The body of `g` is exactly `yield <op>(args...)` with an `OpTy` whose
/// operands are the block arguments in order; returns that op.
template <typename OpTy>
OpTy singleOpBody(linalg::GenericOp g) {
  Block &body = g.getRegion().front();
  if (body.getOperations().size() != 2)
    return nullptr;
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  if (yield.getNumOperands() != 1)
    return nullptr;
  return yield.getOperand(0).getDefiningOp<OpTy>();
}

bool allParallelIdentity(linalg::GenericOp g) {
  return llvm::all_of(g.getIndexingMapsArray(),
                      [](AffineMap m) { return m.isIdentity(); }) &&
         llvm::all_of(g.getIteratorTypesArray(), [](utils::IteratorType t) {
           return t == utils::IteratorType::parallel;
         });
}

/// `g` is the element-wise sum of two [T, D] tensors: returns them.
std::optional<std::pair<Value, Value>> matchAdd(linalg::GenericOp g) {
  if (g.getNumDpsInputs() != 2 || g.getNumDpsInits() != 1 ||
      g->getNumResults() != 1 || !allParallelIdentity(g))
    return std::nullopt;
  auto add = singleOpBody<arith::AddFOp>(g);
  Block &body = g.getRegion().front();
  if (!add || add.getLhs() != body.getArgument(0) ||
      add.getRhs() != body.getArgument(1))
    return std::nullopt;
  return std::make_pair(g.getDpsInputs()[0], g.getDpsInputs()[1]);
}

/// `v` is the [T, S] tensor whose every row is 0, 1, ..., S - 1 (as
/// moe-decompose builds the shared experts' routing).
bool isColumnIds(Value v) {
  auto g = v.getDefiningOp<linalg::GenericOp>();
  if (!g || g.getNumDpsInputs() != 0 || g.getNumDpsInits() != 1 ||
      !allParallelIdentity(g) || g.getNumLoops() != 2)
    return false;
  if (!g.getDpsInits()[0].getDefiningOp<tensor::EmptyOp>())
    return false;
  // yield(index_cast(linalg.index 1)), nothing else.
  Block &body = g.getRegion().front();
  if (body.getOperations().size() != 3)
    return false;
  auto cast = body.getTerminator()->getOperand(0).getDefiningOp<arith::IndexCastOp>();
  auto index = cast ? cast.getIn().getDefiningOp<linalg::IndexOp>() : nullptr;
  return index && index->getBlock() == &body && index.getDim() == 1 &&
         getElementTypeOrSelf(v).isInteger(32);
}

/// One dispatched FFN feeding a combine, as moe-decompose + vertical fusion
/// leave it: ragged, no capacity, no passthrough, f32.
struct DispatchedFFN {
  CombineOp combine;
  ExpertFFNOp ffn;
  DispatchOp dispatch;
};

std::optional<DispatchedFFN> matchDispatchedFFN(Value v, Value input) {
  auto combine = v.getDefiningOp<CombineOp>();
  if (!combine || combine.getPassthrough() || !combine->hasOneUse())
    return std::nullopt;
  auto ffn = combine.getExpertOut().getDefiningOp<ExpertFFNOp>();
  if (!ffn || !ffn->hasOneUse() || ffn.getSharedW1() ||
      ffn.getResult().getType().getRank() != 2 || ffn.getInput() != input)
    return std::nullopt;
  auto dispatch = ffn.getRowToken().getDefiningOp<DispatchOp>();
  if (!dispatch || dispatch.getCapacityAttr() ||
      dispatch.getInput() != input || ffn.getCounts() != dispatch.getCounts() ||
      combine.getTokenSlot() != dispatch.getTokenSlot() ||
      combine.getWeights() != dispatch.getCombineWeights() ||
      !dispatch.getDispatched().use_empty())
    return std::nullopt;
  return DispatchedFFN{combine, ffn, dispatch};
}

/// [T, K + S]: the K columns of `a` (each entry mapped by `mapA`), then S
/// more, column s given by `fromB(builder, loc, s, b[t, s])` (with a null
/// `b`, by `fromB(builder, loc, s, Value())`).
Value concatColumns(
    OpBuilder &builder, Location loc, Value a, Value b, int64_t s,
    function_ref<Value(OpBuilder &, Location, Value)> mapA,
    function_ref<Value(OpBuilder &, Location, Value, Value)> fromB) {
  TensorBuilder tb(builder, loc);
  int64_t k = cast<RankedTensorType>(a.getType()).getDimSize(1);
  Type elem = getElementTypeOrSelf(a);
  return tb.map2d(
      {}, {}, elem, {tb.dim(a, 0), builder.getIndexAttr(k + s)},
      [&](OpBuilder &nb, Location nl, ValueRange) -> Value {
        Value i = linalg::IndexOp::create(nb, nl, 0);
        Value j = linalg::IndexOp::create(nb, nl, 1);
        Value kv = arith::ConstantIndexOp::create(nb, nl, k);
        Value zero = arith::ConstantIndexOp::create(nb, nl, 0);
        Value kLast = arith::ConstantIndexOp::create(nb, nl, k - 1);
        // Both reads stay in bounds; the select keeps the right one.
        Value ja = arith::MinSIOp::create(nb, nl, j, kLast);
        Value jb = arith::MaxSIOp::create(
            nb, nl, arith::SubIOp::create(nb, nl, j, kv), zero);
        Value va = mapA(nb, nl,
                        tensor::ExtractOp::create(nb, nl, a, ValueRange{i, ja}));
        Value vb = fromB(
            nb, nl, jb,
            b ? tensor::ExtractOp::create(nb, nl, b, ValueRange{i, jb})
                    .getResult()
              : Value());
        Value inA = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt,
                                          j, kv);
        return arith::SelectOp::create(nb, nl, inA, va, vb);
      });
}

LogicalResult foldOne(RewriterBase &rewriter, linalg::GenericOp add) {
  auto operands = matchAdd(add);
  if (!operands)
    return failure();
  auto lhsCombine = operands->first.getDefiningOp<CombineOp>();
  auto rhsCombine = operands->second.getDefiningOp<CombineOp>();
  if (!lhsCombine || !rhsCombine)
    return failure();
  auto lhsFFN = lhsCombine.getExpertOut().getDefiningOp<ExpertFFNOp>();
  if (!lhsFFN)
    return failure();
  Value x = lhsFFN.getInput();
  auto a = matchDispatchedFFN(operands->first, x);
  auto b = matchDispatchedFFN(operands->second, x);
  if (!a || !b)
    return failure();
  // Which one is shared: the one routed by column ids.
  bool aShared = isColumnIds(a->dispatch.getExperts());
  bool bShared = isColumnIds(b->dispatch.getExperts());
  if (aShared == bShared)
    return failure();
  DispatchedFFN routed = aShared ? *b : *a, shared = aShared ? *a : *b;
  ExpertFFNOp rf = routed.ffn, sf = shared.ffn;
  if (rf.getFfn() != sf.getFfn() || sf.getB1() || sf.getB2() ||
      bool(rf.getW3()) != bool(sf.getW3()) ||
      add.getResultTypes()[0] != routed.combine.getResult().getType())
    return failure();
  auto perExpert = [](Value v) {
    auto t = cast<RankedTensorType>(v.getType());
    return std::make_pair(t.getShape().drop_front(), t.getElementType());
  };
  if (perExpert(rf.getW1()) != perExpert(sf.getW1()) ||
      perExpert(rf.getW2()) != perExpert(sf.getW2()) ||
      (rf.getW3() && perExpert(rf.getW3()) != perExpert(sf.getW3())))
    return failure();

  Location loc = add.getLoc();
  OpBuilder::InsertionGuard guard(rewriter);
  rewriter.setInsertionPoint(add);
  int64_t e = rf.getNumRoutedExperts(), s = sf.getNumRoutedExperts();
  Value rWeights = routed.dispatch.getWeights();
  Value rExperts = routed.dispatch.getExperts();
  Value sWeights = shared.dispatch.getWeights();
  Type i32 = rewriter.getI32Type();
  // Routed ids outside [0, E) selected nothing; keep them selecting nothing
  // now that E .. E + S - 1 name the shared experts.
  Value experts = concatColumns(
      rewriter, loc, rExperts, Value(), s,
      [&](OpBuilder &nb, Location nl, Value id) -> Value {
        Value lo = arith::ConstantIntOp::create(nb, nl, i32, 0);
        Value hi = arith::ConstantIntOp::create(nb, nl, i32, e);
        Value none = arith::ConstantIntOp::create(nb, nl, i32, -1);
        Value ok = arith::AndIOp::create(
            nb, nl,
            arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge, id, lo),
            arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, id, hi));
        return arith::SelectOp::create(nb, nl, ok, id, none);
      },
      [&](OpBuilder &nb, Location nl, Value column, Value) -> Value {
        Value id = arith::AddIOp::create(
            nb, nl, column, arith::ConstantIndexOp::create(nb, nl, e));
        return arith::IndexCastOp::create(nb, nl, i32, id);
      });
  Value weights = concatColumns(
      rewriter, loc, rWeights, sWeights, s,
      [](OpBuilder &, Location, Value w) { return w; },
      [](OpBuilder &, Location, Value, Value w) { return w; });

  auto expertsType = cast<RankedTensorType>(experts.getType());
  int64_t t = expertsType.getDimSize(0), slots = expertsType.getDimSize(1);
  auto dispType = routed.dispatch.getDispatched().getType();
  int64_t n = mulDims(t, slots);
  SmallVector<Type> resultTypes = {
      RankedTensorType::get({n, dispType.getDimSize(1)},
                            dispType.getElementType()),
      RankedTensorType::get({n}, i32), RankedTensorType::get({e + s}, i32),
      expertsType, weights.getType()};
  auto dispatch = DispatchOp::create(rewriter, loc, resultTypes, x, weights,
                                     experts, CapacityAttr());
  dispatch->setAttr(kDispatchSharedExpertsAttr, rewriter.getI64IntegerAttr(s));
  auto ffnType = RankedTensorType::get(
      {n, rf.getResult().getType().getDimSize(1)}, rewriter.getF32Type());
  auto fused = ExpertFFNOp::create(
      rewriter, loc, ffnType, x, dispatch.getRowToken(), dispatch.getCounts(),
      rf.getW1(), rf.getW3(), rf.getW2(), rf.getB1(), rf.getB2(), sf.getW1(),
      sf.getW3(), sf.getW2(), /*token_slot=*/Value(),
      /*combine_weights=*/Value(), rf.getFfn());
  auto combine = CombineOp::create(
      rewriter, loc, routed.combine.getResult().getType(), fused.getResult(),
      dispatch.getTokenSlot(), dispatch.getCombineWeights(), Value());
  rewriter.replaceOp(add, combine.getResult());
  for (DispatchedFFN *old : {&routed, &shared}) {
    rewriter.eraseOp(old->combine);
    rewriter.eraseOp(old->ffn);
    if (old->dispatch->use_empty())
      rewriter.eraseOp(old->dispatch);
  }
  return success();
}

} // namespace

int64_t mlir::moe::foldSharedExperts(RewriterBase &rewriter, Operation *root) {
  SmallVector<linalg::GenericOp> candidates;
  root->walk([&](linalg::GenericOp op) { candidates.push_back(op); });
  int64_t folded = 0;
  for (linalg::GenericOp op : candidates)
    folded += succeeded(foldOne(rewriter, op));
  return folded;
}
