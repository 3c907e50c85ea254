//===- FuseExperts.cpp - moe.experts with a standard FFN to moe.expert_ffn -===//
//
// Implements `moe-fuse-experts`. Per-expert loops are first raised into
// moe.experts (RaiseExpertLoops.cpp). A moe.experts op then qualifies when
//  * its body is exactly the FFN moe-decompose builds for a #moe.ffn form
//    (recorded in `moe.ffn_form` / `moe.ffn_operands`, or inferred by trying
//    the forms its weights allow, and verified by building the canonical
//    body and comparing regions, so an edited body is never fused by
//    mistake),
//  * its segments come from a moe.dispatch (so rows can be gathered through
//    row_token instead of read from the dispatched copy), and
//  * activations are f32 (moe.expert_ffn produces f32 rows).
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/Moe/Transforms/Passes.h"
#include "moe/Dialect/Moe/Transforms/Transforms.h"

#include "mlir/IR/Dominance.h"
#include "mlir/IR/OperationSupport.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/CSE.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFUSEEXPERTSPASS
#include "moe/Dialect/Moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Maps the recorded roles back to the experts op's weight operands.
FailureOr<StackedFFN> weightsByRole(ExpertsOp op) {
  auto roles = op->getAttrOfType<ArrayAttr>(kExpertsFFNRolesAttr);
  if (!roles || roles.size() != op.getWeights().size())
    return failure();
  StackedFFN ffn;
  for (auto [role, value] : llvm::zip(roles, op.getWeights())) {
    auto name = dyn_cast<StringAttr>(role);
    if (!name)
      return failure();
    Value *slot = llvm::StringSwitch<Value *>(name.getValue())
                      .Case("w1", &ffn.w1)
                      .Case("w3", &ffn.w3)
                      .Case("w2", &ffn.w2)
                      .Case("b1", &ffn.b1)
                      .Case("b2", &ffn.b2)
                      .Default(nullptr);
    if (!slot || *slot)
      return failure();
    *slot = value;
  }
  if (!ffn.w1 || !ffn.w2)
    return failure();
  return ffn;
}

/// Canonicalises and CSEs the body of `op` in place, so that bodies that
/// differ only in constant placement, duplicated size queries or foldable
/// ops compare equal.
void normalizeBody(RewriterBase &rewriter, ExpertsOp op) {
  MLIRContext *ctx = op.getContext();
  RewritePatternSet patterns(ctx);
  for (Dialect *dialect : ctx->getLoadedDialects())
    dialect->getCanonicalizationPatterns(patterns);
  for (RegisteredOperationName name : ctx->getRegisteredOperations())
    name.getCanonicalizationPatterns(patterns, ctx);
  (void)applyPatternsGreedily(op.getBody(), std::move(patterns));
  DominanceInfo dom(op);
  eliminateCommonSubExpressions(rewriter, dom, op);
  // The greedy driver hoists constants in visiting order: put them in one
  // order (by printed form) at the start of the body.
  Block &body = op.getBody().front();
  SmallVector<std::pair<std::string, Operation *>> constants;
  for (Operation &nested : body)
    if (nested.hasTrait<OpTrait::ConstantLike>()) {
      std::string key;
      llvm::raw_string_ostream os(key);
      os << nested.getName() << " " << nested.getPropertiesAsAttribute()
         << " " << nested.getAttrDictionary() << " "
         << nested.getResultTypes();
      constants.push_back({key, &nested});
    }
  llvm::sort(constants, [](const auto &a, const auto &b) {
    return a.first < b.first;
  });
  for (auto &entry : llvm::reverse(constants))
    entry.second->moveBefore(&body, body.begin());
}

/// True when `op`'s body is the canonical body of `form` over `weights`:
/// exactly (what moe-decompose built), or with `normalized`, after both
/// bodies are canonicalised and CSE'd (bodies from elsewhere).
bool hasCanonicalBody(RewriterBase &rewriter, ExpertsOp op,
                      const StackedFFN &weights, FFNAttr form,
                      bool normalized = false) {
  OpBuilder::InsertionGuard guard(rewriter);
  rewriter.setInsertionPoint(op);
  auto probe = ExpertsOp::create(rewriter, op.getLoc(), op.getResult().getType(),
                                 op.getDispatched(), op.getCounts(),
                                 op.getWeights());
  buildExpertFFNBody(rewriter, op.getLoc(), probe, weights, form);
  ExpertsOp candidate = op;
  if (normalized) {
    candidate = cast<ExpertsOp>(rewriter.clone(*op));
    normalizeBody(rewriter, probe);
    normalizeBody(rewriter, candidate);
  }
  bool same = OperationEquivalence::isRegionEquivalentTo(
      &probe.getBody(), &candidate.getBody(),
      OperationEquivalence::Flags::IgnoreLocations);
  rewriter.eraseOp(probe);
  if (normalized)
    rewriter.eraseOp(candidate);
  return same;
}

