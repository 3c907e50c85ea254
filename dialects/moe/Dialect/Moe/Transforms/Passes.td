//===- Passes.td - moe dialect passes --------------------*- tablegen -*-===//
//
// Passes are grouped by purpose and kept alphabetical inside a group.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_TRANSFORMS_PASSES_TD
#define MOE_DIALECT_MOE_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

//===----------------------------------------------------------------------===//
// Decomposition
//===----------------------------------------------------------------------===//

def MoeDecomposePass : Pass<"moe-decompose"> {
  let summary = "Expand moe.layer into route, dispatch, experts and combine";
  let description = [{
    Rewrites every `moe.layer` into the explicit steps of the block:

    1. router logits `x @ router (+ router_bias)` as `linalg.matmul`;
    2. `moe.route` with the layer's routing (and selection bias);
    3. `moe.dispatch`, ragged when the layer has no capacity, padded-capacity
       otherwise;
    4. `moe.experts` whose body is the expert FFN (`ffn` attribute: MLP or GLU,
       activation, fused gate/up, biases, weight layout) on tensors;
    5. `moe.combine` (with the input as pass-through when dropped tokens pass
       through);
    6. shared experts as always-on experts: every token is routed to each of
       them with weight 1 (or `sigmoid(x shared_gate)`), then dispatched,
       computed and combined the same way, and added to the routed output.

    Before:

    ```mlir
    %y = moe.layer %x : tensor<?x64xf32> router(%wg : tensor<64x4xf32>)
           w1(%w1 : tensor<4x64x128xf32>) w3(%w3 : tensor<4x64x128xf32>)
           w2(%w2 : tensor<4x128x64xf32>)
           {ffn = #moe.ffn<>, routing = #moe.routing<k = 2, normalize = selected>}
           -> tensor<?x64xf32>
    ```

    After (abridged):

    ```mlir
    %logits = linalg.matmul ins(%x, %wg : ...) outs(%zero : tensor<?x4xf32>)
    %w, %e = moe.route %logits {routing = #moe.routing<k = 2, normalize = selected>}
    %d, %rows, %counts, %slots, %cw = moe.dispatch %x, %w, %e : ...
    %o = moe.experts %d, %counts weights(%w1, %w3, %w2 : ...) ... { ... }
    %y = moe.combine %o, %slots, %cw : ... -> tensor<?x64xf32>
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::moe::MoeDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

//===----------------------------------------------------------------------===//
// Model-library preparation
//===----------------------------------------------------------------------===//

def MoeExportEntryPointsPass : Pass<"moe-export-entry-points", "::mlir::ModuleOp"> {
  let summary = "Check and mark the public functions a model library exports";
  let description = [{
    Every public `func.func` with a body becomes an entry point of the model
    library: it gets `llvm.emit_c_interface` (so `_mlir_ciface_<name>` takes
    memref descriptors) and its signature is checked: arguments and results
    must be ranked tensors of f32, f16, bf16, i32 or i64 whose non-leading
    dimensions are static (the leading dimension, the token count, may be
    dynamic). Anything else is rejected with the offending argument named.
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

#endif // MOE_DIALECT_MOE_TRANSFORMS_PASSES_TD
