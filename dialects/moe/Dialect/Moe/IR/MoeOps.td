//===- MoeOps.td - moe dialect operations ----------------*- tablegen -*-===//
//
// Operations of the `moe` dialect. Shapes below use T tokens, D model width,
// F expert FFN width, E routed experts, K routing slots per token, N = T * K
// ragged rows and C per-expert capacity.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_IR_MOEOPS_TD
#define MOE_DIALECT_MOE_IR_MOEOPS_TD

include "moe/Dialect/Moe/IR/MoeBase.td"
include "moe/Dialect/Moe/IR/MoeEnums.td"
include "moe/Dialect/Moe/IR/MoeAttrs.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/IR/RegionKindInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"

//===----------------------------------------------------------------------===//
// moe.layer
//===----------------------------------------------------------------------===//

def Moe_LayerOp : Moe_Op<"layer", [Pure, AttrSizedOperandSegments]> {
  let summary = "A whole Mixture-of-Experts block";
  let description = [{
    The block as a frontend emits it: router, stacked routed experts and
    optional shared experts. `moe-decompose` expands it into `moe.route`,
    `moe.dispatch`, `moe.experts` and `moe.combine`.

    Operands (`E' = E + routing.null_experts`; shapes for `ffn.layout = in_out`,
    every matrix transposed for `out_in`):

    * `input` `[T, D]`;
    * `router` `[D, E']`, optional `router_bias` `[E']` added to the logits,
      optional `selection_bias` `[E']` added to the scores for selection only
      (DeepSeek-V3 `e_score_correction_bias`);
    * `w1` `[E, D, F]` (`[E, D, 2F]` for a fused GLU gate/up), optional `w3`
      `[E, D, F]` (required for a GLU with separate gate/up), `w2` `[E, F, D]`,
      optional biases `b1` `[E, F]` (`[E, 2F]` fused) and `b2` `[E, D]`;
    * shared experts: `shared_w1` `[S, D, Fs]`, optional `shared_w3`, `shared_w2`
      `[S, Fs, D]`, optional `shared_gate` `[D, 1]`. Every token runs every
      shared expert; their summed output is added unweighted, or multiplied by
      `sigmoid(x shared_gate)` when the gate is present (Qwen-MoE).

    Attributes: `routing` (`#moe.routing`), `ffn` (`#moe.ffn`, used by routed
    and shared experts), optional `capacity` (`#moe.capacity`): present selects
    padded-capacity dispatch with dropping, absent is dropless.

    ```mlir
    %y = moe.layer %x : tensor<?x4096xf32>
           router(%wg : tensor<4096x8xf32>)
           w1(%w1 : tensor<8x4096x14336xf32>) w3(%w3 : tensor<8x4096x14336xf32>)
           w2(%w2 : tensor<8x14336x4096xf32>)
           {ffn = #moe.ffn<>, routing = #moe.routing<k = 2, normalize = selected>}
           -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins
    Moe_FloatTensor:$input,
    Moe_FloatTensor:$router,
    Optional<Moe_FloatTensor>:$router_bias,
    Optional<Moe_FloatTensor>:$selection_bias,
    Moe_FloatTensor:$w1,
    Optional<Moe_FloatTensor>:$w3,
    Moe_FloatTensor:$w2,
    Optional<Moe_FloatTensor>:$b1,
    Optional<Moe_FloatTensor>:$b2,
    Optional<Moe_FloatTensor>:$shared_w1,
    Optional<Moe_FloatTensor>:$shared_w3,
    Optional<Moe_FloatTensor>:$shared_w2,
    Optional<Moe_FloatTensor>:$shared_gate,
    Moe_RoutingAttr:$routing,
    Moe_FFNAttr:$ffn,
    OptionalAttr<Moe_CapacityAttr>:$capacity
  );
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $input `:` type($input)
    `router` `(` $router `:` type($router) `)`
    (`router_bias` `(` $router_bias^ `:` type($router_bias) `)`)?
    (`selection_bias` `(` $selection_bias^ `:` type($selection_bias) `)`)?
    `w1` `(` $w1 `:` type($w1) `)`
    (`w3` `(` $w3^ `:` type($w3) `)`)?
    `w2` `(` $w2 `:` type($w2) `)`
    (`b1` `(` $b1^ `:` type($b1) `)`)?
    (`b2` `(` $b2^ `:` type($b2) `)`)?
    (`shared_w1` `(` $shared_w1^ `:` type($shared_w1) `)`)?
    (`shared_w3` `(` $shared_w3^ `:` type($shared_w3) `)`)?
    (`shared_w2` `(` $shared_w2^ `:` type($shared_w2) `)`)?
    (`shared_gate` `(` $shared_gate^ `:` type($shared_gate) `)`)?
    attr-dict `->` type($result)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Number of routed (non-null) experts E.
    int64_t getNumExperts();
    /// Number of router columns E' = E + null experts.
    int64_t getNumRouterColumns();
    /// Expert FFN width F.
    int64_t getFFNWidth();
    /// Model width D.
    int64_t getModelWidth();
    /// Number of shared experts S (0 when there are none).
    int64_t getNumSharedExperts();
  }];
}

//===----------------------------------------------------------------------===//
// moe.route
//===----------------------------------------------------------------------===//

def Moe_RouteOp : Moe_Op<"route", [Pure]> {
  let summary = "Router logits to per-token expert choices and gate weights";
  let description = [{
    Applies the routing function described by `routing` to router logits
    `[T, E']` (E' = E + `routing.null_experts`) and returns, for every token,
    `K = routing.k` slots: `weights` `[T, K]` (float, same type as the logits)
    and `experts` `[T, K]` (i32).

    Slots are in rank order (highest selection score first; equal scores are
    ordered by `routing.tie_break`). A slot holds an expert id in `[0, E)` or
    `-1` when it is unused (dynamic-count policies: `top_p`, `threshold`,
    `expert_choice`) or picked a null expert; every `-1` slot has weight 0.
    Unused slots follow all used slots of a token.

    The optional `selection_bias` `[E']` is added to the scores for the choice
    only: weights come from the uncorrected scores.

    ```mlir
    %w, %e = moe.route %logits {routing = #moe.routing<k = 2, normalize = selected>}
        : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
    ```
  }];
  let arguments = (ins
    Moe_FloatTensor:$logits,
    Optional<Moe_FloatTensor>:$selection_bias,
    Moe_RoutingAttr:$routing
  );
  let results = (outs Moe_FloatTensor:$weights, Moe_IndexTensor:$experts);
  let assemblyFormat = [{
    $logits (`bias` `(` $selection_bias^ `:` type($selection_bias) `)`)?
    attr-dict `:` type($logits) `->` type($weights) `,` type($experts)
  }];
  let hasVerifier = 1;
  let hasCanonicalizer = 1;
  let extraClassDeclaration = [{
    /// Number of real experts E (router columns minus null experts).
    int64_t getNumExperts();
  }];
}

