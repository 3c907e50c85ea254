//===- MoeToLinalg.cpp - moe.experts / grouped_matmul to scf + linalg ------===//

#include "moe/Conversion/MoeToLinalg/MoeToLinalg.h"
#include "moe/Conversion/Passes.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/Moe/Utils/TensorBuilder.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/WalkPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_CONVERTMOETOLINALGPASS
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Describes where expert `e`'s rows live in a dispatched-layout tensor and
/// builds slices of it. Ragged: rows [offset, offset + count) of [N, X];
/// padded: rows [0, count) of [e] in [E, C, X].
struct SegmentLayout {
  bool padded;

  /// The segment `[count, X]` of `source` for expert `e`.
  Value extract(OpBuilder &b, Location loc, Value source, Value e, Value offset,
                Value count) const {
    auto type = cast<RankedTensorType>(source.getType());
    int64_t width = type.getShape().back();
    auto segType = RankedTensorType::get({ShapedType::kDynamic, width},
                                         type.getElementType());
    if (!padded)
      return tensor::ExtractSliceOp::create(
          b, loc, segType, source,
          ArrayRef<OpFoldResult>{offset, b.getIndexAttr(0)},
          ArrayRef<OpFoldResult>{count, b.getIndexAttr(width)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
    return tensor::ExtractSliceOp::create(
        b, loc, segType, source,
        ArrayRef<OpFoldResult>{e, b.getIndexAttr(0), b.getIndexAttr(0)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), count, b.getIndexAttr(width)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1),
                               b.getIndexAttr(1)});
  }

  /// Inserts segment `seg` `[count, X]` into `dest` for expert `e`.
  Value insert(OpBuilder &b, Location loc, Value seg, Value dest, Value e,
               Value offset, Value count) const {
    int64_t width = cast<RankedTensorType>(dest.getType()).getShape().back();
    if (!padded)
      return tensor::InsertSliceOp::create(
          b, loc, seg, dest, ArrayRef<OpFoldResult>{offset, b.getIndexAttr(0)},
          ArrayRef<OpFoldResult>{count, b.getIndexAttr(width)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
    return tensor::InsertSliceOp::create(
        b, loc, seg, dest,
        ArrayRef<OpFoldResult>{e, b.getIndexAttr(0), b.getIndexAttr(0)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), count, b.getIndexAttr(width)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1),
                               b.getIndexAttr(1)});
  }
};

/// Expert `e`'s slice of a stacked weight `[E, ...]` (leading dim dropped).
Value expertSlice(OpBuilder &b, Location loc, Value stacked, Value e) {
  auto type = cast<RankedTensorType>(stacked.getType());
  TensorBuilder tb(b, loc);
  SmallVector<OpFoldResult> offsets = {e}, sizes = {b.getIndexAttr(1)},
                            strides(type.getRank(), b.getIndexAttr(1));
  for (int64_t i = 1; i < type.getRank(); ++i) {
    offsets.push_back(b.getIndexAttr(0));
    sizes.push_back(tb.dim(stacked, i));
  }
  auto sliceType = RankedTensorType::get(type.getShape().drop_front(),
                                         type.getElementType());
  return tensor::ExtractSliceOp::create(b, loc, sliceType, stacked, offsets,
                                        sizes, strides);
}

/// Emits the loop over experts shared by moe.experts and moe.grouped_matmul.
/// `computeSegment(b, loc, e, segment)` returns the output rows of one expert.
Value buildExpertLoop(
    OpBuilder &b, Location loc, Value dispatched, Value counts,
    RankedTensorType resultType,
    function_ref<Value(OpBuilder &, Location, Value, Value)> computeSegment) {
  TensorBuilder tb(b, loc);
  auto dispType = cast<RankedTensorType>(dispatched.getType());
  SegmentLayout layout{dispType.getRank() == 3};
  int64_t numExperts = cast<RankedTensorType>(counts.getType()).getDimSize(0);

  SmallVector<OpFoldResult> resultSizes;
  for (int64_t i = 0; i + 1 < resultType.getRank(); ++i)
    resultSizes.push_back(tb.dim(dispatched, i));
  resultSizes.push_back(b.getIndexAttr(resultType.getShape().back()));
  Value init = tb.zeros(resultSizes, resultType.getElementType());

  // Rows available to segments: N (ragged) or C (padded); counts are clamped
  // to them so a bad count cannot address memory outside the tensors.
  Value rowLimit = getValueOrCreateConstantIndexOp(
      b, loc, tb.dim(dispatched, layout.padded ? 1 : 0));
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  Value upper = arith::ConstantIndexOp::create(b, loc, numExperts);
  auto loop = scf::ForOp::create(
      b, loc, zero, upper, one, ValueRange{init, zero},
      [&](OpBuilder &lb, Location ll, Value e, ValueRange iterArgs) {
        Value acc = iterArgs[0], offset = iterArgs[1];
        Value countI32 = tensor::ExtractOp::create(lb, ll, counts, e);
        Value count = arith::IndexCastOp::create(lb, ll, lb.getIndexType(),
                                                 countI32);
        count = arith::MaxSIOp::create(lb, ll, count, zero);
        Value room = layout.padded
                         ? rowLimit
                         : arith::SubIOp::create(lb, ll, rowLimit, offset)
                               .getResult();
        count = arith::MinSIOp::create(lb, ll, count, room);
        Value seg = layout.extract(lb, ll, dispatched, e, offset, count);
        Value out = computeSegment(lb, ll, e, seg);
        Value updated = layout.insert(lb, ll, out, acc, e, offset, count);
        Value nextOffset = arith::AddIOp::create(lb, ll, offset, count);
        scf::YieldOp::create(lb, ll, ValueRange{updated, nextOffset});
      });
  return loop.getResult(0);
}

