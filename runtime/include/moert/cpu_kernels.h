/*===- cpu_kernels.h - CPU kernels called by compiled moe code ------------===*
 *
 * The routing, dispatch, combine and statistics steps of an MoE layer are
 * data-dependent, branchy and cheap next to the expert products, so the CPU
 * lowering (convert-moe-to-runtime) emits one call per op to these kernels
 * instead of generating the code. They implement docs/Semantics.md exactly.
 *
 * ABI: the functions are called from MLIR-generated code through
 * `llvm.emit_c_interface`, so every memref argument arrives as a pointer to
 * a strided memref descriptor (moert_memref_<rank>d below); scalars are
 * passed by value. Every memref must be contiguous in its last dimension;
 * kernels read sizes and strides from the descriptors and never access
 * memory outside them. A descriptor with a zero leading size stands for an
 * absent optional operand.
 *
 * Element type codes (`elem_type`): MOERT_F32, MOERT_F16, MOERT_BF16.
 *
 * Thread safety: kernels keep no state; calls on disjoint outputs may run
 * concurrently.
 *
 * Defensive behaviour. The ABI has no error channel, so a kernel that is
 * handed something it cannot give a meaning to leaves every output exactly
 * as it was (writes nothing) and never touches memory outside a
 * descriptor's sizes. That happens when:
 *  - a descriptor has a negative size, or a null data pointer while
 *    non-empty;
 *  - the sizes disagree: route needs weights_out and experts_out both
 *    [T, K] with T = rows of logits, k == K, and a present bias of E'
 *    entries; dispatch needs weights, experts, token_slot and
 *    combine_weights all [T, K] with T = rows of x, dispatched [R, D] with
 *    D = columns of x, row_token [R], and R == T*K (capacity < 0) or
 *    R == E*capacity with E = size of counts, T, R, T*K <= INT32_MAX;
 *    combine needs token_slot and weights [T, K] with [T, D] = out,
 *    expert_out [R, D], and passthrough [T, D] or a zero leading size;
 *    expert_stats needs weights of experts' shape and gate_mass [E] with
 *    E = size of counts;
 *  - an enum is out of range (policy, score, elem_type, dispatch order when
 *    capacity >= 0), or a routing parameter leaves the computation
 *    undefined: null_experts < 0; grouped_top_k with num_groups < 1, not
 *    dividing E', top_groups outside [1, num_groups] or group_score_k
 *    outside [1, E'/num_groups]; sinkhorn_iterations < 0.
 * Values the verifier rejects but that keep a natural meaning are computed
 * as written: K > E' (the extra slots are unused), null_experts >= E'
 * (every slot -1/0), sparse_mixer with K != 2 (min(K, 2) slots filled), a
 * selection bias with a policy that has no biased key (ignored), and
 * normalize with softmax_selected. Corrupt indices inside valid
 * descriptors are tolerated: an expert id outside [0, E) is -1 (dispatch,
 * expert_stats), a token_slot outside [0, R) is -1 (combine). If scratch
 * memory cannot be allocated, route writes every slot as -1/0, padded
 * dispatch with order = score drops every pair, and combine falls back to
 * a loop that needs none (same results).
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_CPU_KERNELS_H
#define MOERT_CPU_KERNELS_H

#include <stdint.h>

#include "moert/model_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define MOERT_KERNEL_EXPORT __declspec(dllexport)
#else
#define MOERT_KERNEL_EXPORT __attribute__((visibility("default")))
#endif

typedef struct {
  void *allocated;
  void *aligned;
  int64_t offset;
  int64_t sizes[1];
  int64_t strides[1];
} moert_memref_1d;

typedef struct {
  void *allocated;
  void *aligned;
  int64_t offset;
  int64_t sizes[2];
  int64_t strides[2];
} moert_memref_2d;

enum moert_elem_type { MOERT_F32 = 0, MOERT_F16 = 1, MOERT_BF16 = 2 };

/* Enum values mirror the `moe` dialect's enums (MoeEnums.td). */
enum moert_routing_policy {
  MOERT_TOP_K = 0, MOERT_TOP_P = 1, MOERT_GROUPED_TOP_K = 2,
  MOERT_SINKHORN = 3, MOERT_EXPERT_CHOICE = 4, MOERT_THRESHOLD = 5,
  MOERT_SPARSE_MIXER = 6
};
enum moert_score_function {
  MOERT_SOFTMAX = 0, MOERT_SIGMOID = 1, MOERT_SOFTMAX_SELECTED = 2,
  MOERT_IDENTITY = 3
};
enum moert_queue_order { MOERT_POSITION = 0, MOERT_CHOICE_MAJOR = 1, MOERT_SCORE = 2 };
enum moert_drop_policy { MOERT_DROP_ZERO = 0, MOERT_DROP_PASS_THROUGH = 1 };

