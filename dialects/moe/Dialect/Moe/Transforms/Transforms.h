//===- Transforms.h - moe rewrites as reusable functions ---------*- C++ -*-===//
//
// The logic of the moe passes as free functions and pattern populators, so
// pipelines, other passes and (later) transform ops can reuse it.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_TRANSFORMS_TRANSFORMS_H
#define MOE_DIALECT_MOE_TRANSFORMS_TRANSFORMS_H

#include "mlir/IR/PatternMatch.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"

namespace mlir::moe {

/// The stacked weights of one group of experts (routed or shared), in the
/// order they become operands of moe.experts: w1, [w3], [b1], w2, [b2].
struct StackedFFN {
  Value w1, w3, w2, b1, b2;
  SmallVector<Value> operands() const {
    SmallVector<Value> ops = {w1};
    for (Value v : {w3, b1, w2, b2})
      if (v)
        ops.push_back(v);
    return ops;
  }
  /// The role of each operand, as recorded on moe.experts.
  ArrayAttr rolesAttr(Builder &b) const {
    SmallVector<Attribute> roles = {b.getStringAttr("w1")};
    for (auto [v, name] : {std::pair<Value, StringRef>{w3, "w3"},
                           {b1, "b1"}, {w2, "w2"}, {b2, "b2"}})
      if (v)
        roles.push_back(b.getStringAttr(name));
    return b.getArrayAttr(roles);
  }
};

/// Discardable attributes moe-decompose puts on the moe.experts ops it
/// builds: the #moe.ffn form of the body and the role of each weight.
inline constexpr llvm::StringLiteral kExpertsFFNFormAttr = "moe.ffn_form";
inline constexpr llvm::StringLiteral kExpertsFFNRolesAttr = "moe.ffn_operands";

/// Creates the body of `expertsOp` (which must have no body yet and the
/// operands of `weights`) computing the FFN described by `ffn`.
void buildExpertFFNBody(OpBuilder &b, Location loc, ExpertsOp expertsOp,
                        const StackedFFN &weights, FFNAttr ffn);

/// Raises per-expert loops as a frontend traces them (an scf.for over the E
/// experts slicing each expert's ragged segment and weights, computing, and
/// inserting the rows into a zero-filled accumulator) into moe.experts.
/// Returns the number of raised loops.
int64_t raiseExpertLoops(RewriterBase &rewriter, Operation *root);

/// Rewrites moe.experts ops whose body is exactly a standard FFN form and
/// whose segments come from a moe.dispatch into moe.expert_ffn, which reads
/// the tokens through the dispatch's row_token (gather fusion) and keeps the
/// FFN intermediates in tiles (vertical fusion). Returns the number of
/// rewritten ops.
int64_t fuseExperts(RewriterBase &rewriter, Operation *root);

/// Folds shared experts into the routed experts' call as always-selected
/// experts: the sum of two combined moe.expert_ffn results over the same
/// input, one routed by a moe.route and one by column ids (every token to
/// each shared expert, as moe-decompose builds it), with the same FFN form
/// and per-expert shapes, becomes one dispatch of K + S slots per token, one
/// moe.expert_ffn with shared_w* operands and one combine. Returns the
/// number of folded pairs.
int64_t foldSharedExperts(RewriterBase &rewriter, Operation *root);

/// Fuses each moe.combine (without passthrough) of a moe.expert_ffn's rows
/// that nothing else reads into the moe.expert_ffn (its combine operands):
/// the rows then stay inside the op. Returns the number of fused combines.
int64_t fuseCombines(RewriterBase &rewriter, Operation *root);

/// Rewrites `layer` into router matmul, moe.route, moe.dispatch, moe.experts
/// and moe.combine (plus the same for shared experts). Returns the value that
/// replaced the layer's result.
FailureOr<Value> decomposeLayer(RewriterBase &rewriter, LayerOp layer);

/// Adds the pattern form of decomposeLayer.
void populateDecomposeLayerPatterns(RewritePatternSet &patterns);

} // namespace mlir::moe

#endif // MOE_DIALECT_MOE_TRANSFORMS_TRANSFORMS_H
