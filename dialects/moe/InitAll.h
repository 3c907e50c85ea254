//===- InitAll.h - Register every moe dialect and pass -----------*- C++ -*-===//

#ifndef MOE_INITALL_H
#define MOE_INITALL_H

#include "mlir/IR/DialectRegistry.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Conversion/Passes.h"
#include "moe/Dialect/Moe/Transforms/Passes.h"
#include "moe/Pipelines/Pipelines.h"

namespace mlir::moe {

/// Adds the moe dialect (and the dialects its passes produce) to `registry`.
inline void registerAllMoeDialects(DialectRegistry &registry) {
  registry.insert<MoeDialect>();
}

/// Registers every moe pass with the global pass registry.
inline void registerAllMoePasses() {
  registerMoePasses();
  registerMoeConversionPasses();
  registerMoePipelines();
}

} // namespace mlir::moe

#endif // MOE_INITALL_H
