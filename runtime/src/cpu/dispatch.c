/*===- dispatch.c - moe.dispatch, moe.combine, moe.expert_stats -*- C -*-===*
 *
 * Token rows to per-expert segments and back (docs/Semantics.md §2, §4, §6).
 * Dispatch copies activation rows bit for bit, so it works on any element
 * type by size; combine widens to f32, accumulates in slot order with one
 * rounding per multiply and per add, and narrows once (round to nearest
 * even).
 *
 * Readings of points docs/Semantics.md leaves open: the score queue puts
 * NaN weights last; renormalize divides only kept pairs (a dropped
 * pass_through weight, which the verifier forbids with renormalize, stays),
 * by max(kept sum in slot order, FLT_EPSILON) with a NaN sum kept as NaN;
 * combine treats a token_slot outside [0, R) like -1.
 *
 *===----------------------------------------------------------------------===*/

#include "dtype.h"
#include "expert_ffn_internal.h"
#include "kernel_util.h"
#include "moert/model_abi.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

/* experts[t, j] as an expert index, or -1 for anything outside [0, E): a
 * corrupt id must never address memory (§2). */
static int64_t expert_at(const moert_memref_2d *experts, int64_t t, int64_t j,
                         int64_t E) {
  int32_t e = MOERT_I32_2D(experts, t, j);
  return e >= 0 && (int64_t)e < E ? (int64_t)e : -1;
}

static void copy_row(const moert_memref_2d *src, int64_t i,
                     moert_memref_2d *dst, int64_t r, int64_t D, size_t es) {
  if (D == 0)
    return;
  if (src->strides[1] == 1 && dst->strides[1] == 1) {
    memcpy(moert_at_2d(dst, r, 0, es), moert_at_2d(src, i, 0, es),
           (size_t)D * es);
    return;
  }
  for (int64_t d = 0; d < D; ++d)
    memcpy(moert_at_2d(dst, r, d, es), moert_at_2d(src, i, d, es), es);
}

/* All-zero bits are +0.0 in f32, f16 and bf16 alike. */
static void zero_row(moert_memref_2d *dst, int64_t r, int64_t D, size_t es) {
  if (D == 0)
    return;
  if (dst->strides[1] == 1) {
    memset(moert_at_2d(dst, r, 0, es), 0, (size_t)D * es);
    return;
  }
  for (int64_t d = 0; d < D; ++d)
    memset(moert_at_2d(dst, r, d, es), 0, es);
}

/* The routing-statistics sink of the calling thread (model_abi.h): the
 * runtime installs it around one model call. Thread-local, so concurrent
 * calls on other threads neither see nor disturb it. */
static _Thread_local const moert_stats_sink *tls_stats_sink;

void moert_cpu_set_stats_sink(const moert_stats_sink *sink) {
  tls_stats_sink = sink;
}

/* Reports one finished dispatch to the installed sink, if any: slots
 * [j0, j1) routed to experts [e0, e0 + E), reported as experts 0 .. E - 1
 * (a dispatch with shared experts folded in reports its routed and its
 * shared slots as two dispatches, as they were before the fold). */
static void report_dispatch(const moert_memref_2d *experts,
                            const moert_memref_2d *weights,
                            const moert_memref_2d *token_slot,
                            const moert_memref_1d *counts, int64_t T,
                            int64_t j0, int64_t j1, int64_t e0, int64_t E) {
  const moert_stats_sink *sink = tls_stats_sink;
  if (!sink || !sink->on_dispatch || E > INT32_MAX)
    return;
  int64_t pairs = 0, dropped = 0;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = j0; j < j1; ++j) {
      if (expert_at(experts, t, j, e0 + E) < e0)
        continue;
      ++pairs;
      dropped += MOERT_I32_2D(token_slot, t, j) < 0;
    }
  const int32_t *c = (const int32_t *)counts->aligned + counts->offset + e0;
  if (counts->strides[0] != 1)
    return; /* the kernels allocate counts densely; anything else is not ours */
  sink->on_dispatch(sink->user, E, c, pairs, dropped, T * (j1 - j0) - pairs);
  if (!sink->on_gate_mass)
    return;
  float *mass = (float *)calloc((size_t)(E > 0 ? E : 1), sizeof(float));
  if (!mass)
    return; /* statistics are best effort; the dispatch itself is done */
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = j0; j < j1; ++j) {
      int64_t e = expert_at(experts, t, j, e0 + E) - e0;
      if (e >= 0)
        mass[e] += MOERT_F32_2D(weights, t, j);
    }
  sink->on_gate_mass(sink->user, E, mass);
  free(mass);
}

