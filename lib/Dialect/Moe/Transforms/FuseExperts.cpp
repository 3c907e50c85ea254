//===- FuseExperts.cpp - moe.experts with a standard FFN to moe.expert_ffn -===//
//
// Implements `moe-fuse-experts`. A moe.experts op qualifies when
//  * its body is exactly the FFN moe-decompose builds for a #moe.ffn form
//    (recorded in `moe.ffn_form` / `moe.ffn_operands` and re-verified here by
//    building the canonical body and comparing regions, so an edited body is
//    never fused by mistake),
//  * its segments come from a moe.dispatch (so rows can be gathered through
//    row_token instead of read from the dispatched copy), and
//  * activations are f32 (moe.expert_ffn produces f32 rows).
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/Moe/Transforms/Passes.h"
#include "moe/Dialect/Moe/Transforms/Transforms.h"

#include "mlir/IR/OperationSupport.h"
#include "mlir/IR/PatternMatch.h"

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

/// True when `op`'s body is the canonical body of `form` over `weights`.
bool hasCanonicalBody(RewriterBase &rewriter, ExpertsOp op,
                      const StackedFFN &weights, FFNAttr form) {
  OpBuilder::InsertionGuard guard(rewriter);
  rewriter.setInsertionPoint(op);
  auto probe = ExpertsOp::create(rewriter, op.getLoc(), op.getResult().getType(),
                                 op.getDispatched(), op.getCounts(),
                                 op.getWeights());
  buildExpertFFNBody(rewriter, op.getLoc(), probe, weights, form);
  bool same = OperationEquivalence::isRegionEquivalentTo(
      &probe.getBody(), &op.getBody(),
      OperationEquivalence::Flags::IgnoreLocations);
  rewriter.eraseOp(probe);
  return same;
}

LogicalResult fuseOne(RewriterBase &rewriter, ExpertsOp op) {
  auto form = op->getAttrOfType<FFNAttr>(kExpertsFFNFormAttr);
  if (!form)
    return failure();
  auto dispatch = op.getDispatched().getDefiningOp<DispatchOp>();
  if (!dispatch || !dispatch.getInput().getType().getElementType().isF32() ||
      !op.getResult().getType().getElementType().isF32())
    return failure();
  FailureOr<StackedFFN> weights = weightsByRole(op);
  if (failed(weights) || !hasCanonicalBody(rewriter, op, *weights, form))
    return failure();
  rewriter.setInsertionPoint(op);
  auto fused = ExpertFFNOp::create(
      rewriter, op.getLoc(), op.getResult().getType(), dispatch.getInput(),
      dispatch.getRowToken(), op.getCounts(), weights->w1, weights->w3,
      weights->w2, weights->b1, weights->b2, form);
  rewriter.replaceOp(op, fused.getResult());
  return success();
}

struct MoeFuseExpertsPass
    : public mlir::moe::impl::MoeFuseExpertsPassBase<MoeFuseExpertsPass> {
  void runOnOperation() override {
    IRRewriter rewriter(&getContext());
    fuseExperts(rewriter, getOperation());
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
