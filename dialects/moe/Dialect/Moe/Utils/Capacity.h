//===- Capacity.h - The capacity formula in IR -------------------*- C++ -*-===//
//
// Lowerings of padded dispatch need the per-expert capacity C of a dynamic
// token count at run time; this emits it with the arithmetic (and operation
// order) of CapacityAttr::computeCapacity, so compile-time and run-time
// capacities agree bit for bit.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_UTILS_CAPACITY_H
#define MOE_DIALECT_MOE_UTILS_CAPACITY_H

#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/Builders.h"

namespace mlir::moe {

/// Capacity of a padded dispatch for a dynamic token count, computed in the
/// IR with the same arithmetic (and operation order) as computeCapacity.
inline Value emitCapacity(OpBuilder &b, Location loc, CapacityAttr cap, Value tokens,
                   int64_t k, int64_t numExperts) {
  Type f64 = b.getF64Type();
  Type i64 = b.getI64Type();
  auto cf = [&](double v) {
    return arith::ConstantFloatOp::create(b, loc, cast<FloatType>(f64),
                                          llvm::APFloat(v));
  };
  auto ci = [&](int64_t v) { return arith::ConstantIntOp::create(b, loc, v, 64); };
  Value t = arith::IndexCastOp::create(b, loc, i64, tokens);
  Value c;
  switch (cap.getFormula()) {
  case CapacityFormula::Fixed:
    c = ci(cap.getFixed());
    break;
  case CapacityFormula::GShard: {
    Value x = arith::MulFOp::create(b, loc, cf(cap.getFactor()),
                                    arith::SIToFPOp::create(b, loc, f64, t));
    x = arith::MulFOp::create(b, loc, x, cf(double(k)));
    x = arith::DivFOp::create(b, loc, x, cf(double(numExperts)));
    c = arith::FPToSIOp::create(b, loc, i64, math::CeilOp::create(b, loc, x));
    break;
  }
  case CapacityFormula::Tutel: {
    Value perExpert = arith::CeilDivSIOp::create(b, loc, t, ci(numExperts));
    Value x = arith::MulFOp::create(b, loc, cf(cap.getFactor()),
                                    arith::SIToFPOp::create(b, loc, f64, perExpert));
    x = math::FloorOp::create(b, loc, x);
    x = arith::MulFOp::create(b, loc, cf(double(k)), x);
    c = arith::FPToSIOp::create(b, loc, i64, x);
    break;
  }
  }
  c = arith::MaxSIOp::create(b, loc, c, ci(cap.getMinCapacity()));
  Value align = ci(cap.getAlign());
  c = arith::MulIOp::create(b, loc,
                            arith::CeilDivSIOp::create(b, loc, c, align), align);
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), c);
}

} // namespace mlir::moe

#endif // MOE_DIALECT_MOE_UTILS_CAPACITY_H
