//===- RouterMatmul.h - Which linalg.matmul the lowerings take over -*- C++ -*-===//
//
// The router product of every layer reaches the backends as an f32
// linalg.matmul on 2-D tensors; the CPU runtime lowering and the parallel
// loops both replace exactly those (anything else keeps linalg's own
// lowering).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_UTILS_ROUTERMATMUL_H
#define MOE_DIALECT_MOE_UTILS_ROUTERMATMUL_H

#include "mlir/Dialect/Linalg/IR/Linalg.h"

namespace mlir::moe {

/// Whether `op` is a plain f32 matmul of 2-D tensors (no user maps).
inline bool isF32TensorMatmul(linalg::MatmulOp op) {
  if (!op.hasPureTensorSemantics() || op.hasUserDefinedMaps())
    return false;
  for (Value v : {op.getInputs()[0], op.getInputs()[1], op.getOutputs()[0]}) {
    auto type = dyn_cast<RankedTensorType>(v.getType());
    if (!type || type.getRank() != 2 || !type.getElementType().isF32())
      return false;
  }
  return true;
}

} // namespace mlir::moe

#endif // MOE_DIALECT_MOE_UTILS_ROUTERMATMUL_H
