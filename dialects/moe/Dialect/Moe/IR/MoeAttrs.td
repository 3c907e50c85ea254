//===- MoeAttrs.td - moe dialect attributes --------------*- tablegen -*-===//
//
// Routing, capacity and expert-FFN descriptions. Each is a struct-like
// attribute whose optional fields may be omitted (they print only when they
// differ from the default), so `#moe.routing<policy = top_k, k = 2>` is a
// complete Mixtral router description.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_IR_MOEATTRS_TD
#define MOE_DIALECT_MOE_IR_MOEATTRS_TD

include "moe/Dialect/Moe/IR/MoeBase.td"
include "moe/Dialect/Moe/IR/MoeEnums.td"

// A double that prints in its shortest round-tripping form ("1.25", not
// "1.250000e+00") and parses any float literal.
class Moe_DoubleParameter<string desc, string default>
    : DefaultValuedParameter<"::mlir::moe::Real", "::mlir::moe::Real{" # default # "}", desc> {
  let printer = "::mlir::moe::detail::printDouble($_printer, $_self)";
  let parser = "::mlir::moe::detail::parseDouble($_parser)";
}

class Moe_IntParameter<string desc, string default>
    : DefaultValuedParameter<"int64_t", default, desc>;

def Moe_RoutingAttr : Moe_Attr<"Routing", "routing"> {
  let summary = "How router logits become per-token expert choices and weights";
  let description = [{
    Describes the routing function of a `moe.route` (and `moe.layer`). Fields:

    | field | default | meaning |
    |---|---|---|
    | `policy` | `top_k` | `top_k`, `top_p`, `grouped_top_k`, `sinkhorn`, `expert_choice`, `threshold`, `sparse_mixer` |
    | `k` | required | experts per token (the maximum for dynamic-count policies); the second dimension of the routing results |
    | `score` | `softmax` | `softmax` over all router columns, `sigmoid` per column, `softmax_selected` (softmax over the k selected logits only), `identity` (logits are already scores) |
    | `normalize` | `none` | `selected`: divide the k selected weights by their sum (+ `epsilon`) before any capacity dropping |
    | `tie_break` | `lower_index` | which expert wins among equal scores |
    | `scaling` | `1.0` | routed scaling factor applied to the final weights (DeepSeek-V3: 2.5) |
    | `top_p` | `1.0` | `top_p`: keep the smallest prefix (by descending score) whose mass reaches this value, at most `k` experts |
    | `threshold` | `0.0` | `threshold` policy, and skipping for `top_k` / `top_p` / `grouped_top_k` when positive: keep selected experts whose score is at least this value |
    | `num_groups` / `top_groups` / `group_score_k` | `1` / `1` / `2` | `grouped_top_k`: split experts into `num_groups` groups, score each group by the sum of its `group_score_k` best (bias-corrected) scores, keep the best `top_groups` groups |
    | `mask_with_zero` | `false` | `grouped_top_k`: masked groups get score 0.0 instead of -inf |
    | `null_experts` | `0` | the last `null_experts` router columns are null experts: selectable, contribute nothing, cost nothing |
    | `sinkhorn_iterations` | `3` | `sinkhorn`: number of row/column normalisation rounds |
    | `capacity_factor` | `1.0` | `expert_choice`: each expert picks `ceil(capacity_factor * T * k / E)` tokens |
    | `jitter_eps` | `0.01` | `sparse_mixer`: masking tolerance |
    | `epsilon` | `0.0` | added to the denominator of `normalize = selected` (DeepSeek-V3: 1e-20) |
  }];
  let parameters = (ins
    DefaultValuedParameter<"::mlir::moe::RoutingPolicy",
        "::mlir::moe::RoutingPolicy::TopK", "selection policy">:$policy,
    "int64_t":$k,
    DefaultValuedParameter<"::mlir::moe::ScoreFunction",
        "::mlir::moe::ScoreFunction::Softmax", "score function">:$score,
    DefaultValuedParameter<"::mlir::moe::Normalization",
        "::mlir::moe::Normalization::None", "renormalisation">:$normalize,
    DefaultValuedParameter<"::mlir::moe::TieBreak",
        "::mlir::moe::TieBreak::LowerIndex", "tie order">:$tie_break,
    Moe_DoubleParameter<"routed scaling factor", "1.0">:$scaling,
    Moe_DoubleParameter<"top-p mass", "1.0">:$top_p,
    Moe_DoubleParameter<"score threshold", "0.0">:$threshold,
    Moe_IntParameter<"number of expert groups", "1">:$num_groups,
    Moe_IntParameter<"groups kept", "1">:$top_groups,
    Moe_IntParameter<"scores summed per group", "2">:$group_score_k,
    DefaultValuedParameter<"bool", "false", "masked groups score 0.0">:$mask_with_zero,
    Moe_IntParameter<"null experts at the end of the router", "0">:$null_experts,
    Moe_IntParameter<"Sinkhorn rounds", "3">:$sinkhorn_iterations,
    Moe_DoubleParameter<"expert-choice capacity factor", "1.0">:$capacity_factor,
    Moe_DoubleParameter<"sparse-mixer jitter", "0.01">:$jitter_eps,
    Moe_DoubleParameter<"normalisation epsilon", "0.0">:$epsilon
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

def Moe_CapacityAttr : Moe_Attr<"Capacity", "capacity"> {
  let summary = "Per-expert capacity and what happens to overflow";
  let description = [{
    Present on `moe.dispatch` / `moe.layer` to select the padded-capacity
    layout. The capacity `C` of every expert, for `T` tokens, `k` choices and
    `E` experts, is:

    * `gshard`: `C = ceil(factor * T * k / E)` (DeepSpeed, GShard);
    * `tutel`: `C = k * floor(factor * ceil(T / E))` (Tutel);
    * `fixed`: `C = fixed` (Switch Transformers' `expert_capacity`);

    then `C = max(C, min_capacity)`, rounded up to a multiple of `align`.

    (token, choice) pairs claim slots in `order`: `position` (token order,
    choices of a token in rank order), `choice_major` (every token's first
    choice, then every token's second choice, ...), `score` (descending gate
    weight, ties by position). A pair that finds its expert full is dropped:
    with `on_drop = zero` it contributes nothing, with `pass_through` the token
    itself, scaled by the gate weight, takes the expert output's place
    (Switch). `renormalize = true` renormalises each token's kept weights to
    sum 1 after dropping (GShard / DeepSpeed).
  }];
  let parameters = (ins
    Moe_DoubleParameter<"capacity factor", "1.0">:$factor,
    DefaultValuedParameter<"::mlir::moe::CapacityFormula",
        "::mlir::moe::CapacityFormula::GShard", "capacity formula">:$formula,
    Moe_IntParameter<"capacity for formula = fixed", "0">:$fixed,
    Moe_IntParameter<"lower bound on the capacity", "0">:$min_capacity,
    Moe_IntParameter<"capacity rounded up to a multiple of this", "1">:$align,
    DefaultValuedParameter<"::mlir::moe::QueueOrder",
        "::mlir::moe::QueueOrder::Position", "queue order">:$order,
    DefaultValuedParameter<"::mlir::moe::DropPolicy",
        "::mlir::moe::DropPolicy::Zero", "dropped pairs">:$on_drop,
    DefaultValuedParameter<"bool", "false", "renormalise after dropping">:$renormalize
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Capacity per expert for `numTokens` tokens, `k` choices, `numExperts`
    /// experts, following the formula above.
    int64_t computeCapacity(int64_t numTokens, int64_t k, int64_t numExperts) const;
  }];
}

def Moe_FFNAttr : Moe_Attr<"FFN", "ffn"> {
  let summary = "The feed-forward form of every expert";
  let description = [{
    * `kind = mlp`: `y = act(x W1 + b1) W2 + b2`.
    * `kind = glu`: `y = (act(x Wg + bg) * (x Wu + bu + up_shift)) W2 + b2`,
      where with `gate_up = separate` `Wg = W1`, `Wu = W3`; with
      `concatenated` W1 is `[D, 2F]` holding gate columns `[0, F)` then up
      columns `[F, 2F)`; with `interleaved` gate columns are even, up columns
      odd.
    * `alpha` scales the activation's argument: `silu(x) = x * sigmoid(alpha * x)`
      (GPT-OSS SwiGLU: 1.702).
    * `limit > 0` clamps the gate pre-activation to `(-inf, limit]` and the up
      projection to `[-limit, limit]` (GPT-OSS).
    * `layout = in_out` stores W1 as `[E, D, F]`, W2 as `[E, F, D]`;
      `out_in` stores each matrix transposed (`nn.Linear`, ONNX Runtime).
  }];
  let parameters = (ins
    DefaultValuedParameter<"::mlir::moe::FFNKind",
        "::mlir::moe::FFNKind::GLU", "FFN form">:$kind,
    DefaultValuedParameter<"::mlir::moe::Activation",
        "::mlir::moe::Activation::SiLU", "activation">:$activation,
    DefaultValuedParameter<"::mlir::moe::GateUpLayout",
        "::mlir::moe::GateUpLayout::Separate", "gate/up storage">:$gate_up,
    DefaultValuedParameter<"::mlir::moe::WeightLayout",
        "::mlir::moe::WeightLayout::InOut", "matrix orientation">:$layout,
    Moe_DoubleParameter<"activation input scale", "1.0">:$alpha,
    Moe_DoubleParameter<"added to the up projection", "0.0">:$up_shift,
    Moe_DoubleParameter<"clamp limit (0 = none)", "0.0">:$limit
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

#endif // MOE_DIALECT_MOE_IR_MOEATTRS_TD
