/*===- fake_model.c - a hand-written model library for libmoert tests -----===*
 *
 * Implements runtime/include/moert/model_abi.h by hand:
 *
 *   add(x[?,4] f32, w[4] f32) -> y[?,4] f32          y = x + w
 *   pair(a[?,3] f32, b[?] i32) -> (s[?] f32, c[2] i64)
 *        s[t] = sum_j a[t,j] + b[t];  c = {T, sum_t b[t]}
 *   dup(x[?,2] f32) -> (p[?,2] f32, q[?,2] f32)       both results are the
 *        SAME malloc'd buffer (libmoert must not free it twice)
 *   ident(x[?,2] f32) -> y[?,2] f32                  returns the argument's
 *        own buffer as `allocated` (libmoert must copy, never free it)
 *
 * With a weight cache installed (full variant), `add` keeps a copy of a
 * constant w in it and computes from that (see kept_w).
 *
 * With a stats sink installed, `add` reports two dispatches per call:
 *   layer 0: E = 4, counts {T, 2T, 0, T}, pairs 4T + 1, dropped 1, skipped 2
 *   layer 1: E = 2, counts {T, T},        pairs 2T,     dropped 0, skipped T
 *
 * Build variants: -DFAKE_MODEL_TARGET='"cuda"' claims another target,
 * -DFAKE_MODEL_NO_STATS omits moert_model_set_stats_sink,
 * -DFAKE_MODEL_NO_DESCRIBE omits moert_model_describe as well.
 *
 * fake_model_set_variant(v) (tests only; global, not thread-safe) makes the
 * next describe() / invoke misbehave in one specific way (FAKE_* below).
 *===----------------------------------------------------------------------===*/

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "moert/model_abi.h"

#define EXPORT __attribute__((visibility("default")))

#ifdef FAKE_MODEL_NO_DESCRIBE
/* A shared library that is not a model library. */
EXPORT int fake_model_placeholder(void) { return 0; }
#else

enum {
  FAKE_OK = 0,
  FAKE_BAD_ABI_VERSION = 1,
  FAKE_NULL_MODEL_NAME = 2,
  FAKE_RANK_ZERO = 3,
  FAKE_UNKNOWN_DTYPE = 4,
  FAKE_DUPLICATE_ARG = 5,
  FAKE_NULL_INVOKE = 6,
  FAKE_DESCRIBE_NULL = 7,
  FAKE_DYNAMIC_RESULT_ONLY = 8,
  FAKE_DUPLICATE_ENTRY = 9,
  FAKE_NO_ENTRIES = 10,
  FAKE_NULL_ARG_NAME = 11,
  FAKE_RANK_TOO_BIG = 12,
  /* Call-time misbehaviour of `add`. */
  FAKE_WRONG_RESULT_SHAPE = 20,
  FAKE_INVOKE_FAILS = 21,
  FAKE_NEGATIVE_STAT = 22,
  FAKE_MISALIGNED_RESULT = 23,
  FAKE_GATE_MASS = 24 /* layer 0 also reports a gate mass of 0.5 per token */
};

static int g_variant = FAKE_OK;

EXPORT void fake_model_set_variant(int variant) { g_variant = variant; }

#ifndef FAKE_MODEL_NO_STATS
static _Thread_local const moert_stats_sink *g_sink;

EXPORT void moert_model_set_stats_sink(const moert_stats_sink *sink) {
  g_sink = sink;
}
#endif

static void report_stats(int64_t T) {
#ifndef FAKE_MODEL_NO_STATS
  if (!g_sink || !g_sink->on_dispatch)
    return;
  int32_t c0[4] = {(int32_t)T, (int32_t)(2 * T), 0, (int32_t)T};
  if (g_variant == FAKE_NEGATIVE_STAT)
    c0[2] = -1;
  g_sink->on_dispatch(g_sink->user, 4, c0, 4 * T + 1, 1, 2);
  if (g_variant == FAKE_GATE_MASS && g_sink->on_gate_mass) {
    float mass[4];
    for (int e = 0; e < 4; ++e)
      mass[e] = 0.5f * (float)c0[e];
    g_sink->on_gate_mass(g_sink->user, 4, mass);
  }
  int32_t c1[2] = {(int32_t)T, (int32_t)T};
  g_sink->on_dispatch(g_sink->user, 2, c1, 2 * T, 0, T);
#else
  (void)T;
#endif
}

