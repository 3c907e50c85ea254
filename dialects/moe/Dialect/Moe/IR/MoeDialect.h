//===- MoeDialect.h - moe dialect, enums and attributes ----------*- C++ -*-===//
//
// The `moe` dialect class, its enumerations and attributes.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_IR_MOEDIALECT_H
#define MOE_DIALECT_MOE_IR_MOEDIALECT_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/DialectImplementation.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/Hashing.h"
#include "llvm/ADT/bit.h"

#include "moe/Dialect/Moe/IR/MoeOpsDialect.h.inc"

#include "moe/Dialect/Moe/IR/MoeEnums.h.inc"

namespace mlir::moe {
/// A double-valued attribute parameter. It exists because attribute storage
/// must be hashable and llvm::hash_value has no overload for double; it
/// converts implicitly to double everywhere else.
struct Real {
  double value = 0.0;
  operator double() const { return value; }
  bool operator==(const Real &other) const {
    return llvm::bit_cast<uint64_t>(value) ==
           llvm::bit_cast<uint64_t>(other.value);
  }
  friend llvm::hash_code hash_value(const Real &r) {
    return llvm::hash_value(llvm::bit_cast<uint64_t>(r.value));
  }
};
} // namespace mlir::moe

namespace mlir::moe::detail {
/// Prints a double in its shortest form that parses back to the same value.
void printDouble(AsmPrinter &printer, double value);
/// Parses a float (or integer) literal as a double.
FailureOr<Real> parseDouble(AsmParser &parser);
} // namespace mlir::moe::detail

#define GET_ATTRDEF_CLASSES
#include "moe/Dialect/Moe/IR/MoeAttrs.h.inc"

#endif // MOE_DIALECT_MOE_IR_MOEDIALECT_H
