//===- MoeOps.h - moe dialect operations -------------------------*- C++ -*-===//

#ifndef MOE_DIALECT_MOE_IR_MOEOPS_H
#define MOE_DIALECT_MOE_IR_MOEOPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/ControlFlowInterfaces.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "moe/Dialect/Moe/IR/MoeDialect.h"

#define GET_OP_CLASSES
#include "moe/Dialect/Moe/IR/MoeOps.h.inc"

namespace mlir::moe {
/// Discardable i64 attribute moe-fuse-experts puts on a moe.dispatch into
/// which it folded shared experts: their number S (the last S slots and
/// experts). Results do not depend on it; the routing statistics use it to
/// report the routed and the shared slots as two dispatches.
inline constexpr llvm::StringLiteral kDispatchSharedExpertsAttr =
    "moe.shared_experts";
} // namespace mlir::moe

#endif // MOE_DIALECT_MOE_IR_MOEOPS_H
