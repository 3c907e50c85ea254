//===- ModelLibrary.h - Model-library glue and header emission ---*- C++ -*-===//
//
// A model library is the compiled module plus a small C "glue" translation
// unit that describes it (runtime/include/moert/model_abi.h) and adapts
// moert_view arguments to the MLIR C interface (_mlir_ciface_<entry>).
// Both the glue and the public C header are generated from the module's
// tensor-level signatures, before lowering.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TARGET_MODELLIBRARY_H
#define MOE_TARGET_MODELLIBRARY_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/raw_ostream.h"

namespace mlir::moe {

/// Writes the C glue source of the model library for `module`; `target`
/// ("cpu", "cuda", "rocm") selects what the runtime is told and how results
/// are freed.
LogicalResult emitModelGlue(ModuleOp module, llvm::raw_ostream &os,
                            StringRef target = "cpu");

/// Writes the public C header of the model library for `module`.
LogicalResult emitModelHeader(ModuleOp module, llvm::raw_ostream &os);

/// Registers --moe-to-model-glue and --moe-to-c-header with mlir-translate.
void registerModelLibraryTranslations();

} // namespace mlir::moe

#endif // MOE_TARGET_MODELLIBRARY_H