/* The number of shared experts folded into a dispatch of K slots over E
 * experts (the last S of each), or 0 when the value cannot be one. */
static int64_t folded_shared(int64_t S, int64_t K, int64_t E, int64_t capacity) {
  return S > 0 && S <= K && S <= E && capacity < 0 ? S : 0;
}

/*===----------------------------------------------------------------------===*
 * moe.dispatch
 *===----------------------------------------------------------------------===*/

typedef struct {
  moert_memref_2d *x, *weights, *experts, *dispatched, *token_slot, *cw;
  moert_memref_1d *row_token, *counts;
  int64_t T, D, K, E, R, C;
  size_t es;
  int copy_rows; /* 0: `dispatched` has no rows (a fused consumer gathers) */
} Dispatch;

/* Ragged (§2.1): rows sorted by (expert, t, j). counts[] doubles as the
 * per-expert write cursor, so no scratch memory is needed: it first holds
 * the counts, then each expert's first row, then (after the scatter) each
 * expert's end row, from which the counts are recovered. */
static void dispatch_ragged(const Dispatch *d) {
  for (int64_t e = 0; e < d->E; ++e)
    MOERT_I32_1D(d->counts, e) = 0;
  for (int64_t t = 0; t < d->T; ++t)
    for (int64_t j = 0; j < d->K; ++j) {
      int64_t e = expert_at(d->experts, t, j, d->E);
      if (e >= 0)
        ++MOERT_I32_1D(d->counts, e);
    }
  int32_t pairs = 0;
  for (int64_t e = 0; e < d->E; ++e) {
    int32_t c = MOERT_I32_1D(d->counts, e);
    MOERT_I32_1D(d->counts, e) = pairs;
    pairs += c;
  }
  for (int64_t t = 0; t < d->T; ++t)
    for (int64_t j = 0; j < d->K; ++j) {
      int64_t e = expert_at(d->experts, t, j, d->E);
      if (e < 0) {
        MOERT_I32_2D(d->token_slot, t, j) = -1;
        MOERT_F32_2D(d->cw, t, j) = 0.0f;
        continue;
      }
      int32_t r = MOERT_I32_1D(d->counts, e)++;
      if (d->copy_rows)
        copy_row(d->x, t, d->dispatched, r, d->D, d->es);
      MOERT_I32_1D(d->row_token, r) = (int32_t)t;
      MOERT_I32_2D(d->token_slot, t, j) = r;
      MOERT_F32_2D(d->cw, t, j) = MOERT_F32_2D(d->weights, t, j);
    }
  int32_t begin = 0;
  for (int64_t e = 0; e < d->E; ++e) {
    int32_t end = MOERT_I32_1D(d->counts, e);
    MOERT_I32_1D(d->counts, e) = end - begin;
    begin = end;
  }
  for (int64_t r = pairs; r < d->R; ++r) {
    if (d->copy_rows)
      zero_row(d->dispatched, r, d->D, d->es);
    MOERT_I32_1D(d->row_token, r) = -1;
  }
}

/* Pair (t, j) claims the next slot of its expert, or is dropped (its
 * token_slot stays -1). */
