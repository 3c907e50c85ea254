//===- MoeBase.td - moe dialect definition and shared constraints -*- tablegen -*-===//
//
// The `moe` dialect models sparse Mixture-of-Experts blocks with value
// semantics on builtin tensors: routing, dispatch, expert computation,
// combine, collectives and statistics.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_IR_MOEBASE_TD
#define MOE_DIALECT_MOE_IR_MOEBASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"

def Moe_Dialect : Dialect {
  let name = "moe";
  let cppNamespace = "::mlir::moe";
  let summary = "Sparse Mixture-of-Experts routing, dispatch, experts and combine";
  let description = [{
    The `moe` dialect describes a sparse Mixture-of-Experts (MoE) block at the
    level a model author thinks of it, and the steps it decomposes into:

    * `moe.layer`: a whole MoE block (router, stacked experts, optional shared
      experts) as a frontend emits it;
    * `moe.route`: router logits to per-token expert choices and gate weights;
    * `moe.dispatch`: tokens to per-expert segments (ragged or padded-capacity);
    * `moe.experts` / `moe.grouped_matmul`: the expert computation;
    * `moe.combine`: gate-weighted scatter back to token order;
    * collectives over a `moe.device_group` and per-expert statistics.

    All ops have value semantics on builtin ranked tensors. The token count `T`
    may be dynamic; expert counts, model and FFN widths are static. The exact
    semantics of every op and attribute (tie order in top-k, what unused and
    dropped slots hold) are given in `docs/Semantics.md`.
  }];
  let useDefaultAttributePrinterParser = 1;
  let extraClassDeclaration = [{
    /// Adds the attribute classes; defined where their storage is complete.
    void registerAttributes();
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

class Moe_Op<string mnemonic, list<Trait> traits = []>
    : Op<Moe_Dialect, mnemonic, traits>;

class Moe_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Moe_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

// Element types a MoE computation may carry: activations and weights are
// f32, f16 or bf16 (accumulation is always f32 in the lowerings).
def Moe_Float : AnyTypeOf<[F32, F16, BF16]>;
def Moe_FloatTensor : RankedTensorOf<[F32, F16, BF16]>;
def Moe_IndexTensor : RankedTensorOf<[I32]>;

#endif // MOE_DIALECT_MOE_IR_MOEBASE_TD
