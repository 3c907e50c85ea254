//===- DeviceCode.cpp - Print the device code embedded in a module --------===//
//
// Implements `moe-translate --moe-extract-device-code`: after a GPU
// pipeline, every gpu.binary holds one object per target (PTX / GCN
// assembly text, or a cubin / HSACO / fatbinary image). Assembly is
// printed as is (so tests can FileCheck it and ptxas can assemble it);
// binary images are summarised, or one object is written raw with
// --moe-device-code-object=N.
//
//===----------------------------------------------------------------------===//

#include "moe/Target/DeviceCode.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/InitAllDialects.h"
#include "mlir/Tools/mlir-translate/Translation.h"
#include "llvm/Support/CommandLine.h"

using namespace mlir;

static llvm::cl::opt<int> rawObject(
    "moe-device-code-object",
    llvm::cl::desc("--moe-extract-device-code: write only the raw bytes of "
                   "the N-th object (0-based, in module order), e.g. to "
                   "inspect a cubin or HSACO with the LLVM tools"),
    llvm::cl::init(-1));

LogicalResult mlir::moe::emitDeviceCode(ModuleOp module, raw_ostream &os) {
  SmallVector<gpu::BinaryOp> binaries;
  module.walk([&](gpu::BinaryOp op) { binaries.push_back(op); });
  if (binaries.empty())
    return module.emitError("no gpu.binary: run a GPU pipeline "
                            "(moe-lower-to-nvvm-pipeline or "
                            "moe-lower-to-rocdl-pipeline) first");
  int index = 0;
  for (gpu::BinaryOp binary : binaries) {
    for (Attribute attr : binary.getObjects()) {
      auto object = cast<gpu::ObjectAttr>(attr);
      bool text = object.getFormat() == gpu::CompilationTarget::Assembly;
      StringRef bytes = object.getObject().getValue();
      if (rawObject >= 0) {
        if (index++ == rawObject) {
          os << bytes;
          return success();
        }
        continue;
      }
      os << "// ----- gpu.binary @" << binary.getSymName() << " target "
         << object.getTarget() << " format "
         << gpu::stringifyCompilationTarget(object.getFormat()) << ", "
         << bytes.size() << " bytes\n";
      if (text)
        os << bytes << "\n";
    }
  }
  if (rawObject >= 0)
    return module.emitError("--moe-device-code-object=")
           << rawObject.getValue() << " but the module has " << index
           << " device objects";
  return success();
}

void mlir::moe::registerDeviceCodeTranslation() {
  TranslateFromMLIRRegistration(
      "moe-extract-device-code",
      "Print the device code (PTX / GCN assembly) embedded in a lowered "
      "GPU module",
      [](Operation *op, raw_ostream &os) -> LogicalResult {
        auto module = dyn_cast<ModuleOp>(op);
        if (!module)
          return op->emitError("expected a builtin.module");
        return emitDeviceCode(module, os);
      },
      [](DialectRegistry &registry) { registerAllDialects(registry); });
}