/* Allocates a result of `bytes` bytes; data is 64-byte aligned inside. */
static void *alloc_result(moert_view *out, int32_t dtype, int32_t rank,
                          const int64_t *shape, size_t bytes) {
  char *allocated = (char *)malloc(bytes + 64);
  if (!allocated)
    return NULL;
  char *data = allocated + (64 - ((uintptr_t)allocated % 64)) % 64;
  out->allocated = allocated;
  out->data = data;
  out->dtype = dtype;
  out->rank = rank;
  for (int32_t i = 0; i < rank; ++i)
    out->shape[i] = shape[i];
  return data;
}

static int check(const moert_view *v, int32_t dtype, int32_t rank,
                 const int64_t *shape, int64_t *dyn) {
  if (!v->data)
    return MOERT_ABI_NULL_DATA;
  if (v->rank != rank)
    return MOERT_ABI_BAD_RANK;
  if (v->dtype != dtype)
    return MOERT_ABI_BAD_DTYPE;
  for (int32_t i = 0; i < rank; ++i) {
    if (shape[i] >= 0) {
      if (v->shape[i] != shape[i])
        return MOERT_ABI_BAD_SHAPE;
    } else {
      if (v->shape[i] < 1 || (*dyn >= 0 && v->shape[i] != *dyn))
        return MOERT_ABI_BAD_SHAPE;
      *dyn = v->shape[i];
    }
  }
  return MOERT_ABI_OK;
}

/*---- add ----*/
/* A weight cache (model_abi.h), full variant only: `add` keeps 2 w in it
 * when w is constant and computes from the kept copy (y = x + kept / 2). */
static _Thread_local moert_weight_cache g_cache;
static _Thread_local int g_has_cache;
static int64_t g_cache_counts[3]; /* fills, hits, calls that saw x constant */

#ifndef FAKE_MODEL_NO_STATS
EXPORT void moert_model_set_weight_cache(const moert_weight_cache *cache) {
  g_has_cache = cache != NULL;
  if (cache)
    g_cache = *cache;
}
#endif

/* Tests only: the counts since the last call (which resets them). */
EXPORT void fake_model_take_cache_counts(int64_t out[3]) {
  memcpy(out, g_cache_counts, sizeof g_cache_counts);
  memset(g_cache_counts, 0, sizeof g_cache_counts);
}

/* The w that `add` adds: w itself, or its kept copy. */
static const float *kept_w(const float *x, const float *w, int64_t T,
                           float *scratch) {
  if (!g_has_cache)
    return w;
  if (T > 0 && g_cache.is_constant(g_cache.user, x, (size_t)T * 4 * sizeof(float)))
    ++g_cache_counts[2];
  if (!g_cache.is_constant(g_cache.user, w, 4 * sizeof(float)))
    return w;
  char key[5 + sizeof w];
  memcpy(key, "add.w", 5);
  memcpy(key + 5, &w, sizeof w);
  int fill = 0;
  float *d = (float *)g_cache.acquire(g_cache.user, key, sizeof key,
                                      4 * sizeof(float), &fill);
  if (!d)
    return w;
  if (fill) {
    for (int j = 0; j < 4; ++j)
      d[j] = 2 * w[j];
    g_cache.publish(g_cache.user, d);
    ++g_cache_counts[0];
  } else {
    ++g_cache_counts[1];
  }
  for (int j = 0; j < 4; ++j)
    scratch[j] = d[j] / 2;
  return scratch;
}

