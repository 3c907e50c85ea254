//===- BufferBridge.h - Tensors in and out of hand-built buffer code -*- C++ -*-===//
//
// The lowerings that emit buffer-level code for tensor ops (runtime kernel
// calls, parallel loops) all cross the tensor/buffer boundary the same way,
// so that one-shot bufferization composes with the rest of the function:
// operands enter as read-only `bufferization.to_buffer` views with fully
// dynamic strides (whatever layout bufferization picks), results leave as
// fresh identity-layout buffers wrapped by `bufferization.to_tensor restrict
// writable`.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_UTILS_BUFFERBRIDGE_H
#define MOE_DIALECT_MOE_UTILS_BUFFERBRIDGE_H

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/Builders.h"

namespace mlir::moe {

/// A read-only view of the tensor operand `tensor` (any strides).
inline Value readOnlyBuffer(OpBuilder &b, Location loc, Value tensor) {
  auto type = cast<RankedTensorType>(tensor.getType());
  SmallVector<int64_t> dynStrides(type.getRank(), ShapedType::kDynamic);
  auto memrefType = MemRefType::get(
      type.getShape(), type.getElementType(),
      StridedLayoutAttr::get(b.getContext(), ShapedType::kDynamic, dynStrides));
  return bufferization::ToBufferOp::create(b, loc, memrefType, tensor,
                                           /*read_only=*/true);
}

/// A fresh identity-layout buffer of `shape` x `elem`; `dynSizes` for the
/// `?` dimensions in order.
inline Value allocBuffer(OpBuilder &b, Location loc, ArrayRef<int64_t> shape,
                         Type elem, ValueRange dynSizes) {
  return memref::AllocOp::create(b, loc, MemRefType::get(shape, elem),
                                 dynSizes);
}

/// `buffer` (freshly allocated and fully written) as a tensor result.
inline Value bufferResult(OpBuilder &b, Location loc, Value buffer,
                          Type tensorType) {
  return bufferization::ToTensorOp::create(b, loc, tensorType, buffer,
                                           b.getUnitAttr(), b.getUnitAttr());
}

} // namespace mlir::moe

#endif // MOE_DIALECT_MOE_UTILS_BUFFERBRIDGE_H