static void claim(const Dispatch *d, int64_t t, int64_t j) {
  int64_t e = expert_at(d->experts, t, j, d->E);
  if (e < 0)
    return;
  int32_t c = MOERT_I32_1D(d->counts, e);
  if ((int64_t)c >= d->C)
    return;
  MOERT_I32_1D(d->counts, e) = c + 1;
  int64_t r = e * d->C + c;
  if (d->copy_rows)
    copy_row(d->x, t, d->dispatched, r, d->D, d->es);
  MOERT_I32_1D(d->row_token, r) = (int32_t)t;
  MOERT_I32_2D(d->token_slot, t, j) = (int32_t)r;
}

/* The score queue: pairs by weight descending, NaN last, ties by (t, j).
 * Returns 0 when out of memory. */
static int claim_by_score(const Dispatch *d) {
  int64_t P = d->T * d->K;
  float *key = (float *)malloc((size_t)P * sizeof(float) + 1);
  int64_t *order = (int64_t *)malloc((size_t)P * sizeof(int64_t) + 1);
  int64_t *tmp = (int64_t *)malloc((size_t)P * sizeof(int64_t) + 1);
  int ok = key && order && tmp;
  if (ok) {
    for (int64_t t = 0; t < d->T; ++t)
      for (int64_t j = 0; j < d->K; ++j) {
        key[t * d->K + j] = MOERT_F32_2D(d->weights, t, j);
        order[t * d->K + j] = t * d->K + j;
      }
    moert_sort_ranked(key, order, P, /*higher_first=*/0, tmp);
    for (int64_t i = 0; i < P; ++i)
      claim(d, order[i] / d->K, order[i] % d->K);
  }
  free(key);
  free(order);
  free(tmp);
  return ok;
}

/* Padded capacity (§2.2). */
static void dispatch_padded(const Dispatch *d, int64_t order, int64_t on_drop,
                            int64_t renormalize) {
  for (int64_t e = 0; e < d->E; ++e)
    MOERT_I32_1D(d->counts, e) = 0;
  for (int64_t t = 0; t < d->T; ++t)
    for (int64_t j = 0; j < d->K; ++j)
      MOERT_I32_2D(d->token_slot, t, j) = -1;

  switch (order) {
  case MOERT_CHOICE_MAJOR:
    for (int64_t j = 0; j < d->K; ++j)
      for (int64_t t = 0; t < d->T; ++t)
        claim(d, t, j);
    break;
  case MOERT_SCORE:
    /* Out of memory: nothing is claimed and every pair counts as dropped,
     * a defined (if degraded) result rather than stale buffers. */
    (void)claim_by_score(d);
    break;
  default: /* MOERT_POSITION */
    for (int64_t t = 0; t < d->T; ++t)
      for (int64_t j = 0; j < d->K; ++j)
        claim(d, t, j);
    break;
  }

  for (int64_t e = 0; e < d->E; ++e)
    for (int64_t c = MOERT_I32_1D(d->counts, e); c < d->C; ++c) {
      if (d->copy_rows)
        zero_row(d->dispatched, e * d->C + c, d->D, d->es);
      MOERT_I32_1D(d->row_token, e * d->C + c) = -1;
    }

  for (int64_t t = 0; t < d->T; ++t) {
    float kept_sum = 0.0f;
    for (int64_t j = 0; j < d->K; ++j) {
      float w = MOERT_F32_2D(d->weights, t, j);
      int kept = MOERT_I32_2D(d->token_slot, t, j) >= 0;
      int dropped = !kept && expert_at(d->experts, t, j, d->E) >= 0;
      float cw = kept ? w
                 : dropped && on_drop == MOERT_DROP_PASS_THROUGH ? w
                                                                  : 0.0f;
      MOERT_F32_2D(d->cw, t, j) = cw;
      if (kept)
        kept_sum += w;
    }
    if (!renormalize)
      continue;
    /* Only kept pairs are renormalised; a NaN sum propagates (like
     * torch.clamp / numpy.maximum) rather than turning into FLT_EPSILON. */
    float denom = isnan(kept_sum) || kept_sum > FLT_EPSILON ? kept_sum
                                                             : FLT_EPSILON;
    for (int64_t j = 0; j < d->K; ++j)
      if (MOERT_I32_2D(d->token_slot, t, j) >= 0)
        MOERT_F32_2D(d->cw, t, j) = MOERT_F32_2D(d->cw, t, j) / denom;
  }
}

