//===- SkipExperts.cpp - Gate-threshold and MoDES expert skipping ----------===//

#include "moe/Dialect/Moe/Transforms/Passes.h"

#include <cmath>

namespace mlir::moe {
#define GEN_PASS_DEF_MOESKIPEXPERTSPASS
#include "moe/Dialect/Moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// `r` with its threshold replaced.
RoutingAttr withThreshold(RoutingAttr r, double threshold) {
  return RoutingAttr::get(
      r.getContext(), r.getPolicy(), r.getK(), r.getScore(), r.getNormalize(),
      r.getTieBreak(), r.getScaling(), r.getTopP(), Real{threshold},
      r.getNumGroups(), r.getTopGroups(), r.getGroupScoreK(),
      r.getMaskWithZero(), r.getNullExperts(), r.getSinkhornIterations(),
      r.getCapacityFactor(), r.getJitterEps(), r.getEpsilon());
}

struct MoeSkipExpertsPass
    : public mlir::moe::impl::MoeSkipExpertsPassBase<MoeSkipExpertsPass> {
  using MoeSkipExpertsPassBase::MoeSkipExpertsPassBase;

  void runOnOperation() override {
    if (!(threshold >= 0.0 && threshold <= 1.0)) {
      getOperation()->emitError()
          << "moe-skip-experts: threshold must be in [0, 1], got "
          << double(threshold);
      return signalPassFailure();
    }
    SmallVector<Operation *> routers;
    getOperation()->walk([&](Operation *op) {
      if (isa<LayerOp, RouteOp>(op))
        routers.push_back(op);
    });
    if (!layerImportance.empty() && layerImportance.size() != routers.size()) {
      getOperation()->emitError()
          << "moe-skip-experts: " << layerImportance.size()
          << " layer importances given for " << routers.size()
          << " routing ops";
      return signalPassFailure();
    }
    for (auto [i, op] : llvm::enumerate(routers)) {
      double importance = layerImportance.empty() ? 1.0 : layerImportance[i];
      if (!(importance > 0.0) || !std::isfinite(importance)) {
        op->emitError() << "moe-skip-experts: layer importance must be "
                           "positive, got "
                        << importance;
        return signalPassFailure();
      }
      auto routing = op->getAttrOfType<RoutingAttr>("routing");
      switch (routing.getPolicy()) {
      case RoutingPolicy::TopK:
      case RoutingPolicy::TopP:
      case RoutingPolicy::GroupedTopK:
      case RoutingPolicy::Threshold:
        break;
      default:
        if (threshold == 0.0)
          continue;
        op->emitError() << "moe-skip-experts: " << stringifyRoutingPolicy(
                               routing.getPolicy())
                        << " routing does not rank slots by score and cannot "
                           "skip experts";
        return signalPassFailure();
      }
      double layerThreshold = std::min(1.0, threshold / importance);
      op->setAttr("routing", withThreshold(routing, layerThreshold));
    }
  }
};

} // namespace