/* moe.route. logits: f32 [T, E'] ; bias: f32 [E'] or [0] ; weights_out: f32
 * [T, K] ; experts_out: i32 [T, K]. `normalize` is 1 for `selected`,
 * `tie_break` 1 for `higher_index`. */
MOERT_KERNEL_EXPORT void _mlir_ciface_moert_cpu_route(
    moert_memref_2d *logits, moert_memref_1d *bias, moert_memref_2d *weights_out,
    moert_memref_2d *experts_out, int64_t policy, int64_t k, int64_t score,
    int64_t normalize, int64_t tie_break, double scaling, double top_p,
    double threshold, int64_t num_groups, int64_t top_groups,
    int64_t group_score_k, int64_t mask_with_zero, int64_t null_experts,
    int64_t sinkhorn_iterations, double capacity_factor, double jitter_eps,
    double epsilon);

/* moe.dispatch, both layouts. x: [T, D] of elem_type; weights: f32 [T, K];
 * experts: i32 [T, K]; dispatched: [R, D] of elem_type, where R = T*K
 * (ragged, capacity < 0) or E*C (padded, the [E, C, D] result collapsed),
 * or [0, D] when a fused consumer gathers the rows itself (nothing copied);
 * row_token: i32 [R]; counts: i32 [E]; token_slot: i32 [T, K];
 * combine_weights: f32 [T, K]. order / on_drop / renormalize only matter
 * when capacity >= 0. shared_experts S > 0 (ragged only): the last S slots
 * and experts are shared experts folded in by moe-fuse-experts; the
 * statistics sink then hears of the routed slots only here, and of the
 * shared ones from moert_cpu_expert_importance (as the two dispatches
 * before the fold). Results do not depend on it. */
MOERT_KERNEL_EXPORT void _mlir_ciface_moert_cpu_dispatch(
    moert_memref_2d *x, moert_memref_2d *weights, moert_memref_2d *experts,
    moert_memref_2d *dispatched, moert_memref_1d *row_token,
    moert_memref_1d *counts, moert_memref_2d *token_slot,
    moert_memref_2d *combine_weights, int64_t capacity, int64_t order,
    int64_t on_drop, int64_t renormalize, int64_t elem_type,
    int64_t shared_experts);

/* Installs the routing-statistics sink of the calling thread (see
 * model_abi.h, moert_model_set_stats_sink); every dispatch reports to it.
 * NULL uninstalls. The model-library glue forwards its export here. */
struct moert_stats_sink;
MOERT_KERNEL_EXPORT void
moert_cpu_set_stats_sink(const struct moert_stats_sink *sink);

/* moe.combine. expert_out: [R, D] of elem_type (padded [E, C, D] collapsed);
 * token_slot: i32 [T, K]; weights: f32 [T, K]; passthrough: [T, D] of
 * elem_type or [0, D] when absent; out: [T, D] of elem_type. */
MOERT_KERNEL_EXPORT void _mlir_ciface_moert_cpu_combine(
    moert_memref_2d *expert_out, moert_memref_2d *token_slot,
    moert_memref_2d *weights, moert_memref_2d *passthrough, moert_memref_2d *out,
    int64_t elem_type);

/* Routing statistics only (no effect on results): reports to the installed
 * stats sink (model_abi.h, on_importance) the output-norm-weighted
 * importance of each expert of the last dispatch: sum over the pairs (t, j)
 * kept by expert e of weights[t, j] * ||expert_out[token_slot[t, j]]||_2.
 * Rows belong to experts by `counts` [E] (i32): ragged segments in order
 * when capacity < 0, rows [e*C, e*C + C) when capacity = C. Does nothing
 * without a sink or when the descriptors disagree. With shared_experts
 * S > 0 (the dispatch's, see moert_cpu_dispatch; experts i32 [T, K] is the
 * dispatch's routing, else it may be empty): reports the routed experts'
 * importance, then the shared slots as a dispatch of their own (counts,
 * gate mass) and their importance. */
