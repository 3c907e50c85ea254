/*===- session.h - libmoert: calls, sessions, routing statistics ----------===*
 *
 * Part of the libmoert C API; include "moert/api.h".
 *
 * Binding. Every argument of an entry point is bound by name: from the
 * explicit inputs of the call first, then from the weights. An argument found
 * in neither is NOT_FOUND (the message names it); an input whose name is not
 * an argument of the entry, or that is given twice, is INVALID_ARGUMENT.
 *
 * Validation. Before `invoke`, every bound argument is checked against the
 * description: rank, dtype, every static dimension, and every dynamic
 * dimension of every argument equal to the same token count T >= 1. A
 * failure is INVALID_ARGUMENT naming the argument and the dimension; nothing
 * is invoked. Explicit inputs must have the argument's dtype exactly. Weights
 * of another float dtype (f32, f16, bf16) are converted once, when the session
 * is created, into a buffer the session owns (round to nearest even, NaN kept);
 * integer weights must match exactly.
 *
 * Arguments are passed to the model read-only: weights come straight from
 * the read-only file mapping (model_abi.h requires invoke not to write them).
 *
 * Results. The model allocates results (model_abi.h); libmoert validates them
 * (rank, dtype, static dims, dynamic dims = T) and hands each to the caller
 * as a moert_tensor_t that adopts the model's buffer (no copy; releasing the
 * tensor calls the model's free_result and the tensor keeps the model loaded
 * meanwhile). A buffer that is shared between results, aliases an argument or
 * is misaligned is copied instead. A malformed result is INTERNAL and every
 * result is freed.
 *
 * Statistics. If the model library exports moert_model_set_stats_sink
 * (model_abi.h), a session installs its sink around every invoke (on the
 * calling thread) and accumulates, for each dispatch the model reports, in
 * report order (= layer order; the k-th report of a call is layer k): tokens
 * routed to each expert, (token, slot) pairs, dropped pairs and skipped
 * slots, summed over all calls of the session until moert_session_stats_reset.
 * See docs/Runtime.md for the exact meaning of the counters.
 *
 * Threading: each session owns a pool of worker threads (all cores by
 * default, moert_session_set_num_threads to change) that it lends to the
 * model's kernels during a call through moert_model_set_parallel_hook
 * (model_abi.h); results do not depend on the thread count. A call returns
 * when all its work is done. A session is NOT thread-safe: use it from one thread at a time (or
 * lock around it). Distinct sessions — on the same or different models and
 * weights — may be used concurrently from different threads. moert_call is
 * safe to call concurrently.
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_SESSION_H
#define MOERT_SESSION_H

#include "moert/base.h"
#include "moert/model.h"
#include "moert/tensor.h"
#include "moert/weights.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An explicit input: argument name -> tensor (borrowed for the call). */
typedef struct moert_named_tensor {
  const char *name;
  const moert_tensor_t *tensor;
} moert_named_tensor;

/*===----------------------------------------------------------------------===*
 * One-shot calls
 *===----------------------------------------------------------------------===*/

/* Binds and validates the arguments of entry `entry_index` from `inputs`
 * (num_inputs entries; may be NULL when 0) and then `weights` (may be NULL),
 * invokes it and stores its results in out_results[0 .. num_results), which
 * must hold exactly the entry's number of results (INVALID_ARGUMENT
 * otherwise). Each result is a new tensor owned by the caller. On error every
 * out_results entry is NULL. Weight conversion (if any) happens for this call
 * only, and no statistics are collected: use a session to call repeatedly. */
MOERT_API_EXPORT moert_status_t moert_call(
    moert_model_t *model, int32_t entry_index, const moert_weights_t *weights,
    const moert_named_tensor *inputs, size_t num_inputs,
    moert_tensor_t **out_results, int32_t num_results);

/*===----------------------------------------------------------------------===*
 * Sessions
 *===----------------------------------------------------------------------===*/

typedef struct moert_session_s moert_session_t;

/* Creates a session for entry `entry_index` of `model` bound to `weights`
 * (may be NULL: every argument then comes from the inputs). The session
 * retains the model and the weights. Every argument whose name is in the
 * weights is bound now: its rank, static dimensions and dtype are checked
 * (INVALID_ARGUMENT naming the weight on mismatch), float weights of another
 * dtype are converted into session-owned buffers, misaligned ones copied. */
MOERT_API_EXPORT moert_status_t moert_session_create(
    moert_model_t *model, int32_t entry_index, const moert_weights_t *weights,
    moert_session_t **out_session);

/* Destroys the session and drops its references. NULL is a no-op. */
MOERT_API_EXPORT void moert_session_release(moert_session_t *session);

MOERT_API_EXPORT moert_model_t *moert_session_model(
    const moert_session_t *session);
MOERT_API_EXPORT int32_t moert_session_entry_index(
    const moert_session_t *session);
MOERT_API_EXPORT const moert_entry_desc *moert_session_entry(
    const moert_session_t *session);

/* Calls the entry with `inputs` (which take precedence over the weights
 * bound at creation) and stores the results as moert_call does. Statistics
 * reported by the model are accumulated into the session; on error they are
 * left as they were before the call. */
MOERT_API_EXPORT moert_status_t moert_session_call(
    moert_session_t *session, const moert_named_tensor *inputs,
    size_t num_inputs, moert_tensor_t **out_results, int32_t num_results);