struct LowerExperts : OpRewritePattern<ExpertsOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ExpertsOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Block &body = op.getBody().front();
    Value result = buildExpertLoop(
        rewriter, loc, op.getDispatched(), op.getCounts(),
        op.getResult().getType(),
        [&](OpBuilder &b, Location l, Value e, Value seg) -> Value {
          IRMapping mapping;
          mapping.map(body.getArgument(0), seg);
          for (auto [i, w] : llvm::enumerate(op.getWeights()))
            mapping.map(body.getArgument(i + 1), expertSlice(b, l, w, e));
          for (Operation &inner : body.without_terminator())
            b.clone(inner, mapping);
          return mapping.lookup(cast<YieldOp>(body.getTerminator()).getValue());
        });
    rewriter.replaceOp(op, result);
    return success();
  }
};

struct LowerGroupedMatmul : OpRewritePattern<GroupedMatmulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(GroupedMatmulOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Type elemType = op.getResult().getType().getElementType();
    bool transposed = op.getTransposeRhs();
    Value result = buildExpertLoop(
        rewriter, loc, op.getLhs(), op.getCounts(), op.getResult().getType(),
        [&](OpBuilder &b, Location l, Value e, Value seg) -> Value {
          TensorBuilder tb(b, l);
          Value rhs = expertSlice(b, l, op.getRhs(), e);
          return tb.truncTo(tb.matmul(seg, rhs, transposed), elemType);
        });
    rewriter.replaceOp(op, result);
    return success();
  }
};

