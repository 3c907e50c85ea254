//===- moe-opt.cpp - moe optimizer driver ----------------------------------===//
//
// mlir-opt with the moe dialect and passes added: every upstream dialect,
// pass and extension is registered too, so one tool runs whole pipelines.
//
//===----------------------------------------------------------------------===//

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

#include "moe/InitAll.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  // gpu-module-to-binary and friends need the LLVM IR translation interfaces.
  mlir::registerAllToLLVMIRTranslations(registry);
  mlir::registerAllPasses();

  mlir::moe::registerAllMoeDialects(registry);
  mlir::moe::registerAllMoePasses();

  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "moe-mlir optimizer driver\n", registry));
}
