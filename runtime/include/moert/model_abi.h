/*===- model_abi.h - The ABI between model libraries and the runtime ------===*
 *
 * Every model library built by `moe-compile` exports one symbol,
 *
 *   const moert_model_desc *moert_model_describe(void);
 *
 * which describes the library itself: its entry points, and for each the
 * names, element types and shapes of its arguments and results (a negative
 * dimension is dynamic: the token count). A caller (libmoert, or C code that
 * links the library directly) validates a call against this description and
 * then calls `invoke`.
 *
 * Tensors cross the boundary as moert_view: dense row-major data plus shape.
 * Results are allocated by the model with malloc; `allocated` is the pointer
 * to release with the description's `free_result` (it may differ from `data`
 * because of alignment), and stays NULL for arguments.
 *
 * Conventions a caller must follow (checked again by `invoke`):
 *  - `rank`, `dtype` and every static dimension match the description;
 *  - every dynamic dimension of every argument has the same value (the one
 *    dynamic symbol of a model is its token count T >= 1).
 * `invoke` returns 0 on success and a negative MOERT_ABI_* code when an
 * argument breaks these rules (nothing is computed then). Arguments are
 * read-only: `invoke` must not write through them (libmoert passes weights
 * from a read-only file mapping and reuses inputs across calls).
 *
 * Thread safety: `invoke` keeps no state between calls; calls from several
 * threads on distinct result views are safe.
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_MODEL_ABI_H
#define MOERT_MODEL_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOERT_MODEL_ABI_VERSION 1
#define MOERT_MAX_RANK 8

typedef enum moert_dtype {
  MOERT_DTYPE_F32 = 0,
  MOERT_DTYPE_F16 = 1,
  MOERT_DTYPE_BF16 = 2,
  MOERT_DTYPE_I32 = 3,
  MOERT_DTYPE_I64 = 4
} moert_dtype;

/* Codes returned by moert_entry_desc.invoke. */
#define MOERT_ABI_OK 0
#define MOERT_ABI_BAD_RANK (-1)
#define MOERT_ABI_BAD_DTYPE (-2)
#define MOERT_ABI_BAD_SHAPE (-3)
#define MOERT_ABI_NULL_DATA (-4)

typedef struct moert_view {
  void *data;         /* first element, row-major, dense */
  void *allocated;    /* results only: pointer to free_result(); else NULL */
  int32_t dtype;      /* moert_dtype */
  int32_t rank;
  int64_t shape[MOERT_MAX_RANK];
} moert_view;

typedef struct moert_tensor_desc {
  const char *name;
  int32_t dtype;          /* moert_dtype */
  int32_t rank;
  const int64_t *shape;   /* rank entries; < 0 = dynamic */
} moert_tensor_desc;

typedef int (*moert_entry_fn)(const moert_view *args, moert_view *results);

typedef struct moert_entry_desc {
  const char *name;
  int32_t num_args;
  const moert_tensor_desc *args;
  int32_t num_results;
  const moert_tensor_desc *results;
  moert_entry_fn invoke;
} moert_entry_desc;

typedef struct moert_model_desc {
  uint32_t abi_version;      /* MOERT_MODEL_ABI_VERSION */
  const char *model_name;
  const char *target;        /* "cpu" */
  int32_t num_entries;
  const moert_entry_desc *entries;
  void (*free_result)(void *allocated);
} moert_model_desc;

/* Exported by every model library. */
typedef const moert_model_desc *(*moert_model_describe_fn)(void);
#define MOERT_MODEL_DESCRIBE_SYMBOL "moert_model_describe"

/* Routing statistics (optional). A model library MAY also export
 *
 *   void moert_model_set_stats_sink(const moert_stats_sink *sink);
 *
 * which installs `sink` for the calling thread (the model keeps it in a
 * thread-local variable; NULL uninstalls). While a sink is installed, every
 * dispatch step that `invoke` executes on that thread calls `on_dispatch`
 * once, in execution order (= layer order), with:
 *   num_experts  E, the number of routed experts of the layer;
 *   counts       E entries: tokens kept by each expert (pairs not dropped);
 *                valid only during the callback;
 *   num_pairs    (token, slot) pairs routed to an expert, kept or dropped;
 *   dropped      pairs dropped because their expert was full (capacity);
 *   skipped      slots routed to no expert (null experts, unused slots).
 * The sink struct must stay valid while installed. libmoert installs its sink
 * right before `invoke` and uninstalls it right after, on the same thread. A
 * library without the export simply reports no statistics. */
