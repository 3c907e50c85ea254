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
// Expert fusion
//===----------------------------------------------------------------------===//

def MoeFuseExpertsPass : Pass<"moe-fuse-experts"> {
  let summary = "Fuse token gather and the expert FFN into moe.expert_ffn";
  let description = [{
    Horizontal fusion first: a per-expert loop as a frontend traces it (an
    `scf.for` over the E experts that slices each expert's ragged segment
    `[offset, offset + count)` and its weights `W[e]`, computes, and inserts
    the rows into a zero-filled accumulator) becomes one `moe.experts` over
    the stacked weights. Padded-layout loops are not raised yet.

    Then vertical fusion: a `moe.experts` whose body is a standard FFN form
    (as built by `moe-decompose`, or inferred for raised and foreign bodies
    by trying the forms its weights allow; verified structurally after
    canonicalisation) and whose segments come from a `moe.dispatch` becomes
    `moe.expert_ffn`:

    * the token gather is fused into the first product's operand loads (the
      op reads `input[row_token[r]]`; the dispatch then no longer copies rows
      once its `dispatched` result is dead);
    * the activation (and GLU product) is fused between the two products,
      and no `[rows, F]` intermediate is materialised (the CPU kernel works
      on row x F tiles).

    Bodies that are not a recognised form are left to the generic loop
    lowering (`convert-moe-to-linalg`).

    Last, shared experts are folded in as always-selected experts
    (`fold-shared-experts`, on by default): where the combined outputs of a
    routed `moe.expert_ffn` and of one routed by column ids (every token to
    each of S shared experts, as `moe-decompose` builds it) are added, and
    both have the same FFN form and per-expert shapes, the pair becomes one
    routing of K + S slots per token (slot K + s names expert E + s with the
    shared weight), one `moe.dispatch`, one `moe.expert_ffn` with
    `shared_w1`/`shared_w3`/`shared_w2` operands and one `moe.combine`. The
    slots are summed routed first, then shared, so the result differs from
    the unfolded one only in the rounding of that last addition.

    Finally the combine is fused in (`fuse-combine`, on by default): a
    `moe.combine` without passthrough that is the only reader of a
    `moe.expert_ffn`'s rows becomes that op's `combine(token_slot, weights)`
    operands, and the op yields the `[T, D]` output. No `[T * K, D]` tensor
    of expert rows remains in the program; the CPU kernel keeps the rows in
    a workspace of its own and sums each token's gate-weighted rows in slot
    order (the bits of `moe.combine`) once they are computed.

    ```mlir
    %d, %rows, %counts, %slots, %cw = moe.dispatch %x, %w, %e : ...
    %o = moe.experts %d, %counts weights(%w1, %w3, %w2 : ...) ... { <SwiGLU> }
    // becomes
    %o = moe.expert_ffn %x, %rows, %counts : ... w1(%w1 : ...) w3(%w3 : ...)
           w2(%w2 : ...) {ffn = #moe.ffn<>} -> tensor<?x64xf32>
    ```
  }];
  let options = [
    Option<"foldShared", "fold-shared-experts", "bool", /*default=*/"true",
           "Fold shared experts into the routed experts' call as "
           "always-selected experts">,
    Option<"fuseCombine", "fuse-combine", "bool", /*default=*/"true",
           "Fuse the gate-weighted combine into moe.expert_ffn">
  ];
  // Raising creates moe.experts in modules that may hold no moe op yet.
  let dependentDialects = ["::mlir::moe::MoeDialect"];
}

//===----------------------------------------------------------------------===//
// Expert skipping
//===----------------------------------------------------------------------===//

def MoeSkipExpertsPass : Pass<"moe-skip-experts"> {
  let summary = "Skip (token, expert) pairs whose gate weight is too small";
  let description = [{
    Dynamic expert skipping: a selected expert whose gate probability `p` is
    below a threshold is not run for that token. The pair becomes an unused
    routing slot (expert -1, weight 0), which dispatch ignores, so it costs
    no FLOPs; with `normalize = selected` the kept weights are renormalised.

    * `threshold=tau`: skip when `p < tau` (gate-weight threshold);
    * `layer-importance=a0,a1,...`: MoDES-style per-layer thresholds, one
      importance `a_l > 0` per routing op (`moe.layer` or `moe.route`) in
      program order: skip when `a_l * p < tau`, i.e. the layer's threshold
      is `min(1, tau / a_l)`.

    The pass writes the threshold into each op's `#moe.routing` (field
    `threshold`, see docs/Semantics.md 1.3). Policies whose slots are not
    ranked by score (sinkhorn, expert_choice, sparse_mixer) cannot skip and
    are reported as errors.

    ```mlir
    // moe-opt -moe-skip-experts="threshold=0.1"
    #moe.routing<k = 2, normalize = selected>
    // becomes
    #moe.routing<k = 2, normalize = selected, threshold = 0.1>
    ```
  }];
  let options = [
    Option<"threshold", "threshold", "double", "0.0",
           "Skip a selected expert when importance * p < threshold">,
    ListOption<"layerImportance", "layer-importance", "double",
               "Per-layer importance (MoDES), one per routing op in program order">
  ];
}