static const int64_t k_x4[] = {-1, 4};
static const int64_t k_w4[] = {4};
static moert_tensor_desc g_add_args[2];
static const moert_tensor_desc k_add_res[] = {
    {"y", MOERT_DTYPE_F32, 2, k_x4}};

static int invoke_add(const moert_view *args, moert_view *results) {
  int64_t T = -1;
  int rc;
  if (g_variant == FAKE_INVOKE_FAILS)
    return MOERT_ABI_BAD_SHAPE;
  if ((rc = check(&args[0], MOERT_DTYPE_F32, 2, k_x4, &T)) ||
      (rc = check(&args[1], MOERT_DTYPE_F32, 1, k_w4, &T)))
    return rc;
  int64_t shape[2] = {T, 4};
  if (g_variant == FAKE_WRONG_RESULT_SHAPE)
    shape[1] = 5;
  /* Bytes, not floats: FAKE_MISALIGNED_RESULT makes the data misaligned. */
  char *y = (char *)alloc_result(&results[0], MOERT_DTYPE_F32, 2, shape,
                                 (size_t)(T * shape[1]) * sizeof(float) + 4);
  if (!y)
    return MOERT_ABI_NULL_DATA;
  if (g_variant == FAKE_MISALIGNED_RESULT) {
    y += 2;
    results[0].data = y;
  }
  const float *x = (const float *)args[0].data;
  float scratch[4];
  const float *w = kept_w(x, (const float *)args[1].data, T, scratch);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < 4; ++j) {
      float v = x[t * 4 + j] + w[j];
      memcpy(y + (size_t)(t * 4 + j) * sizeof(float), &v, sizeof v);
    }
  report_stats(T);
  return MOERT_ABI_OK;
}

/*---- pair ----*/
static const int64_t k_a3[] = {-1, 3};
static const int64_t k_b[] = {-1};
static const int64_t k_c2[] = {2};
static const moert_tensor_desc k_pair_args[] = {
    {"a", MOERT_DTYPE_F32, 2, k_a3}, {"b", MOERT_DTYPE_I32, 1, k_b}};
static const moert_tensor_desc k_pair_res[] = {
    {"s", MOERT_DTYPE_F32, 1, k_b}, {"c", MOERT_DTYPE_I64, 1, k_c2}};

static int invoke_pair(const moert_view *args, moert_view *results) {
  int64_t T = -1;
  int rc;
  if ((rc = check(&args[0], MOERT_DTYPE_F32, 2, k_a3, &T)) ||
      (rc = check(&args[1], MOERT_DTYPE_I32, 1, k_b, &T)))
    return rc;
  int64_t s_shape[1] = {T};
  float *s = (float *)alloc_result(&results[0], MOERT_DTYPE_F32, 1, s_shape,
                                   (size_t)T * sizeof(float));
  int64_t *c = (int64_t *)alloc_result(&results[1], MOERT_DTYPE_I64, 1, k_c2,
                                       2 * sizeof(int64_t));
  if (!s || !c) {
    free(results[0].allocated);
    free(results[1].allocated);
    return MOERT_ABI_NULL_DATA;
  }
  const float *a = (const float *)args[0].data;
  const int32_t *b = (const int32_t *)args[1].data;
  int64_t sum_b = 0;
  for (int64_t t = 0; t < T; ++t) {
    s[t] = a[t * 3] + a[t * 3 + 1] + a[t * 3 + 2] + (float)b[t];
    sum_b += b[t];
  }
  c[0] = T;
  c[1] = sum_b;
  return MOERT_ABI_OK;
}

/*---- dup / ident ----*/
static const int64_t k_x2[] = {-1, 2};
static const moert_tensor_desc k_x2_args[] = {{"x", MOERT_DTYPE_F32, 2, k_x2}};
static const moert_tensor_desc k_dup_res[] = {{"p", MOERT_DTYPE_F32, 2, k_x2},
                                              {"q", MOERT_DTYPE_F32, 2, k_x2}};
static const moert_tensor_desc k_ident_res[] = {
    {"y", MOERT_DTYPE_F32, 2, k_x2}};

