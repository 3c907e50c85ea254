//===- MoeOpFolders.cpp - moe canonicalization patterns --------------------===//
//
// Rewrites whose correctness follows directly from the op semantics:
//  * routing over a single expert is a constant (every token picks expert 0);
//  * renormalising a softmax over all experts (top-k with k = E) is a no-op.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/Moe/Utils/TensorBuilder.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace mlir::moe;

namespace {

/// A tensor of `type` filled with `value`, dynamic sizes taken from the
/// same dimensions of `shapeSource`.
Value buildFilled(PatternRewriter &rewriter, Location loc, RankedTensorType type,
                  TypedAttr value, Value shapeSource) {
  TensorBuilder tb(rewriter, loc);
  SmallVector<OpFoldResult> sizes;
  for (int64_t i = 0; i < type.getRank(); ++i)
    sizes.push_back(type.isDynamicDim(i) ? tb.dim(shapeSource, i)
                                         : rewriter.getIndexAttr(type.getDimSize(i)));
  return tb.filled(sizes, value);
}

/// moe.route over one expert column: every token selects expert 0; with a
/// softmax-type score its weight is exactly 1 (times the scaling factor).
struct FoldSingleExpertRoute : OpRewritePattern<RouteOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RouteOp op,
                                PatternRewriter &rewriter) const override {
    RoutingAttr routing = op.getRouting();
    if (op.getLogits().getType().getDimSize(1) != 1 ||
        routing.getNullExperts() != 0 || routing.getK() != 1)
      return rewriter.notifyMatchFailure(op, "not a single-expert route");
    ScoreFunction score = routing.getScore();
    bool weightIsOne =
        score == ScoreFunction::SoftmaxSelected ||
        (score == ScoreFunction::Softmax &&
         routing.getPolicy() != RoutingPolicy::Threshold) ||
        (routing.getNormalize() == Normalization::Selected &&
         routing.getEpsilon() == 0.0 &&
         (routing.getPolicy() == RoutingPolicy::TopK ||
          routing.getPolicy() == RoutingPolicy::SparseMixer));
    if (!weightIsOne || routing.getPolicy() == RoutingPolicy::Sinkhorn ||
        routing.getPolicy() == RoutingPolicy::ExpertChoice ||
        routing.getPolicy() == RoutingPolicy::TopP ||
        routing.getPolicy() == RoutingPolicy::GroupedTopK)
      return rewriter.notifyMatchFailure(op, "weight is data dependent");
    Location loc = op.getLoc();
    auto wType = op.getWeights().getType();
    auto eType = op.getExperts().getType();
    Value weights = buildFilled(
        rewriter, loc, wType,
        rewriter.getFloatAttr(wType.getElementType(), routing.getScaling()),
        op.getLogits());
    Value experts = buildFilled(rewriter, loc, eType,
                                rewriter.getI32IntegerAttr(0), op.getLogits());
    rewriter.replaceOp(op, {weights, experts});
    return success();
  }
};

/// top-k with k = E over a full softmax: the k weights already sum to 1, so
/// `normalize = selected` (without epsilon) changes nothing.
struct DropRedundantNormalization : OpRewritePattern<RouteOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RouteOp op,
                                PatternRewriter &rewriter) const override {
    RoutingAttr r = op.getRouting();
    if (r.getPolicy() != RoutingPolicy::TopK ||
        r.getScore() != ScoreFunction::Softmax ||
        r.getNormalize() != Normalization::Selected || r.getEpsilon() != 0.0 ||
        r.getNullExperts() != 0 ||
        r.getK() != op.getLogits().getType().getDimSize(1))
      return rewriter.notifyMatchFailure(op, "normalisation is not redundant");
    auto updated = RoutingAttr::get(
        op.getContext(), r.getPolicy(), r.getK(), r.getScore(),
        Normalization::None, r.getTieBreak(), r.getScaling(), r.getTopP(),
        r.getThreshold(), r.getNumGroups(), r.getTopGroups(),
        r.getGroupScoreK(), r.getMaskWithZero(), r.getNullExperts(),
        r.getSinkhornIterations(), r.getCapacityFactor(), r.getJitterEps(),
        r.getEpsilon());
    rewriter.modifyOpInPlace(op, [&] { op.setRoutingAttr(updated); });
    return success();
  }
};

} // namespace

void RouteOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                          MLIRContext *context) {
  results.add<FoldSingleExpertRoute, DropRedundantNormalization>(context);
}