//===----------------------------------------------------------------------===//
// moe.dispatch
//===----------------------------------------------------------------------===//

def Moe_DispatchOp : Moe_Op<"dispatch", [Pure]> {
  let summary = "Tokens to per-expert segments (ragged or padded capacity)";
  let description = [{
    Groups the rows of `input` `[T, D]` by the experts chosen in `experts`
    `[T, K]` (entries in `[0, E)` or `-1`), with gate `weights` `[T, K]`.
    E is the static length of the `counts` result.

    **Ragged layout** (no `capacity`, dropless): `dispatched` is `[N, D]` with
    `N = T * K`; rows are sorted by expert, and within an expert by token
    position then slot. Expert `e` owns rows
    `[sum(counts[0:e]), sum(counts[0:e+1]))`. Rows past `sum(counts)` are zero.
    `row_token` `[N]` gives the token of each row (-1 for the zero rows).

    **Padded layout** (`capacity` present): `dispatched` is `[E, C, D]` with C
    from the capacity formula; expert `e`'s tokens are in `dispatched[e, 0:counts[e]]`,
    in the capacity attribute's queue order; the rest is zero. `row_token` is
    `[E, C]`. Pairs that find their expert full are dropped.

    In both layouts `token_slot` `[T, K]` holds, for each (token, slot), the
    row it was written to in the flattened `dispatched` (`[N]` or `[E * C]`),
    or -1 for unused and dropped pairs. `combine_weights` `[T, K]` are the
    weights `moe.combine` must use: the input weights, with dropped pairs set
    to 0 (`on_drop = zero`) and renormalised after dropping when
    `capacity.renormalize` is set; with `on_drop = pass_through` a dropped pair
    keeps its weight and combine adds `weight * input` in its place.
  }];
  let arguments = (ins
    Moe_FloatTensor:$input,
    Moe_FloatTensor:$weights,
    Moe_IndexTensor:$experts,
    OptionalAttr<Moe_CapacityAttr>:$capacity
  );
  let results = (outs
    Moe_FloatTensor:$dispatched,
    Moe_IndexTensor:$row_token,
    Moe_IndexTensor:$counts,
    Moe_IndexTensor:$token_slot,
    Moe_FloatTensor:$combine_weights
  );
  let assemblyFormat = [{
    $input `,` $weights `,` $experts attr-dict `:`
    type($input) `,` type($weights) `,` type($experts) `->` type(results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// True for the padded-capacity layout.
    bool isPadded() { return static_cast<bool>(getCapacityAttr()); }
    /// Number of experts E.
    int64_t getNumExperts();
  }];
}

//===----------------------------------------------------------------------===//
// moe.experts
//===----------------------------------------------------------------------===//

def Moe_ExpertsOp : Moe_Op<"experts", [RecursiveMemoryEffects,
    IsolatedFromAbove, SingleBlock]> {
  let summary = "Runs an expert body on every expert's segment";
  let description = [{
    `dispatched` is the output of `moe.dispatch` (`[N, Din]` ragged or
    `[E, C, Din]` padded) and `counts` `[E]` its per-expert row counts. Every
    operand in `weights` is stacked over experts (leading dimension E).

    The body is run once per expert `e` with block arguments: the expert's
    segment `tensor<?xDin>` (its `counts[e]` rows), then for every stacked
    weight its slice `weights[i][e]` (leading dimension dropped). It yields the
    segment's output `tensor<?xDout>` with as many rows. The result has the
    layout of `dispatched` with the last dimension `Dout`; rows outside every
    segment are zero.

    ```mlir
    %o = moe.experts %d, %counts weights(%w1, %w2 : tensor<8x64x256xf32>, tensor<8x256x64xf32>)
        : tensor<?x64xf32>, tensor<8xi32> -> tensor<?x64xf32> {
    ^bb0(%seg: tensor<?x64xf32>, %a: tensor<64x256xf32>, %b: tensor<256x64xf32>):
      ...
      moe.yield %out : tensor<?x64xf32>
    }
    ```
  }];
  let arguments = (ins
    Moe_FloatTensor:$dispatched,
    Moe_IndexTensor:$counts,
    Variadic<AnyRankedTensor>:$weights
  );
  let results = (outs Moe_FloatTensor:$result);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    $dispatched `,` $counts (`weights` `(` $weights^ `:` type($weights) `)`)?
    `:` type($dispatched) `,` type($counts) `->` type($result)
    attr-dict-with-keyword $body
  }];
  let hasRegionVerifier = 1;
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    int64_t getNumExperts();
  }];
}