/// For a moe.experts that did not come from moe-decompose (a raised loop, a
/// frontend's own op): the standard FFN form whose canonical body it has,
/// recorded on the op as moe-decompose would. Candidates follow from the
/// number and shapes of the weights: three are w1, w3, w2 (GLU, separate
/// gate/up), two are w1, w2 (MLP, or GLU with fused gate/up when w1 has
/// twice w2's hidden width); both weight layouts; every activation.
LogicalResult inferFFNForm(RewriterBase &rewriter, ExpertsOp op) {
  if (op->hasAttr(kExpertsFFNFormAttr))
    return success();
  ValueRange w = op.getWeights();
  if (w.size() != 2 && w.size() != 3)
    return failure();
  for (Value v : w)
    if (cast<RankedTensorType>(v.getType()).getRank() != 3)
      return failure();
  MLIRContext *ctx = op.getContext();
  StackedFFN weights;
  weights.w1 = w[0];
  weights.w2 = w.back();
  if (w.size() == 3)
    weights.w3 = w[1];
  auto w1Type = cast<RankedTensorType>(w[0].getType());
  auto w2Type = cast<RankedTensorType>(w.back().getType());
  SmallVector<std::pair<FFNKind, GateUpLayout>> kinds;
  if (w.size() == 3)
    kinds.push_back({FFNKind::GLU, GateUpLayout::Separate});
  else
    kinds = {{FFNKind::MLP, GateUpLayout::Separate},
             {FFNKind::GLU, GateUpLayout::Concatenated},
             {FFNKind::GLU, GateUpLayout::Interleaved}};
  for (WeightLayout layout : {WeightLayout::InOut, WeightLayout::OutIn}) {
    // Hidden width F from w2 ([E, F, D] in_out, [E, D, F] out_in); w1's
    // hidden dimension must be F (or 2F when fused).
    int64_t f = w2Type.getDimSize(layout == WeightLayout::InOut ? 1 : 2);
    int64_t f1 = w1Type.getDimSize(layout == WeightLayout::InOut ? 2 : 1);
    for (auto [kind, gateUp] : kinds) {
      if (f1 != (gateUp == GateUpLayout::Separate ? f : 2 * f))
        continue;
      for (Activation act :
           {Activation::SiLU, Activation::GELU, Activation::GELUTanh,
            Activation::ReLU, Activation::Identity}) {
        auto form = FFNAttr::get(ctx, kind, act, gateUp, layout, Real{1.0},
                                 Real{0.0}, Real{0.0});
        if (!hasCanonicalBody(rewriter, op, weights, form,
                              /*normalized=*/true))
          continue;
        op->setAttr(kExpertsFFNFormAttr, form);
        op->setAttr(kExpertsFFNRolesAttr, weights.rolesAttr(rewriter));
        return success();
      }
    }
  }
  return failure();
}

LogicalResult fuseOne(RewriterBase &rewriter, ExpertsOp op) {
  // The cheap preconditions first: inference builds and compares bodies.
  auto dispatch = op.getDispatched().getDefiningOp<DispatchOp>();
  if (!dispatch || !dispatch.getInput().getType().getElementType().isF32() ||
      !op.getResult().getType().getElementType().isF32())
    return failure();
  // An inferred form was verified while inferring it; a recorded one is
  // checked here: exactly the canonical body, or (canonicalised since
  // moe-decompose) the same after normalisation.
  bool inferred = !op->hasAttr(kExpertsFFNFormAttr);
  if (failed(inferFFNForm(rewriter, op)))
    return failure();
  auto form = op->getAttrOfType<FFNAttr>(kExpertsFFNFormAttr);
  FailureOr<StackedFFN> weights = weightsByRole(op);
  if (!form || failed(weights))
    return failure();
  if (!inferred && !hasCanonicalBody(rewriter, op, *weights, form) &&
      !hasCanonicalBody(rewriter, op, *weights, form, /*normalized=*/true))
    return failure();
  rewriter.setInsertionPoint(op);
  auto fused = ExpertFFNOp::create(
      rewriter, op.getLoc(), op.getResult().getType(), dispatch.getInput(),
      dispatch.getRowToken(), op.getCounts(), weights->w1, weights->w3,
      weights->w2, weights->b1, weights->b2, /*shared_w1=*/Value(),
      /*shared_w3=*/Value(), /*shared_w2=*/Value(), /*token_slot=*/Value(),
      /*combine_weights=*/Value(), form);
  rewriter.replaceOp(op, fused.getResult());
  return success();
}

struct MoeFuseExpertsPass
    : public mlir::moe::impl::MoeFuseExpertsPassBase<MoeFuseExpertsPass> {
  using MoeFuseExpertsPassBase::MoeFuseExpertsPassBase;
  void runOnOperation() override {
    IRRewriter rewriter(&getContext());
    // Horizontal first (traced per-expert loops -> moe.experts), then
    // vertical (moe.experts with a standard FFN body -> moe.expert_ffn).
    raiseExpertLoops(rewriter, getOperation());
    fuseExperts(rewriter, getOperation());
    if (foldShared)
      foldSharedExperts(rewriter, getOperation());
    if (fuseCombine)
      fuseCombines(rewriter, getOperation());
  }
};

} // namespace

int64_t mlir::moe::fuseExperts(RewriterBase &rewriter, Operation *root) {
  SmallVector<ExpertsOp> candidates;
  root->walk([&](ExpertsOp op) { candidates.push_back(op); });
  int64_t fused = 0;
  for (ExpertsOp op : candidates)
    fused += succeeded(fuseOne(rewriter, op));
  return fused;
}