void _mlir_ciface_moert_cpu_dispatch(
    moert_memref_2d *x, moert_memref_2d *weights, moert_memref_2d *experts,
    moert_memref_2d *dispatched, moert_memref_1d *row_token,
    moert_memref_1d *counts, moert_memref_2d *token_slot,
    moert_memref_2d *combine_weights, int64_t capacity, int64_t order,
    int64_t on_drop, int64_t renormalize, int64_t elem_type,
    int64_t shared_experts) {
  Dispatch d;
  d.es = moert_elem_size(elem_type);
  if (d.es == 0 || !moert_valid_2d(x) || !moert_valid_2d(experts) ||
      !moert_valid_2d(dispatched) || !moert_valid_1d(row_token) ||
      !moert_valid_1d(counts))
    return;
  if (capacity >= 0 && order != MOERT_POSITION && order != MOERT_CHOICE_MAJOR &&
      order != MOERT_SCORE)
    return;
  d.T = x->sizes[0];
  d.D = x->sizes[1];
  d.K = experts->sizes[1];
  d.E = counts->sizes[0];
  /* The row count comes from row_token; `dispatched` either has all R rows
   * or none (its consumer gathers rows through row_token itself). */
  d.R = row_token->sizes[0];
  d.copy_rows = dispatched->sizes[0] != 0;
  if (!moert_is_2d(experts, d.T, d.K) || !moert_is_2d(weights, d.T, d.K) ||
      !moert_is_2d(token_slot, d.T, d.K) ||
      !moert_is_2d(combine_weights, d.T, d.K) ||
      !moert_is_2d(dispatched, d.copy_rows ? d.R : 0, d.D))
    return;
  /* Rows and tokens are stored as i32; R must be exactly the layout's row
   * count so that every row written is inside the descriptor. */
  if (d.T > INT32_MAX || d.R > INT32_MAX ||
      moert_mul_limit(d.T, d.K, INT32_MAX) < 0)
    return;
  if (capacity < 0) {
    if (d.R != d.T * d.K)
      return;
    d.C = -1;
  } else {
    if (moert_mul_limit(d.E, capacity, INT32_MAX) != d.R)
      return;
    d.C = capacity;
  }
  d.x = x;
  d.weights = weights;
  d.experts = experts;
  d.dispatched = dispatched;
  d.token_slot = token_slot;
  d.cw = combine_weights;
  d.row_token = row_token;
  d.counts = counts;
  if (capacity < 0)
    dispatch_ragged(&d);
  else
    dispatch_padded(&d, order, on_drop, renormalize);
  /* Folded shared experts (the last S slots and experts) are reported by
   * moert_cpu_expert_importance, after the routed experts' importance. */
  const int64_t S = folded_shared(shared_experts, d.K, d.E, capacity);
  report_dispatch(experts, weights, token_slot, counts, d.T, 0, d.K - S, 0,
                  d.E - S);
}

/*===----------------------------------------------------------------------===*
 * moe.combine
 *===----------------------------------------------------------------------===*/

/* The contribution source of slot (t, j): the expert-output row, the
 * passthrough row (-2), or nothing (-1). A token_slot outside [0, R) is
 * treated like -1, as dispatch treats a corrupt expert id. */