static int invoke_dup(const moert_view *args, moert_view *results) {
  int64_t T = -1;
  int rc;
  if ((rc = check(&args[0], MOERT_DTYPE_F32, 2, k_x2, &T)))
    return rc;
  int64_t shape[2] = {T, 2};
  float *p = (float *)alloc_result(&results[0], MOERT_DTYPE_F32, 2, shape,
                                   (size_t)(T * 2) * sizeof(float));
  if (!p)
    return MOERT_ABI_NULL_DATA;
  const float *x = (const float *)args[0].data;
  for (int64_t i = 0; i < T * 2; ++i)
    p[i] = 2.0f * x[i];
  results[1] = results[0];
  return MOERT_ABI_OK;
}

static int invoke_ident(const moert_view *args, moert_view *results) {
  int64_t T = -1;
  int rc;
  if ((rc = check(&args[0], MOERT_DTYPE_F32, 2, k_x2, &T)))
    return rc;
  results[0] = args[0];
  results[0].allocated = args[0].data; /* what MLIR does for `return %arg` */
  return MOERT_ABI_OK;
}

static moert_entry_desc g_entries[4];
static moert_model_desc g_desc;
static int64_t g_rank0_shape[1] = {4};
static int64_t g_big_shape[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};

EXPORT const moert_model_desc *moert_model_describe(void) {
  if (g_variant == FAKE_DESCRIBE_NULL)
    return NULL;
  g_add_args[0] = (moert_tensor_desc){"x", MOERT_DTYPE_F32, 2, k_x4};
  g_add_args[1] = (moert_tensor_desc){"w", MOERT_DTYPE_F32, 1, k_w4};
  g_entries[0] = (moert_entry_desc){"add", 2, g_add_args, 1, k_add_res,
                                    invoke_add};
  g_entries[1] = (moert_entry_desc){"pair", 2, k_pair_args, 2, k_pair_res,
                                    invoke_pair};
  g_entries[2] = (moert_entry_desc){"dup", 1, k_x2_args, 2, k_dup_res,
                                    invoke_dup};
  g_entries[3] = (moert_entry_desc){"ident", 1, k_x2_args, 1, k_ident_res,
                                    invoke_ident};
#ifndef FAKE_MODEL_TARGET
#define FAKE_MODEL_TARGET "cpu"
#endif
  g_desc = (moert_model_desc){MOERT_MODEL_ABI_VERSION, "fake", FAKE_MODEL_TARGET, 4,
                              g_entries, free};
  switch (g_variant) {
  case FAKE_BAD_ABI_VERSION: g_desc.abi_version = MOERT_MODEL_ABI_VERSION + 1; break;
  case FAKE_NULL_MODEL_NAME: g_desc.model_name = NULL; break;
  case FAKE_RANK_ZERO:
    g_add_args[1] = (moert_tensor_desc){"w", MOERT_DTYPE_F32, 0, g_rank0_shape};
    break;
  case FAKE_UNKNOWN_DTYPE: g_add_args[1].dtype = 7; break;
  case FAKE_DUPLICATE_ARG: g_add_args[1].name = "x"; break;
  case FAKE_NULL_INVOKE: g_entries[1].invoke = NULL; break;
  case FAKE_DYNAMIC_RESULT_ONLY:
    g_add_args[0] = (moert_tensor_desc){"x", MOERT_DTYPE_F32, 1, k_w4};
    break;
  case FAKE_DUPLICATE_ENTRY: g_entries[3].name = "add"; break;
  case FAKE_NO_ENTRIES: g_desc.num_entries = 0; break;
  case FAKE_NULL_ARG_NAME: g_add_args[0].name = NULL; break;
  case FAKE_RANK_TOO_BIG:
    g_add_args[1] = (moert_tensor_desc){"w", MOERT_DTYPE_F32, 9, g_big_shape};
    break;
  default: break;
  }
  return &g_desc;
}
#endif /* FAKE_MODEL_NO_DESCRIBE */