/* Sets the number of threads the session's calls use (the calling thread
 * included); 0 means every core available to the process. Takes effect from
 * the next call. INVALID_ARGUMENT when negative. */
MOERT_API_EXPORT moert_status_t moert_session_set_num_threads(
    moert_session_t *session, int32_t num_threads);

/* The session's thread count. */
MOERT_API_EXPORT int32_t moert_session_num_threads(const moert_session_t *session);

/*===----------------------------------------------------------------------===*
 * Routing statistics
 *===----------------------------------------------------------------------===*/

/* Accumulated statistics of one dispatch (one MoE layer). */
typedef struct moert_layer_stats {
  int64_t num_experts;
  /* num_experts entries: tokens routed to each expert (kept pairs), summed
   * over calls. Owned by the session; valid until its next call, reset or
   * release. */
  const int64_t *tokens_per_expert;
  int64_t num_reports; /* how many times the model reported this layer */
  int64_t pairs;       /* (token, slot) pairs with an expert */
  int64_t dropped;     /* pairs dropped by a capacity limit */
  int64_t skipped;     /* slots routed to no expert (null experts, unused) */
  /* num_experts entries: sum of the routing weights of the pairs routed to
   * each expert, summed over calls; NULL when the model does not report it.
   * Same lifetime as tokens_per_expert. */
  const double *gate_mass;
  /* num_experts entries: output-norm-weighted importance, the sum over each
   * expert's kept pairs of weight * ||expert output row||_2, summed over
   * calls; NULL when not reported. Same lifetime. */
  const double *importance;
} moert_layer_stats;

/* Number of successful moert_session_call calls since creation or reset. */
MOERT_API_EXPORT int64_t moert_session_call_count(const moert_session_t *session);

/* Number of layers (dispatch reports per call) seen so far; 0 when the model
 * exports no stats sink. */
MOERT_API_EXPORT int64_t moert_session_stats_layer_count(
    const moert_session_t *session);

/* Statistics of layer `layer` (OUT_OF_RANGE when layer is not in
 * [0, layer_count)). */
MOERT_API_EXPORT moert_status_t moert_session_stats(
    const moert_session_t *session, int64_t layer, moert_layer_stats *out_stats);

/* The statistics as JSON text (documented in docs/Runtime.md), NUL
 * terminated, allocated for the caller: release with moert_free. */
MOERT_API_EXPORT moert_status_t moert_session_stats_json(
    const moert_session_t *session, char **out_json);

/* Clears the statistics and the call count. */
MOERT_API_EXPORT void moert_session_stats_reset(moert_session_t *session);

/* Turns the collection of routing statistics on (the default) or off for
 * later calls. Collecting costs time in the model (per-expert output norms
 * for the importance, per-layer counting), so timing and serving loops that
 * do not read the statistics turn it off. The statistics then cover only
 * the calls made while it was on; moert_session_call_count still counts
 * every successful call. */
MOERT_API_EXPORT void moert_session_set_stats_enabled(moert_session_t *session,
                                                      int enabled);
MOERT_API_EXPORT int moert_session_stats_enabled(const moert_session_t *session);

/*===----------------------------------------------------------------------===*
 * Packed weights
 *===----------------------------------------------------------------------===*/

/* A CPU session keeps, for the model's expert kernels, copies of its bound
 * weights in the layout the kernels compute from (the packed panels of the
 * grouped-GEMM path that prefill-sized calls take, which decode calls of f32
 * weights read too), made when a call first needs them: later calls skip
 * the repacking of every expert's weights (Mixtral-small T=512: 3-4% of the
 * call), and decode calls read them as one sequential stream (Mixtral-small
 * T=8: 9-25% faster). Only weights bound at creation
 * are kept, never call inputs; results are bit-identical either way. The
 * copies count against a limit, by default as many bytes as the bound
 * weights take in f32 plus an eighth (every expert once, panels padded); a call that would exceed it packs
 * per call as before. Sessions of device models and one-shot calls
 * (moert_call) keep none.
 *
 * Sets the limit in bytes (0: keep no more copies). Copies already made are
 * kept until the session is released. INVALID_ARGUMENT when negative. */
MOERT_API_EXPORT moert_status_t moert_session_set_packed_weights_limit(
    moert_session_t *session, int64_t max_bytes);

/* The limit (0 for sessions that keep no copies). */
MOERT_API_EXPORT int64_t moert_session_packed_weights_limit(
    const moert_session_t *session);

/* Bytes of packed copies the session holds now. */
MOERT_API_EXPORT int64_t moert_session_packed_weights_bytes(
    const moert_session_t *session);

/* Flushes every weight buffer bound to a CPU session out of the CPU caches
 * (x86: clflush of each cache line; the session's packed copies too), so
 * that the next call reads its weights from memory, as a decode step does in
 * a server where other work ran in between. Sweeping a large buffer is not enough for that: last-level caches
 * keep lines that are reused call after call in preference to streamed ones.
 * For benchmarks (moe-run --cold); it costs a pass over the weights, shared
 * by the session's threads, which are left awake for the next call as they
 * are between back-to-back layers (a worker woken from sleep costs tens of
 * microseconds more than one still spinning); like a call, it must not run
 * concurrently with another use of the session. Returns
 * 1 when the weights were flushed, 0 when it cannot be done (NULL, a device
 * session, a CPU without the instruction). */
MOERT_API_EXPORT int moert_session_evict_weights(const moert_session_t *session);

#ifdef __cplusplus
}
#endif

#endif /* MOERT_SESSION_H */