static int64_t combine_source(const moert_memref_2d *token_slot,
                              const moert_memref_2d *weights, int has_pt,
                              int64_t R, int64_t t, int64_t j) {
  int32_t r = MOERT_I32_2D(token_slot, t, j);
  if (r >= 0 && (int64_t)r < R)
    return r;
  if (has_pt && MOERT_F32_2D(weights, t, j) != 0.0f)
    return -2;
  return -1;
}

/* Whether the elements of a and b (es bytes each) may share memory: their
 * address ranges, first to last element, intersect. */
static int bytes_overlap(const moert_memref_2d *a, const moert_memref_2d *b,
                         size_t es) {
  const moert_memref_2d *m[2] = {a, b};
  uintptr_t lo[2], hi[2];
  for (int i = 0; i < 2; ++i) {
    if (m[i]->sizes[0] == 0 || m[i]->sizes[1] == 0)
      return 0;
    lo[i] = hi[i] = (uintptr_t)moert_at_2d(m[i], 0, 0, es);
    for (int d = 0; d < 2; ++d) {
      intptr_t span = (intptr_t)(m[i]->sizes[d] - 1) * (intptr_t)m[i]->strides[d] * (intptr_t)es;
      if (span < 0)
        lo[i] += (uintptr_t)span;
      else
        hi[i] += (uintptr_t)span;
    }
    hi[i] += es;
  }
  return lo[0] < hi[1] && lo[1] < hi[0];
}

/* y[j] = y[j] + w * x[j] for j < n (y and x disjoint), one rounding per
 * operation: an f32 combine step, vectorised. */
MOERT_VEC_CLONES
static void axpy_f32(float *restrict y, const float *restrict x, float w, int64_t n) {
  for (int64_t j = 0; j < n; ++j)
    y[j] = y[j] + w * x[j];
}

typedef struct {
  const moert_memref_2d *expert_out, *token_slot, *weights, *passthrough, *out;
  int64_t elem_type, D, K, R;
  size_t es;
  int has_pt, f32_rows; /* f32 with unit inner strides: rows as arrays */
} Combine;

#define MOERT_COMBINE_TOKENS 8 /* tokens per parallel block */

/* y[t] = sum_j w_j * row_j, from 0, in slot order, for t in [t0, t1); acc
 * (D floats) holds the sums unless the rows are f32 arrays, which are
 * summed in place in the output row (the same operations). */
static void combine_tokens(const Combine *c, int64_t t0, int64_t t1,
                           float *acc) {
  const int64_t D = c->D;
  for (int64_t t = t0; t < t1; ++t) {
    float *y = c->f32_rows ? (float *)moert_at_2d(c->out, t, 0, 4) : acc;
    for (int64_t d = 0; d < D; ++d)
      y[d] = 0.0f;
    for (int64_t j = 0; j < c->K; ++j) {
      int64_t src = combine_source(c->token_slot, c->weights, c->has_pt, c->R, t, j);
      if (src == -1)
        continue;
      float w = MOERT_F32_2D(c->weights, t, j);
      const moert_memref_2d *m = src >= 0 ? c->expert_out : c->passthrough;
      int64_t row = src >= 0 ? src : t;
      if (c->f32_rows) {
        axpy_f32(y, (const float *)moert_at_2d(m, row, 0, 4), w, D);
        continue;
      }
      for (int64_t d = 0; d < D; ++d)
        y[d] = y[d] + w * moert_load_elem(moert_at_2d(m, row, d, c->es), c->elem_type);
    }
    if (!c->f32_rows)
      for (int64_t d = 0; d < D; ++d)
        moert_store_elem(moert_at_2d(c->out, t, d, c->es), c->elem_type, y[d]);
  }
}