typedef struct moert_stats_sink {
  void *user;
  void (*on_dispatch)(void *user, int64_t num_experts, const int32_t *counts,
                      int64_t num_pairs, int64_t dropped, int64_t skipped);
  /* Optional (may be NULL): right after on_dispatch, the gate mass of the
   * same dispatch: for each expert the sum of the routing weights of the
   * pairs routed to it (kept or dropped), in (token, slot) order, f32.
   * Valid only during the callback. This is the calibration signal of
   * static pruning (frequency = counts, importance = gate mass). */
  void (*on_gate_mass)(void *user, int64_t num_experts, const float *gate_mass);
  /* Optional (may be NULL): after the layer's combine, the output-norm
   * weighted importance of each expert of the last dispatch: sum over its
   * kept pairs of routing weight * L2 norm of the expert's output row
   * (the importance measure of EASY-EP-style pruning). */
  void (*on_importance)(void *user, int64_t num_experts, const float *importance);
} moert_stats_sink;

typedef void (*moert_model_set_stats_sink_fn)(const moert_stats_sink *sink);
#define MOERT_MODEL_SET_STATS_SINK_SYMBOL "moert_model_set_stats_sink"

/* Parallelism (optional). A model library MAY export
 *
 *   void moert_model_set_parallel_hook(const moert_parallel_hook *hook);
 *
 * which installs `hook` for the calling thread (copied; NULL uninstalls).
 * The model's kernels then split their work into tasks and run them through
 * hook->parallel_for; without a hook they run serially on the calling
 * thread. Results do not depend on the hook (bit-identical for any thread
 * count). libmoert installs its session's thread pool around `invoke`.
 * parallel_for(user, n, fn, arg) must run fn(arg, b, e) over disjoint ranges
 * covering [0, n), on any threads in any order, and return when all are
 * done; fn may be called concurrently. */
typedef void (*moert_task_fn)(void *arg, int64_t begin, int64_t end);
typedef struct moert_parallel_hook {
  void *user;
  int32_t num_threads;
  void (*parallel_for)(void *user, int64_t n, moert_task_fn fn, void *arg);
} moert_parallel_hook;

typedef void (*moert_model_set_parallel_hook_fn)(const moert_parallel_hook *hook);
#define MOERT_MODEL_SET_PARALLEL_HOOK_SYMBOL "moert_model_set_parallel_hook"

/* Packed weights (optional). A model library MAY export
 *
 *   void moert_model_set_weight_cache(const moert_weight_cache *cache);
 *
 * which installs `cache` for the calling thread (copied; NULL uninstalls).
 * The model's kernels may then keep copies of constant weights in a layout
 * of their own (the CPU expert kernel: its GEMM path's packed panels, built
 * once instead of on every call, which its decode path also reads for f32
 * weights) in memory the cache hands out, keyed by a
 * byte string of their choosing that names the source weights and the
 * layout. Results do not depend on the cache (bit-identical with or
 * without). libmoert installs its session's cache around `invoke`. The
 * callbacks may be called from any thread of the parallel hook,
 * concurrently:
 *
 *   is_constant(user, p, bytes): nonzero when [p, p + bytes) lies inside
 *     memory that stays unchanged while the cache exists (libmoert: the
 *     weights bound to the session), so a copy derived from it stays valid.
 *   acquire(user, key, key_bytes, bytes, &fill): the entry stored under the
 *     key. A ready entry: returns its data, *fill = 0. No entry and bytes > 0
 *     within the cache's budget: creates one and returns its 64-byte aligned,
 *     uninitialised data with *fill = 1; the caller writes it and then calls
 *     publish. Otherwise (bytes == 0, an entry being written by another
 *     thread, over the budget, no memory): NULL.
 *   publish(user, data): marks an entry created by acquire as ready. */
typedef struct moert_weight_cache {
  void *user;
  int (*is_constant)(void *user, const void *p, size_t bytes);
  void *(*acquire)(void *user, const void *key, size_t key_bytes, size_t bytes,
                   int *fill);
  void (*publish)(void *user, void *data);
} moert_weight_cache;

typedef void (*moert_model_set_weight_cache_fn)(const moert_weight_cache *cache);
#define MOERT_MODEL_SET_WEIGHT_CACHE_SYMBOL "moert_model_set_weight_cache"

#ifdef __cplusplus
}
#endif

#endif /* MOERT_MODEL_ABI_H */