MOERT_KERNEL_EXPORT void _mlir_ciface_moert_cpu_expert_importance(
    moert_memref_2d *expert_out, moert_memref_2d *token_slot,
    moert_memref_2d *weights, moert_memref_1d *counts, int64_t capacity,
    int64_t elem_type, moert_memref_2d *experts, int64_t shared_experts);

/* moe.expert_stats. experts: i32 [T, K]; weights: f32 [T, K]; counts: i64
 * [E]; gate_mass: f32 [E]. */
MOERT_KERNEL_EXPORT void _mlir_ciface_moert_cpu_expert_stats(
    moert_memref_2d *experts, moert_memref_2d *weights, moert_memref_1d *counts,
    moert_memref_1d *gate_mass);


/* Dense f32 product (linalg.matmul): out[M, N] = init[M, N] + a[M, K] x
 * b[K, N], every element accumulated in k order with one rounding per
 * multiply and per add (exactly what the generated loops compute), rows of
 * the output split across the parallel hook's threads. The router product
 * of every layer takes this path. Does nothing when the shapes disagree. */
MOERT_KERNEL_EXPORT void _mlir_ciface_moert_cpu_matmul(
    moert_memref_2d *a, moert_memref_2d *b, moert_memref_2d *init,
    moert_memref_2d *out);

/*===----------------------------------------------------------------------===*
 * Expert FFN (moe.experts with a #moe.ffn body)
 *===----------------------------------------------------------------------===*/

typedef struct {
  void *allocated;
  void *aligned;
  int64_t offset;
  int64_t sizes[3];
  int64_t strides[3];
} moert_memref_3d;

/* Parallelism hook: the runtime that owns the threads provides parallel_for;
 * the kernels never create threads themselves. Thread-local: set it on the
 * thread that calls the model (the setting is copied; NULL = run serially).
 * A hook with num_threads <= 1 or no parallel_for also runs serially.
 * parallel_for(user, n, fn, arg) must run fn(arg, b, e) over disjoint ranges
 * covering [0, n), on any threads in any order, and return when all are
 * done; fn may be called concurrently. Tasks come largest first, so handing
 * them out dynamically (small chunks) balances best. The kernels' results
 * do not depend on the hook: they are bit-identical for any thread count and
 * task order. */
/* moert_task_fn and moert_parallel_hook are defined in model_abi.h: the
 * runtime provides the hook through the model library. */
MOERT_KERNEL_EXPORT void moert_cpu_set_parallel_hook(const moert_parallel_hook *hook);

/* Installs a weight cache (model_abi.h) for the kernels called from this
 * thread (copied; NULL uninstalls). The expert FFN kernel then keeps the
 * packed panels of its GEMM path for experts whose weights the cache calls
 * constant, built on first use, instead of packing them on every call; its
 * decode path reads them too for row groups of 2 or more rows of f32 in_out
 * weights (packing them on first use as well). Results are bit-identical
 * with or without a cache. */
MOERT_KERNEL_EXPORT void moert_cpu_set_weight_cache(const moert_weight_cache *cache);

enum moert_ffn_kind { MOERT_FFN_KIND_MLP = 0, MOERT_FFN_KIND_GLU = 1 };
enum moert_activation {
  MOERT_ACT_KIND_SILU = 0, MOERT_ACT_KIND_GELU = 1,
  MOERT_ACT_KIND_GELU_TANH = 2, MOERT_ACT_KIND_RELU = 3,
  MOERT_ACT_KIND_IDENTITY = 4
};
enum moert_gate_up {
  MOERT_GATE_UP_SEPARATE = 0, MOERT_GATE_UP_CONCATENATED = 1,
  MOERT_GATE_UP_INTERLEAVED = 2
};
enum moert_weight_layout { MOERT_LAYOUT_IN_OUT = 0, MOERT_LAYOUT_OUT_IN = 1 };