def Moe_YieldOp : Moe_Op<"yield", [Pure, Terminator, ReturnLike,
    HasParent<"ExpertsOp">]> {
  let summary = "Yields an expert body's output segment";
  let arguments = (ins Moe_FloatTensor:$value);
  let assemblyFormat = "$value attr-dict `:` type($value)";
}

//===----------------------------------------------------------------------===//
// moe.grouped_matmul
//===----------------------------------------------------------------------===//

def Moe_GroupedMatmulOp : Moe_Op<"grouped_matmul", [Pure]> {
  let summary = "One matrix product per expert segment";
  let description = [{
    The named core of expert computation that fusion targets. With `rhs`
    `[E, K, M]` (`[E, M, K]` when `transpose_rhs` is set) and per-expert row
    counts `counts` `[E]`:

    * ragged: `lhs` `[N, K]` -> `[N, M]`, row r of segment e is
      `lhs[r] @ rhs[e]`; rows past `sum(counts)` are zero;
    * padded: `lhs` `[E, C, K]` -> `[E, C, M]`, `out[e, c] = lhs[e, c] @ rhs[e]`
      for `c < counts[e]`, zero otherwise.

    Accumulation is in f32 whatever the element type.
  }];
  let arguments = (ins
    Moe_FloatTensor:$lhs,
    Moe_FloatTensor:$rhs,
    Moe_IndexTensor:$counts,
    UnitAttr:$transpose_rhs
  );
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs `,` $counts attr-dict `:`
    type($lhs) `,` type($rhs) `,` type($counts) `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// moe.expert_ffn
//===----------------------------------------------------------------------===//

def Moe_ExpertFFNOp : Moe_Op<"expert_ffn", [Pure, AttrSizedOperandSegments]> {
  let summary = "Expert FFN with the token gather fused in";
  let description = [{
    The vertically fused form of `moe.dispatch` + `moe.experts` for the
    standard FFN forms of `#moe.ffn` (what `moe-fuse-experts` produces):
    instead of reading dispatched copies of the tokens, row `r` of expert
    `e`'s segment reads `input[row_token[r]]` directly, and the FFN's
    intermediate activations never leave a tile.

    `row_token` and `counts` are the `moe.dispatch` results (`[N]` ragged or
    `[E, C]` padded). The result has the dispatched layout (`[N, D]` or
    `[E, C, D]`, element type f32): `result[r] = FFN_e(input[row_token[r]])`
    for rows inside a segment, zero elsewhere. Weights are stacked as for
    `moe.layer` (`w1` `[E, D, F]` or fused `[E, D, 2F]`, optional `w3`,
    `w2` `[E, F, D]`, optional biases), oriented per `ffn.layout`.

    Shared experts (DeepSeek-MoE, Qwen-MoE) may be folded in as
    always-selected experts (what `moe-fuse-experts` does): with
    `shared_w1`, optional `shared_w3` and `shared_w2`, stacked `[S, ...]`
    with the routed experts' per-expert shapes and element type, `counts`
    has `E + S` entries and expert `E + s` is shared expert `s` (no bias).
    Its segment then holds every token once. The layout must be ragged.

    The combine may be fused in too (`moe-fuse-experts` does it when the
    rows feed only a `moe.combine` without passthrough): with
    `combine(%token_slot, %weights)` (`[T, K]` i32 and f32, as for
    `moe.combine`) the result is `[T, D]` f32,
    `result[t] = sum_j weights[t, j] * row[token_slot[t, j]]` over the slots
    with a row, summed in slot order, where `row` is the dispatched-layout
    result described above. The rows then never leave the op.
  }];
  let arguments = (ins
    Moe_FloatTensor:$input,
    Moe_IndexTensor:$row_token,
    Moe_IndexTensor:$counts,
    Moe_FloatTensor:$w1,
    Optional<Moe_FloatTensor>:$w3,
    Moe_FloatTensor:$w2,
    Optional<Moe_FloatTensor>:$b1,
    Optional<Moe_FloatTensor>:$b2,
    Optional<Moe_FloatTensor>:$shared_w1,
    Optional<Moe_FloatTensor>:$shared_w3,
    Optional<Moe_FloatTensor>:$shared_w2,
    Optional<Moe_IndexTensor>:$token_slot,
    Optional<Moe_FloatTensor>:$combine_weights,
    Moe_FFNAttr:$ffn
  );
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $row_token `,` $counts `:` type($input) `,` type($row_token) `,` type($counts)
    `w1` `(` $w1 `:` type($w1) `)`
    (`w3` `(` $w3^ `:` type($w3) `)`)?
    `w2` `(` $w2 `:` type($w2) `)`
    (`b1` `(` $b1^ `:` type($b1) `)`)?
    (`b2` `(` $b2^ `:` type($b2) `)`)?
    (`shared_w1` `(` $shared_w1^ `:` type($shared_w1) `)`)?
    (`shared_w3` `(` $shared_w3^ `:` type($shared_w3) `)`)?
    (`shared_w2` `(` $shared_w2^ `:` type($shared_w2) `)`)?
    (`combine` `(` $token_slot^ `,` $combine_weights `:` type($token_slot) `,` type($combine_weights) `)`)?
    attr-dict `->` type($result)
  }];
  let extraClassDeclaration = [{
    /// Routed experts (the leading dimension of w1).
    int64_t getNumRoutedExperts() { return getW1().getType().getDimSize(0); }
    /// Shared experts folded in as always-selected experts (0 if none).
    int64_t getNumSharedExperts() {
      return getSharedW1() ? getSharedW1().getType().getDimSize(0) : 0;
    }
    /// Whether the gate-weighted combine is fused in ([T, D] result).
    bool hasFusedCombine() { return bool(getTokenSlot()); }
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// moe.combine
//===----------------------------------------------------------------------===//

def Moe_CombineOp : Moe_Op<"combine", [Pure]> {
  let summary = "Gate-weighted gather of expert outputs back to token order";
  let description = [{
    `result[t] = sum_j weights[t, j] * expert_out[token_slot[t, j]]` over slots
    with `token_slot[t, j] != -1` (indices into the flattened rows of
    `expert_out`, `[N, D]` or `[E, C, D]`). When `passthrough` `[T, D]` is
    given, every slot with `token_slot = -1` adds
    `weights[t, j] * passthrough[t]` instead (Switch's dropped tokens); unused
    slots have weight 0 and add nothing. Slots are summed in slot order.
  }];
  let arguments = (ins
    Moe_FloatTensor:$expert_out,
    Moe_IndexTensor:$token_slot,
    Moe_FloatTensor:$weights,
    Optional<Moe_FloatTensor>:$passthrough
  );
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $expert_out `,` $token_slot `,` $weights
    (`passthrough` `(` $passthrough^ `:` type($passthrough) `)`)?
    attr-dict `:` type($expert_out) `,` type($token_slot) `,` type($weights)
    `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Statistics
//===----------------------------------------------------------------------===//

def Moe_ExpertStatsOp : Moe_Op<"expert_stats", [Pure]> {
  let summary = "Per-expert token counts and gate mass";
  let description = [{
    For routing `experts` / `weights` `[T, K]` and E = the length of the
    results: `counts[e]` is the number of (token, slot) pairs with
    `experts[t, j] = e`; `gate_mass[e]` is the sum of their weights (in f32).
    Slots holding -1 are ignored. This is what calibration profiles and the
    load-balancing quantity `E * sum_e f_e p_e` are built from.
  }];
  let arguments = (ins Moe_IndexTensor:$experts, Moe_FloatTensor:$weights);
  let results = (outs RankedTensorOf<[I64]>:$counts,
                      RankedTensorOf<[F32]>:$gate_mass);
  let assemblyFormat = [{
    $experts `,` $weights attr-dict `:` type($experts) `,` type($weights)
    `->` type($counts) `,` type($gate_mass)
  }];
  let hasVerifier = 1;
}

def Moe_LoadBalanceOp : Moe_Op<"load_balance", [Pure]> {
  let summary = "The load-balancing quantity E * sum_e f_e P_e";
  let description = [{
    For routing `experts` `[T, K]` (entries in `[0, E)` or -1) and router
    probabilities `probs` `[T, E]`: `f_e = count_e / (T * K)` with `count_e`
    the (token, slot) pairs routed to expert `e`, `P_e` the mean of
    `probs[:, e]` over the T tokens, and the result (a 0-d f32 tensor) is
    `E * sum_e f_e * P_e` (Switch / GShard auxiliary loss; 1 for perfectly
    balanced routing). Accumulation is in f32.

    With micro-batches, `experts` `[B, T, K]` and `probs` `[B, T, E]`:
    by default the result is the mean over the B micro-batches of their own
    quantity; with `global_batch` (Demons in the Detail), `f_e` and `P_e`
    are taken over all `B * T` tokens at once.
  }];
  let arguments = (ins Moe_IndexTensor:$experts, Moe_FloatTensor:$probs,
                       UnitAttr:$global_batch);
  let results = (outs 0DTensorOf<[F32]>:$result);
  let assemblyFormat = [{
    $experts `,` $probs attr-dict `:` type($experts) `,` type($probs)
    `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Device groups and collectives
//===----------------------------------------------------------------------===//

def Moe_DeviceGroupOp : Moe_Op<"device_group", [Symbol]> {
  let summary = "A named group of devices that collectives run over";
  let description = [{
    Declares a group of `size` devices (ranks `0 .. size-1`), for example the
    expert-parallel group. Collectives refer to it by symbol.

    ```mlir
    moe.device_group @ep size = 8
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, I64Attr:$size);
  let assemblyFormat = "$sym_name `size` `=` $size attr-dict";
  let hasVerifier = 1;
}

class Moe_CollectiveOp<string mnemonic> : Moe_Op<mnemonic,
    [DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let results = (outs AnyRankedTensor:$result);
  let hasVerifier = 1;
}

def Moe_AllToAllOp : Moe_CollectiveOp<"all_to_all"> {
  let summary = "All-to-all exchange over a device group";
  let description = [{
    Splits `input` along `split_dim` into `size` equal chunks, sends chunk i to
    rank i of `group`, and concatenates the chunks received along
    `concat_dim` in rank order. With `split_dim = concat_dim` the shape is
    unchanged; otherwise the split dimension shrinks and the concat dimension
    grows by the group size.
  }];
  let arguments = (ins AnyRankedTensor:$input, FlatSymbolRefAttr:$group,
                       I64Attr:$split_dim, I64Attr:$concat_dim);
  let assemblyFormat = [{
    $input `on` $group attr-dict `:` type($input) `->` type($result)
  }];
}

def Moe_AllGatherOp : Moe_CollectiveOp<"all_gather"> {
  let summary = "All-gather over a device group";
  let description = [{
    Concatenates every rank's `input` along `dim` in rank order; that
    dimension grows by the group size.
  }];
  let arguments = (ins AnyRankedTensor:$input, FlatSymbolRefAttr:$group,
                       I64Attr:$dim);
  let assemblyFormat = [{
    $input `on` $group attr-dict `:` type($input) `->` type($result)
  }];
}

def Moe_ReduceScatterOp : Moe_CollectiveOp<"reduce_scatter"> {
  let summary = "Sum-reduce then scatter over a device group";
  let description = [{
    Sums `input` element-wise over the ranks of `group`, splits the sum along
    `dim` into `size` equal chunks and gives chunk i to rank i; that dimension
    shrinks by the group size.
  }];
  let arguments = (ins AnyRankedTensor:$input, FlatSymbolRefAttr:$group,
                       I64Attr:$dim);
  let assemblyFormat = [{
    $input `on` $group attr-dict `:` type($input) `->` type($result)
  }];
}

#endif // MOE_DIALECT_MOE_IR_MOEOPS_TD
