//===- FuseCombine.cpp - moe.combine into moe.expert_ffn -------------------===//
//
// Part of `moe-fuse-experts` (last): the gate-weighted combine of a fused
// expert FFN's rows becomes part of the op,
//
//   %rows = moe.expert_ffn %x, %row_token, %counts ... -> [N, D]
//   %y    = moe.combine %rows, %token_slot, %weights    -> [T, D]
//
// becomes
//
//   %y = moe.expert_ffn %x, %row_token, %counts ...
//          combine(%token_slot, %weights : ...) -> [T, D]
//
// so that no [T * K, D] tensor of expert rows is left in the program and a
// backend can reduce each token's rows where they are produced. Only when
// the combine is the rows' one reader and has no passthrough (dropped
// tokens' pass-through rows stay with moe.combine).
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/Moe/Transforms/Transforms.h"

#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace mlir::moe;

int64_t mlir::moe::fuseCombines(RewriterBase &rewriter, Operation *root) {
  SmallVector<CombineOp> candidates;
  root->walk([&](CombineOp op) { candidates.push_back(op); });
  int64_t fused = 0;
  for (CombineOp combine : candidates) {
    auto ffn = combine.getExpertOut().getDefiningOp<ExpertFFNOp>();
    if (!ffn || ffn.hasFusedCombine() || combine.getPassthrough() ||
        !ffn->hasOneUse() || !combine.getResult().getType().getElementType().isF32())
      continue;
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPoint(combine);
    auto fusedOp = ExpertFFNOp::create(
        rewriter, ffn.getLoc(), combine.getResult().getType(), ffn.getInput(),
        ffn.getRowToken(), ffn.getCounts(), ffn.getW1(), ffn.getW3(),
        ffn.getW2(), ffn.getB1(), ffn.getB2(), ffn.getSharedW1(),
        ffn.getSharedW3(), ffn.getSharedW2(), combine.getTokenSlot(),
        combine.getWeights(), ffn.getFfn());
    fusedOp->setDiscardableAttrs(ffn->getDiscardableAttrDictionary());
    rewriter.replaceOp(combine, fusedOp.getResult());
    rewriter.eraseOp(ffn);
    ++fused;
  }
  return fused;
}