/* Expert FFN over dispatched rows, with the token gather fused in: row r of
 * expert e's segment reads x[row_token[r]] (rows with row_token < 0 or >= T
 * are skipped and their output left zero). Segments: ragged
 * (segment_stride < 0: expert e owns rows [sum counts[0:e], + counts[e]))
 * or padded (segment_stride = C: expert e owns rows [e*C, e*C + counts[e])).
 * Output out[r] = FFN_e(x[row_token[r]]) in f32, rows outside segments zero.
 *
 * FFN per docs/Semantics.md §3: kind 0 = mlp: act(x W1 + b1) W2 + b2;
 * kind 1 = glu: (act(g) * (u + up_shift)) W2 + b2 with g/u from W1/W3
 * (gate_up 0 separate: g = x W1 + b1, u = x W3), or W1 = [gate | up]
 * (1 concatenated) or gate even / up odd columns (2 interleaved), b1 split
 * the same way; limit > 0 clamps g to <= limit and u to [-limit, limit];
 * activation 0 silu x/(1+exp(-alpha x)), 1 gelu (erf), 2 gelu_tanh, 3 relu,
 * 4 identity (alpha only scales silu).
 *
 * Operands: x f32 [T, D]; row_token i32 [R]; counts i32 [E]; out f32
 * [R, Dout]. layout 0 in_out: w1 [E, D, F1], w3 [E, D, F], w2 [E, F, Dout];
 * layout 1 out_in: w1 [E, F1, D], w3 [E, F, D], w2 [E, Dout, F]; F1 = 2F for
 * a concatenated or interleaved GLU, else F. b1 [E, F1], b2 [E, Dout].
 * Weights and biases are f32, f16 or bf16 (weight_dtype: 0 f32, 1 f16,
 * 2 bf16; the same for all of them); x is f32; accumulation f32. Absent
 * optional operands (w3 unless a separate GLU, b1, b2) have a zero leading
 * size (an unused w3 is ignored).
 *
 * Shared experts folded in as always-selected experts: sw1, sw3 (when w3 is
 * used) and sw2 stacked [S, ...] with the per-expert shapes of w1, w3, w2;
 * then counts has E + S entries and expert E + s computes with shared
 * expert s's weights and no bias. Absent: sw1 with a zero leading size
 * (sw3/sw2 are then ignored).
 *
 * The combine fused in (combine = 1): token_slot i32 [T, K] and
 * combine_weights f32 [T, K] as for moert_cpu_combine (no passthrough) and
 * out f32 [T, Dout]: out[t] = sum over j of combine_weights[t, j] * row
 * token_slot[t, j] of the result described above, in slot order, the bits
 * of moert_cpu_combine over that result; the rows stay in a buffer of the
 * call. The routing statistics' expert importance is reported as by
 * moert_cpu_expert_importance (experts, shared_experts: the dispatch's, see
 * there; shared_experts < 0: the slots come from no dispatch, nothing is
 * reported). With combine = 0 these four are ignored (pass empty
 * descriptors).
 *
 * Counts are data: a negative count is 0; ragged segments are cut at R,
 * padded ones at C. The result is bit-identical for any number of threads
 * (see moert_cpu_set_parallel_hook) but depends on the instruction set the
 * CPU offers (AVX-512, AVX2+FMA or portable C, picked at run time); it
 * agrees with an exact evaluation to about f32 accumulation accuracy.
 *
 * Writes nothing when: an enum is out of range; a descriptor has a negative
 * size, a null data pointer while non-empty, or a non-unit innermost stride
 * (with more than one element there); the sizes disagree (x [T, D], w1 and
 * w2 (and w3 when used) as above with E = size of counts (minus S) and
 * w1/w3 F1 = w2 F (x2 when fused), out [R, Dout] with R = size of
 * row_token, b1 / b2 absent or as above), or segment_stride >= 0 and
 * R != E * segment_stride. If scratch memory cannot be allocated the
 * result is computed by a slower scratch-free path (not bit-identical to
 * the fast one). */
MOERT_KERNEL_EXPORT void _mlir_ciface_moert_cpu_expert_ffn(
    moert_memref_2d *x, moert_memref_1d *row_token, moert_memref_1d *counts,
    moert_memref_3d *w1, moert_memref_3d *w3, moert_memref_3d *w2,
    moert_memref_2d *b1, moert_memref_2d *b2, moert_memref_3d *sw1,
    moert_memref_3d *sw3, moert_memref_3d *sw2, moert_memref_2d *token_slot,
    moert_memref_2d *combine_weights, moert_memref_2d *experts,
    moert_memref_2d *out, int64_t segment_stride, int64_t kind,
    int64_t activation, int64_t gate_up, int64_t layout, double alpha,
    double up_shift, double limit, int64_t weight_dtype, int64_t combine,
    int64_t shared_experts);

#ifdef __cplusplus
}
#endif

#endif /* MOERT_CPU_KERNELS_H */