//===----------------------------------------------------------------------===//
// Static pruning
//===----------------------------------------------------------------------===//

def MoePruneExpertsPass : Pass<"moe-prune-experts", "::mlir::ModuleOp"> {
  let summary = "Remove the least important experts using a calibration profile";
  let description = [{
    Static pruning (UNCURL / EASY-EP style): reads the routing statistics a
    calibration run wrote (`moe-run --stats profile.json`: per layer,
    `tokens_per_expert`, `gate_mass` and `importance`), ranks each
    `moe.layer`'s experts by `metric` (`gate_mass`, the default;
    `frequency`; or `importance`, the output-norm-weighted gate mass of
    EASY-EP), keeps the best
    `keep` experts (or `keep-fraction` of them) and removes the others:

    * the stacked weights (`w1`, `w3`, `w2`, `b1`, `b2`) lose the pruned
      experts, the router (and its biases) loses their columns; null-expert
      columns are kept; kept experts stay in their original order, so the
      router columns are re-indexed consistently with the weights;
    * the weights must be entry-point arguments used by that layer only: the
      entry point's signature shrinks, and every changed argument records
      what was kept (`moe.prune_dim`, `moe.prune_keep`), from which
      `python3 -m moe_frontend.prune_weights` writes the matching
      .safetensors.

    Profile layers are matched to `moe.layer` ops in program order (a layer
    with shared experts has a second profile entry, its always-on dispatch).
  }];
  let options = [
    Option<"profile", "profile", "std::string", "",
           "Routing statistics JSON written by moe-run --stats">,
    Option<"keep", "keep", "int64_t", "0",
           "Experts to keep per layer (0: use keep-fraction)">,
    Option<"keepFraction", "keep-fraction", "double", "0.5",
           "Fraction of the experts to keep per layer">,
    Option<"metric", "metric", "std::string", "\"gate_mass\"",
           "Ranking: gate_mass, frequency or importance">
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
    Arguments are marked `bufferization.writable = false`: compiled code
    never writes into caller buffers (weights may be mapped read-only).
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

def MoeExpandDeviceMathPass : Pass<"moe-expand-device-math", "::mlir::gpu::GPUModuleOp"> {
  let summary = "Rewrite math ops in GPU kernels into native instructions of the target";
  let description = [{
    `convert-gpu-to-nvvm` and `convert-gpu-to-rocdl` turn `math` ops into
    calls of the vendor device libraries (libdevice's `__nv_expf`, ocml's
    `__ocml_rsqrt_f32`, ...), which `gpu-module-to-binary` can only resolve
    where a CUDA or ROCm installation is found at compile time, and they
    reject the LLVM intrinsics instead. This pass expands the math ops the
    moe lowerings produce into arithmetic around four hardware instructions
    of the target, emitted as single-instruction inline assembly (as Triton
    does): `exp2`, `log2`, `sqrt`, `floor` (NVIDIA `ex2.approx.ftz.f32`,
    `lg2.approx.ftz.f32`, `sqrt.rn.f32`, `cvt.rmi.f32.f32`; AMD
    `v_exp_f32`, `v_log_f32`, `v_sqrt_f32`, `v_floor_f32`). Model
    libraries therefore build without any GPU toolkit.

    * `exp(x) = exp2(x * log2(e))`, `log(x) = log2(x) * ln(2)`;
    * `rsqrt(x) = 1 / sqrt(x)`, `ceil(x) = -floor(-x)`;
    * `tanh(x) = 1 - 2 / (exp(2x) + 1)` (saturates to +-1);
    * `erf(x) = sign(x) (1 - erfc(|x|))` with the erfc polynomial of the
      CPU kernels (relative error < 1.2e-7);
    * `powf(x, y) = exp2(y * log2(x))`; `absf`, `fma` in arithmetic.

    f16 and bf16 operands are widened to f32 and the result narrowed back.
    A math op without an expansion is an error naming the op.
  }];
  let options = [
    Option<"target", "target", "std::string", /*default=*/"\"nvvm\"",
           "Instruction set of the kernels: nvvm or rocdl">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::LLVM::LLVMDialect"
  ];
}

#endif // MOE_DIALECT_MOE_TRANSFORMS_PASSES_TD
