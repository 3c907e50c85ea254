//===- moe-translate.cpp - moe translation driver --------------------------===//
//
// Translations out of (and into) MLIR for moe modules. Registered:
//   --mlir-to-llvmir   an already-lowered module (LLVM dialect) to LLVM IR;
//   --import-llvm      LLVM IR to the LLVM dialect (round trips, debugging);
//   --moe-to-model-glue  the C glue that makes a compiled module a
//                        self-describing model library;
//   --moe-to-c-header    the model library's public C header;
//   --moe-extract-device-code  the PTX / GCN assembly a GPU pipeline
//                        embedded (gpu.binary objects).
// The moe dialect is registered so that files holding both moe and LLVM
// dialect ops parse; a translation rejects ops it cannot translate.
//
//===----------------------------------------------------------------------===//

#include "mlir/InitAllTranslations.h"
#include "mlir/Tools/mlir-translate/MlirTranslateMain.h"
#include "mlir/Tools/mlir-translate/Translation.h"

#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Target/DeviceCode.h"
#include "moe/Target/ModelLibrary.h"

int main(int argc, char **argv) {
  mlir::registerToLLVMIRTranslation();
  mlir::registerFromLLVMIRTranslation();
  mlir::moe::registerModelLibraryTranslations();
  mlir::moe::registerDeviceCodeTranslation();
  return mlir::failed(
      mlir::mlirTranslateMain(argc, argv, "moe-mlir translation driver\n"));
}
