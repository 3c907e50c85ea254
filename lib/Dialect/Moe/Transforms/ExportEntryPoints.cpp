//===- ExportEntryPoints.cpp - Mark model-library entry points -------------===//

#include "moe/Dialect/Moe/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/BuiltinOps.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEEXPORTENTRYPOINTSPASS
#include "moe/Dialect/Moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

/// Why `type` cannot cross the model-library ABI, or an empty string.
std::string checkExportable(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  if (!tensor)
    return "is not a ranked tensor";
  if (tensor.getRank() < 1 || tensor.getRank() > 8)
    return "has rank " + std::to_string(tensor.getRank()) +
           "; entry points pass tensors of rank 1 to 8 (reshape scalars to "
           "tensor<1x...>)";
  Type elem = tensor.getElementType();
  if (!(elem.isF32() || elem.isF16() || elem.isBF16() || elem.isInteger(32) ||
        elem.isInteger(64)))
    return "has element type that the runtime cannot pass (f32, f16, bf16, "
           "i32, i64 are supported)";
  for (int64_t i = 1; i < tensor.getRank(); ++i)
    if (tensor.isDynamicDim(i))
      return "has a dynamic dimension " + std::to_string(i) +
             "; only the leading (token) dimension may be dynamic";
  return {};
}

struct MoeExportEntryPointsPass
    : public mlir::moe::impl::MoeExportEntryPointsPassBase<
          MoeExportEntryPointsPass> {
  void runOnOperation() override {
    bool ok = true;
    for (auto fn : getOperation().getOps<func::FuncOp>()) {
      if (fn.isExternal() || !fn.isPublic())
        continue;
      FunctionType type = fn.getFunctionType();
      for (auto [i, t] : llvm::enumerate(type.getInputs())) {
        std::string why = checkExportable(t);
        if (!why.empty()) {
          fn.emitOpError() << "entry point argument #" << i << " (" << t
                           << ") " << why;
          ok = false;
        }
      }
      for (auto [i, t] : llvm::enumerate(type.getResults())) {
        std::string why = checkExportable(t);
        if (!why.empty()) {
          fn.emitOpError() << "entry point result #" << i << " (" << t << ") "
                           << why;
          ok = false;
        }
      }
      fn->setAttr(LLVM::LLVMDialect::getEmitCWrapperAttrName(),
                  UnitAttr::get(&getContext()));
      // Arguments are read-only to the compiled code: weights may be mapped
      // read-only from disk and inputs are reused across calls, so
      // bufferization must copy rather than write into them.
      for (unsigned i = 0; i < fn.getNumArguments(); ++i)
        fn.setArgAttr(i, "bufferization.writable",
                      BoolAttr::get(&getContext(), false));
    }
    if (!ok)
      signalPassFailure();
  }
};

} // namespace
