//===- TensorBuilder.h - Tensor-level IR building helpers --------*- C++ -*-===//
//
// Small builders for the tensor IR the moe passes emit (filled tensors,
// f32-accumulating matmuls, element-wise maps). Dynamic sizes are always
// taken from existing values, so the token count stays dynamic.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_UTILS_TENSORBUILDER_H
#define MOE_DIALECT_MOE_UTILS_TENSORBUILDER_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"

namespace mlir::moe {

/// Tensor-level building blocks shared by the router, the expert body and the
/// shared-expert path. Every helper takes dynamic sizes from an existing value
/// so the token count stays dynamic.
class TensorBuilder {
public:
  TensorBuilder(OpBuilder &b, Location loc) : b(b), loc(loc) {}

  OpFoldResult dim(Value v, int64_t i) {
    auto t = cast<RankedTensorType>(v.getType());
    if (!t.isDynamicDim(i))
      return b.getIndexAttr(t.getDimSize(i));
    return tensor::DimOp::create(b, loc, v, i).getResult();
  }

  /// A tensor of the given mixed sizes filled with `value`.
  Value filled(ArrayRef<OpFoldResult> sizes, TypedAttr value) {
    Value empty = tensor::EmptyOp::create(b, loc, sizes, value.getType());
    Value scalar = arith::ConstantOp::create(b, loc, value);
    return linalg::FillOp::create(b, loc, scalar, empty).getResult(0);
  }

  Value zeros(ArrayRef<OpFoldResult> sizes, Type elemType) {
    return filled(sizes, cast<TypedAttr>(b.getZeroAttr(elemType)));
  }

  Value empty(ArrayRef<OpFoldResult> sizes, Type elemType) {
    return tensor::EmptyOp::create(b, loc, sizes, elemType);
  }

  Value toF32(Value scalar) {
    if (scalar.getType().isF32())
      return scalar;
    return arith::ExtFOp::create(b, loc, b.getF32Type(), scalar);
  }

  /// Converts an f32 `[M, N]` tensor to `elemType` (no-op for f32).
  Value truncTo(Value t, Type elemType) {
    if (elemType.isF32())
      return t;
    auto type = cast<RankedTensorType>(t.getType());
    return map2d(ValueRange{t}, {}, elemType,
                 {dim(t, 0), b.getIndexAttr(type.getDimSize(1))},
                 [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
                   return arith::TruncFOp::create(nb, nl, elemType, a[0]);
                 });
  }

  Value f32(double v) {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v));
  }

  /// `lhs [M, K] @ rhs` into f32 `[M, N]`; `rhs` is `[K, N]`, or `[N, K]`
  /// when `transposeRhs`.
  Value matmul(Value lhs, Value rhs, bool transposeRhs) {
    auto rhsType = cast<RankedTensorType>(rhs.getType());
    int64_t n = rhsType.getDimSize(transposeRhs ? 0 : 1);
    Value init = zeros({dim(lhs, 0), b.getIndexAttr(n)}, b.getF32Type());
    if (!transposeRhs)
      return linalg::MatmulOp::create(b, loc, TypeRange{init.getType()},
                                      ValueRange{lhs, rhs}, ValueRange{init})
          .getResult(0);
    MLIRContext *ctx = b.getContext();
    AffineExpr m, nn, k;
    bindDims(ctx, m, nn, k);
    auto maps = {AffineMap::get(3, 0, {m, k}, ctx),
                 AffineMap::get(3, 0, {nn, k}, ctx),
                 AffineMap::get(3, 0, {m, nn}, ctx)};
    SmallVector<utils::IteratorType> iters = {utils::IteratorType::parallel,
                                              utils::IteratorType::parallel,
                                              utils::IteratorType::reduction};
    return linalg::GenericOp::create(
               b, loc, TypeRange{init.getType()}, ValueRange{lhs, rhs},
               ValueRange{init}, SmallVector<AffineMap>(maps), iters,
               [&](OpBuilder &nb, Location nl, ValueRange args) {
                 TensorBuilder tb(nb, nl);
                 Value prod = arith::MulFOp::create(nb, nl, tb.toF32(args[0]),
                                                    tb.toF32(args[1]));
                 Value sum = arith::AddFOp::create(nb, nl, args[2], prod);
                 linalg::YieldOp::create(nb, nl, sum);
               })
        .getResult(0);
  }

  /// An element-wise map over `[M, N]` operands producing `[M, N]` of
  /// `elemType`. `broadcastRows` operands are `[N]` vectors broadcast over
  /// rows; `broadcastCols` operands are `[M, 1]` columns broadcast over N.
  Value map2d(ValueRange full, ValueRange broadcastRows, Type elemType,
              ArrayRef<OpFoldResult> sizes,
              function_ref<Value(OpBuilder &, Location, ValueRange)> fn,
              ValueRange broadcastCols = {}) {
    MLIRContext *ctx = b.getContext();
    AffineExpr i, j;
    bindDims(ctx, i, j);
    SmallVector<AffineMap> maps;
    SmallVector<Value> inputs;
    for (Value v : full) {
      maps.push_back(AffineMap::get(2, 0, {i, j}, ctx));
      inputs.push_back(v);
    }
    for (Value v : broadcastRows) {
      maps.push_back(AffineMap::get(2, 0, {j}, ctx));
      inputs.push_back(v);
    }
    for (Value v : broadcastCols) {
      maps.push_back(AffineMap::get(2, 0, {i, getAffineConstantExpr(0, ctx)}, ctx));
      inputs.push_back(v);
    }
    maps.push_back(AffineMap::get(2, 0, {i, j}, ctx));
    Value init = empty(sizes, elemType);
    SmallVector<utils::IteratorType> iters(2, utils::IteratorType::parallel);
    return linalg::GenericOp::create(
               b, loc, TypeRange{init.getType()}, inputs, ValueRange{init},
               maps, iters,
               [&](OpBuilder &nb, Location nl, ValueRange args) {
                 Value r = fn(nb, nl, args.drop_back());
                 linalg::YieldOp::create(nb, nl, r);
               })
        .getResult(0);
  }

  OpBuilder &b;
  Location loc;
};

} // namespace mlir::moe

#endif // MOE_DIALECT_MOE_UTILS_TENSORBUILDER_H