/* Out of memory: the same sums, one element at a time. */
static void combine_elementwise(const Combine *c, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t)
    for (int64_t d = 0; d < c->D; ++d) {
      float a = 0.0f;
      for (int64_t j = 0; j < c->K; ++j) {
        int64_t src = combine_source(c->token_slot, c->weights, c->has_pt, c->R, t, j);
        if (src == -1)
          continue;
        const moert_memref_2d *m = src >= 0 ? c->expert_out : c->passthrough;
        a = a + MOERT_F32_2D(c->weights, t, j) *
                    moert_load_elem(moert_at_2d(m, src >= 0 ? src : t, d, c->es),
                                    c->elem_type);
      }
      moert_store_elem(moert_at_2d(c->out, t, d, c->es), c->elem_type, a);
    }
}

/* Blocks [begin, end) of MOERT_COMBINE_TOKENS tokens (parallel_for body). */
static void combine_blocks(void *arg, int64_t begin, int64_t end) {
  const Combine *c = (const Combine *)arg;
  const int64_t T = c->out->sizes[0];
  const int64_t t0 = begin * MOERT_COMBINE_TOKENS;
  const int64_t t1 = end * MOERT_COMBINE_TOKENS < T ? end * MOERT_COMBINE_TOKENS : T;
  float *acc = c->f32_rows ? NULL : (float *)malloc((size_t)c->D * sizeof(float) + 1);
  if (c->f32_rows || acc)
    combine_tokens(c, t0, t1, acc);
  else
    combine_elementwise(c, t0, t1);
  free(acc);
}

void _mlir_ciface_moert_cpu_combine(moert_memref_2d *expert_out,
                                    moert_memref_2d *token_slot,
                                    moert_memref_2d *weights,
                                    moert_memref_2d *passthrough,
                                    moert_memref_2d *out, int64_t elem_type) {
  size_t es = moert_elem_size(elem_type);
  if (es == 0 || !moert_valid_2d(out) || !moert_valid_2d(token_slot) ||
      !moert_valid_2d(expert_out))
    return;
  int64_t T = out->sizes[0], D = out->sizes[1];
  int64_t K = token_slot->sizes[1], R = expert_out->sizes[0];
  if (!moert_is_2d(token_slot, T, K) || !moert_is_2d(weights, T, K) ||
      expert_out->sizes[1] != D)
    return;
  /* A passthrough with a zero leading size is absent, whatever its width. */
  int has_pt = passthrough && passthrough->sizes[0] != 0;
  if (has_pt && !moert_is_2d(passthrough, T, D))
    return;
  Combine c = {expert_out, token_slot, weights, passthrough, out, elem_type, D, K, R, es,
               has_pt, 0};
  /* Sums in place in the output rows only where they are f32 arrays that
   * share no memory with the rows they sum. */
  c.f32_rows = elem_type == MOERT_F32 && D > 0 && out->strides[1] == 1 &&
               expert_out->strides[1] == 1 && !bytes_overlap(out, expert_out, 4) &&
               (!has_pt || (passthrough->strides[1] == 1 &&
                            !bytes_overlap(out, passthrough, 4)));
  const int64_t blocks = (T + MOERT_COMBINE_TOKENS - 1) / MOERT_COMBINE_TOKENS;
  if (blocks == 0)
    return;
  const moert_parallel_hook *hook = moert_cpu_parallel_hook();
  if (hook && blocks > 1 && T * D * (K > 0 ? K : 1) >= MOERT_CPU_PARALLEL_MIN_WORK)
    hook->parallel_for(hook->user, blocks, combine_blocks, &c);
  else
    combine_blocks(&c, 0, blocks);
}

/*===----------------------------------------------------------------------===*
 * moe.expert_stats
 *===----------------------------------------------------------------------===*/

