//===- DeviceCode.h - Device code embedded in lowered GPU modules -*- C++ -*-===//

#ifndef MOE_TARGET_DEVICECODE_H
#define MOE_TARGET_DEVICECODE_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/raw_ostream.h"

namespace mlir::moe {

/// Prints every object of every gpu.binary in `module`: assembly as text,
/// binaries as a summary line.
LogicalResult emitDeviceCode(ModuleOp module, llvm::raw_ostream &os);

/// Registers --moe-extract-device-code with mlir-translate.
void registerDeviceCodeTranslation();

} // namespace mlir::moe

#endif // MOE_TARGET_DEVICECODE_H
