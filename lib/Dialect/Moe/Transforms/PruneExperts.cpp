//===- PruneExperts.cpp - Static expert pruning from a profile -------------===//

#include "moe/Dialect/Moe/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace mlir::moe {
#define GEN_PASS_DEF_MOEPRUNEEXPERTSPASS
#include "moe/Dialect/Moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// One dispatch of the profile: importance per expert.
struct ProfileLayer {
  std::vector<double> frequency, gateMass, importance;
};

FailureOr<std::vector<ProfileLayer>> readProfile(Operation *root,
                                                 StringRef path) {
  auto buffer = llvm::MemoryBuffer::getFile(path);
  if (!buffer)
    return root->emitError() << "moe-prune-experts: cannot read profile '"
                             << path << "': " << buffer.getError().message();
  auto json = llvm::json::parse((*buffer)->getBuffer());
  if (!json)
    return root->emitError() << "moe-prune-experts: profile '" << path
                             << "' is not valid JSON: "
                             << llvm::toString(json.takeError());
  auto *layers = json->getAsObject() ? json->getAsObject()->getArray("layers")
                                     : nullptr;
  if (!layers)
    return root->emitError() << "moe-prune-experts: profile '" << path
                             << "' has no \"layers\" array (write it with "
                                "moe-run --stats)";
  std::vector<ProfileLayer> result;
  for (auto [i, value] : llvm::enumerate(*layers)) {
    auto *obj = value.getAsObject();
    auto *tokens = obj ? obj->getArray("tokens_per_expert") : nullptr;
    if (!tokens)
      return root->emitError() << "moe-prune-experts: profile layer " << i
                               << " has no tokens_per_expert";
    ProfileLayer layer;
    for (auto &v : *tokens)
      layer.frequency.push_back(v.getAsNumber().value_or(-1.0));
    if (auto *mass = obj->getArray("gate_mass"))
      for (auto &v : *mass)
        layer.gateMass.push_back(v.getAsNumber().value_or(-1.0));
    if (auto *imp = obj->getArray("importance"))
      for (auto &v : *imp)
        layer.importance.push_back(v.getAsNumber().value_or(-1.0));
    result.push_back(std::move(layer));
  }
  return result;
}

struct MoePruneExpertsPass
    : public mlir::moe::impl::MoePruneExpertsPassBase<MoePruneExpertsPass> {
  using MoePruneExpertsPassBase::MoePruneExpertsPassBase;

  /// Replaces the type of `value` (an entry-point argument used only by
  /// `layer`) by keeping `keep` along `dim`, and records the selection.
  LogicalResult shrink(LayerOp layer, Value value, int64_t dim,
                       ArrayRef<int64_t> keep, StringRef role) {
    auto arg = dyn_cast<BlockArgument>(value);
    auto fn = arg ? dyn_cast<func::FuncOp>(arg.getOwner()->getParentOp())
                  : func::FuncOp();
    if (!fn || !arg.hasOneUse())
      return layer.emitOpError()
             << "moe-prune-experts needs '" << role
             << "' to be an entry-point argument used by this layer only";
    auto type = cast<RankedTensorType>(arg.getType());
    SmallVector<int64_t> shape(type.getShape());
    shape[dim] = static_cast<int64_t>(keep.size());
    auto newType = RankedTensorType::get(shape, type.getElementType());
    arg.setType(newType);
    SmallVector<Type> inputs(fn.getArgumentTypes());
    inputs[arg.getArgNumber()] = newType;
    fn.setFunctionType(
        FunctionType::get(fn.getContext(), inputs, fn.getResultTypes()));
    Builder b(fn.getContext());
    fn.setArgAttr(arg.getArgNumber(), "moe.prune_dim", b.getI64IntegerAttr(dim));
    fn.setArgAttr(arg.getArgNumber(), "moe.prune_keep",
                  b.getDenseI64ArrayAttr(keep));
    return success();
  }

  void runOnOperation() override {
    if (metric != "gate_mass" && metric != "frequency" &&
        metric != "importance") {
      getOperation()->emitError() << "moe-prune-experts: metric must be "
                                     "gate_mass, frequency or importance, got '"
                                  << metric << "'";
      return signalPassFailure();
    }
    if (profile.empty()) {
      getOperation()->emitError()
          << "moe-prune-experts: no profile (profile=stats.json)";
      return signalPassFailure();
    }
    auto layers = readProfile(getOperation(), profile);
    if (failed(layers))
      return signalPassFailure();
    SmallVector<LayerOp> ops;
    getOperation()->walk([&](LayerOp op) { ops.push_back(op); });
    size_t next = 0;
    for (LayerOp layer : ops) {
      if (next >= layers->size()) {
        layer.emitOpError() << "moe-prune-experts: the profile has only "
                            << layers->size() << " layers";
        return signalPassFailure();
      }
      const ProfileLayer &p = (*layers)[next];
      next += layer.getNumSharedExperts() ? 2 : 1;
      int64_t e = layer.getNumExperts();
      const std::vector<double> &score = metric == "gate_mass"    ? p.gateMass
                                         : metric == "importance" ? p.importance
                                                                  : p.frequency;
      if (static_cast<int64_t>(score.size()) != e) {
        layer.emitOpError() << "moe-prune-experts: the profile gives "
                            << score.size() << " " << std::string(metric)
                            << " values for a layer of " << e << " experts";
        return signalPassFailure();
      }
      int64_t n = keep > 0 ? int64_t(keep)
                           : std::max<int64_t>(
                                 1, std::llround(double(keepFraction) * e));
      if (n > e) {
        layer.emitOpError() << "moe-prune-experts: cannot keep " << n
                            << " of " << e << " experts";
        return signalPassFailure();
      }
      if (n == e)
        continue;
      // The n most important experts (ties: lower index), in index order.
      std::vector<int64_t> order(e);
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return score[a] != score[b] ? score[a] > score[b] : a < b;
      });
      std::vector<int64_t> kept(order.begin(), order.begin() + n);
      std::sort(kept.begin(), kept.end());
      // Router columns: the kept experts, then every null-expert column.
      std::vector<int64_t> columns = kept;
      for (int64_t c = e; c < layer.getNumRouterColumns(); ++c)
        columns.push_back(c);
      bool inOut = layer.getFfn().getLayout() == WeightLayout::InOut;
      if (failed(shrink(layer, layer.getRouter(), inOut ? 1 : 0, columns,
                        "router")))
        return signalPassFailure();
      for (auto [v, role] : {std::pair<Value, StringRef>{layer.getRouterBias(),
                                                         "router_bias"},
                             {layer.getSelectionBias(), "selection_bias"}})
        if (v && failed(shrink(layer, v, 0, columns, role)))
          return signalPassFailure();
      for (auto [v, role] :
           {std::pair<Value, StringRef>{layer.getW1(), "w1"},
            {layer.getW3(), "w3"}, {layer.getW2(), "w2"},
            {layer.getB1(), "b1"}, {layer.getB2(), "b2"}})
        if (v && failed(shrink(layer, v, 0, kept, role)))
          return signalPassFailure();
      if (failed(layer.verify())) {
        layer.emitOpError() << "is invalid after pruning to " << n
                            << " experts (check k and grouping)";
        return signalPassFailure();
      }
    }
  }
};

} // namespace