void _mlir_ciface_moert_cpu_expert_stats(moert_memref_2d *experts,
                                         moert_memref_2d *weights,
                                         moert_memref_1d *counts,
                                         moert_memref_1d *gate_mass) {
  if (!moert_valid_2d(experts) || !moert_valid_1d(counts) ||
      !moert_valid_1d(gate_mass))
    return;
  int64_t T = experts->sizes[0], K = experts->sizes[1];
  int64_t E = counts->sizes[0];
  if (!moert_is_2d(weights, T, K) || gate_mass->sizes[0] != E)
    return;
  for (int64_t e = 0; e < E; ++e) {
    MOERT_I64_1D(counts, e) = 0;
    MOERT_F32_1D(gate_mass, e) = 0.0f;
  }
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < K; ++j) {
      int64_t e = expert_at(experts, t, j, E);
      if (e < 0)
        continue;
      ++MOERT_I64_1D(counts, e);
      MOERT_F32_1D(gate_mass, e) =
          MOERT_F32_1D(gate_mass, e) + MOERT_F32_2D(weights, t, j);
    }
}

/*===----------------------------------------------------------------------===*
 * Expert importance (statistics)
 *===----------------------------------------------------------------------===*/

void _mlir_ciface_moert_cpu_expert_importance(
    moert_memref_2d *expert_out, moert_memref_2d *token_slot,
    moert_memref_2d *weights, moert_memref_1d *counts, int64_t capacity,
    int64_t elem_type, moert_memref_2d *experts, int64_t shared_experts) {
  const moert_stats_sink *sink = tls_stats_sink;
  size_t es = moert_elem_size(elem_type);
  if (!sink || es == 0 || !moert_valid_2d(expert_out) ||
      !moert_valid_2d(token_slot) || !moert_valid_2d(weights) ||
      !moert_valid_1d(counts) || !moert_valid_2d(experts))
    return;
  int64_t R = expert_out->sizes[0], D = expert_out->sizes[1];
  int64_t T = token_slot->sizes[0], K = token_slot->sizes[1];
  int64_t E = counts->sizes[0];
  if (!moert_is_2d(weights, T, K) || E < 1 || E > INT32_MAX ||
      (capacity >= 0 && moert_mul_limit(E, capacity, INT64_MAX) != R))
    return;
  int64_t S = folded_shared(shared_experts, K, E, capacity);
  if (S > 0 && !moert_is_2d(experts, T, K))
    S = 0;
  if (!sink->on_importance) {
    if (S > 0)
      report_dispatch(experts, weights, token_slot, counts, T, K - S, K, E - S, S);
    return;
  }
  /* row -> expert */
  int32_t *owner = (int32_t *)malloc((size_t)(R > 0 ? R : 1) * sizeof(int32_t));
  float *importance = (float *)calloc((size_t)E, sizeof(float));
  if (!owner || !importance) {
    free(owner);
    free(importance);
    return;
  }
  for (int64_t r = 0; r < R; ++r)
    owner[r] = -1;
  int64_t begin = 0;
  for (int64_t e = 0; e < E; ++e) {
    int64_t c = MOERT_I32_1D(counts, e);
    if (c < 0)
      c = 0;
    int64_t start = capacity >= 0 ? e * capacity : begin;
    int64_t limit = capacity >= 0 ? start + (c < capacity ? c : capacity) : start + c;
    for (int64_t r = start; r < limit && r < R; ++r)
      owner[r] = (int32_t)e;
    begin += c;
  }
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < K; ++j) {
      int32_t r = MOERT_I32_2D(token_slot, t, j);
      if (r < 0 || (int64_t)r >= R || owner[r] < 0)
        continue;
      float norm2 = 0.0f;
      for (int64_t d = 0; d < D; ++d) {
        float v = moert_load_elem(moert_at_2d(expert_out, r, d, es), elem_type);
        norm2 += v * v;
      }
      importance[owner[r]] += MOERT_F32_2D(weights, t, j) * sqrtf(norm2);
    }
  /* Routed and shared slots hold disjoint experts, so each expert's sum is
   * the one its own (unfolded) dispatch would give. */
  sink->on_importance(sink->user, E - S, importance);
  if (S > 0) {
    report_dispatch(experts, weights, token_slot, counts, T, K - S, K, E - S, S);
    sink->on_importance(sink->user, S, importance + (E - S));
  }
  free(owner);
  free(importance);
}