/// moe.load_balance as three linalg reductions over micro-batches b (a
/// [T, ...] input is one micro-batch; global_batch merges all of them into
/// one): pair counts per (b, expert), probability sums per (b, expert), and
/// sum_b sum_e counts * sums, scaled by E / (T * K * T * B).
struct LowerLoadBalance : OpRewritePattern<LoadBalanceOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(LoadBalanceOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    MLIRContext *ctx = rewriter.getContext();
    TensorBuilder tb(rewriter, loc);
    Type f32 = rewriter.getF32Type();
    Value experts = op.getExperts(), probs = op.getProbs();
    // Normalise to [B, T, *]: a single batch gets B = 1, a global batch is
    // collapsed to one micro-batch of B * T tokens.
    auto toBatched = [&](Value v) -> Value {
      auto type = cast<RankedTensorType>(v.getType());
      if (type.getRank() == 3 && op.getGlobalBatch())
        v = tensor::CollapseShapeOp::create(
            rewriter, loc, v, ArrayRef<ReassociationIndices>{{0, 1}, {2}});
      if (cast<RankedTensorType>(v.getType()).getRank() == 3)
        return v;
      auto t = cast<RankedTensorType>(v.getType());
      SmallVector<int64_t> shape = {1, t.getDimSize(0), t.getDimSize(1)};
      SmallVector<OpFoldResult> sizes = {rewriter.getIndexAttr(1), tb.dim(v, 0),
                                         rewriter.getIndexAttr(t.getDimSize(1))};
      return tensor::ExpandShapeOp::create(
          rewriter, loc, RankedTensorType::get(shape, t.getElementType()), v,
          ArrayRef<ReassociationIndices>{{0, 1}, {2}}, sizes);
    };
    experts = toBatched(experts);
    probs = toBatched(probs);
    int64_t numExperts = cast<RankedTensorType>(probs.getType()).getDimSize(2);
    int64_t k = cast<RankedTensorType>(experts.getType()).getDimSize(2);
    OpFoldResult batches = tb.dim(experts, 0);
    auto parallel = utils::IteratorType::parallel;
    auto reduction = utils::IteratorType::reduction;

    // counts[b, e] = #{(t, j) : experts[b, t, j] == e}, over (b, e, t, j).
    AffineExpr b, e, t, j;
    bindDims(ctx, b, e, t, j);
    Value counts = tb.zeros({batches, rewriter.getIndexAttr(numExperts)}, f32);
    counts = linalg::GenericOp::create(
                 rewriter, loc, TypeRange{counts.getType()}, ValueRange{experts},
                 ValueRange{counts},
                 SmallVector<AffineMap>{AffineMap::get(4, 0, {b, t, j}, ctx),
                                        AffineMap::get(4, 0, {b, e}, ctx)},
                 SmallVector<utils::IteratorType>{parallel, parallel, reduction,
                                                  reduction},
                 [&](OpBuilder &nb, Location l, ValueRange args) {
                   Value idx = arith::IndexCastOp::create(
                       nb, l, nb.getI32Type(), linalg::IndexOp::create(nb, l, 1));
                   Value hit = arith::CmpIOp::create(
                       nb, l, arith::CmpIPredicate::eq, args[0], idx);
                   Value one = arith::UIToFPOp::create(nb, l, nb.getF32Type(), hit);
                   linalg::YieldOp::create(
                       nb, l, arith::AddFOp::create(nb, l, args[1], one).getResult());
                 })
                 .getResult(0);

    // psum[b, e] = sum_t probs[b, t, e], over (b, e, t).
    AffineExpr b2, e2, t2;
    bindDims(ctx, b2, e2, t2);
    Value psum = tb.zeros({batches, rewriter.getIndexAttr(numExperts)}, f32);
    psum = linalg::GenericOp::create(
               rewriter, loc, TypeRange{psum.getType()}, ValueRange{probs},
               ValueRange{psum},
               SmallVector<AffineMap>{AffineMap::get(3, 0, {b2, t2, e2}, ctx),
                                      AffineMap::get(3, 0, {b2, e2}, ctx)},
               SmallVector<utils::IteratorType>{parallel, parallel, reduction},
               [&](OpBuilder &nb, Location l, ValueRange args) {
                 TensorBuilder inner(nb, l);
                 linalg::YieldOp::create(
                     nb, l,
                     arith::AddFOp::create(nb, l, args[1], inner.toF32(args[0]))
                         .getResult());
               })
               .getResult(0);

    // dot = sum_b sum_e counts[b, e] * psum[b, e].
    AffineExpr b3, e3;
    bindDims(ctx, b3, e3);
    Value zero = arith::ConstantOp::create(rewriter, loc,
                                           rewriter.getF32FloatAttr(0));
    Value dot = tensor::EmptyOp::create(rewriter, loc, ArrayRef<int64_t>{}, f32);
    dot = linalg::FillOp::create(rewriter, loc, zero, dot).getResult(0);
    dot = linalg::GenericOp::create(
              rewriter, loc, TypeRange{dot.getType()}, ValueRange{counts, psum},
              ValueRange{dot},
              SmallVector<AffineMap>{AffineMap::get(2, 0, {b3, e3}, ctx),
                                     AffineMap::get(2, 0, {b3, e3}, ctx),
                                     AffineMap::get(2, 0, {}, ctx)},
              SmallVector<utils::IteratorType>{reduction, reduction},
              [&](OpBuilder &nb, Location l, ValueRange args) {
                Value prod = arith::MulFOp::create(nb, l, args[0], args[1]);
                linalg::YieldOp::create(
                    nb, l, arith::AddFOp::create(nb, l, args[2], prod).getResult());
              })
              .getResult(0);

    // result = dot * E / (T * K * T * B)
    auto asF32 = [&](OpFoldResult size) -> Value {
      Value v = getValueOrCreateConstantIndexOp(rewriter, loc, size);
      v = arith::IndexCastOp::create(rewriter, loc, rewriter.getI64Type(), v);
      return arith::SIToFPOp::create(rewriter, loc, f32, v);
    };
    Value tf = asF32(tb.dim(experts, 1));
    Value denom = arith::MulFOp::create(
        rewriter, loc, arith::MulFOp::create(rewriter, loc, tf, tf),
        tb.f32(double(k)));
    denom = arith::MulFOp::create(rewriter, loc, denom, asF32(batches));
    Value scale = arith::DivFOp::create(rewriter, loc,
                                        tb.f32(double(numExperts)), denom);
    Value scalar = tensor::ExtractOp::create(rewriter, loc, dot, ValueRange{});
    Value result = arith::MulFOp::create(rewriter, loc, scalar, scale);
    rewriter.replaceOpWithNewOp<tensor::FromElementsOp>(
        op, op.getResult().getType(), ValueRange{result});
    return success();
  }
};

struct ConvertMoeToLinalgPass
    : public mlir::moe::impl::ConvertMoeToLinalgPassBase<
          ConvertMoeToLinalgPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateMoeToLinalgPatterns(patterns);
    walkAndApplyPatterns(getOperation(), std::move(patterns));
    WalkResult leftover = getOperation()->walk([](Operation *op) {
      if (!isa<ExpertsOp, GroupedMatmulOp, LoadBalanceOp>(op))
        return WalkResult::advance();
      op->emitOpError("could not be lowered to loops");
      return WalkResult::interrupt();
    });
    if (leftover.wasInterrupted())
      signalPassFailure();
  }
};

} // namespace

void mlir::moe::populateMoeToLinalgPatterns(RewritePatternSet &patterns) {
  patterns.add<LowerExperts, LowerGroupedMatmul, LowerLoadBalance>(
      patterns.getContext());
}
