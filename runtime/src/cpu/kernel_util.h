/*===- kernel_util.h - Shared helpers of the CPU kernels --------*- C -*-===*
 *
 * Internal to runtime/src/cpu: memref addressing, descriptor checks, the
 * rank order of docs/Semantics.md §1.2 and a deterministic sort. Everything
 * here is `static inline` so that no extra symbol leaves the kernel library.
 *
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_SRC_CPU_KERNEL_UTIL_H
#define MOERT_SRC_CPU_KERNEL_UTIL_H

/* The numeric results are specified bit for bit (one f32 rounding per
 * operation), so a product must never be fused into a following add. GCC's
 * default for GNU C is -ffp-contract=fast, which fuses on any target with FMA
 * (AArch64, or x86 with -mfma). Turn contraction off for every function of
 * the including file. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "moert/cpu_kernels.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Plain C loops the compiler vectorises for the host: an AVX-512, an AVX2
 * and a baseline copy, picked at load time (target_clones). */
#if defined(__x86_64__) && defined(__GNUC__)
#define MOERT_VEC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MOERT_VEC_CLONES
#endif

/*===----------------------------------------------------------------------===*
 * Descriptor checks and addressing
 *===----------------------------------------------------------------------===*/

/* A 2-D descriptor may be read or written when its sizes are non-negative
 * and, unless it is empty, it has a data pointer. */
static inline int moert_valid_2d(const moert_memref_2d *m) {
  if (!m || m->sizes[0] < 0 || m->sizes[1] < 0)
    return 0;
  return m->sizes[0] == 0 || m->sizes[1] == 0 || m->aligned != NULL;
}

static inline int moert_valid_1d(const moert_memref_1d *m) {
  if (!m || m->sizes[0] < 0)
    return 0;
  return m->sizes[0] == 0 || m->aligned != NULL;
}

static inline int moert_is_2d(const moert_memref_2d *m, int64_t rows,
                              int64_t cols) {
  return moert_valid_2d(m) && m->sizes[0] == rows && m->sizes[1] == cols;
}

/* Element (i, j) of a 2-D memref whose elements are `esize` bytes. Strides
 * are honoured as given, so a non-unit outer (or inner) stride works. */
static inline void *moert_at_2d(const moert_memref_2d *m, int64_t i, int64_t j,
                                size_t esize) {
  return (char *)m->aligned +
         (m->offset + i * m->strides[0] + j * m->strides[1]) * (int64_t)esize;
}

static inline void *moert_at_1d(const moert_memref_1d *m, int64_t i,
                                size_t esize) {
  return (char *)m->aligned + (m->offset + i * m->strides[0]) * (int64_t)esize;
}

#define MOERT_F32_2D(m, i, j) (*(float *)moert_at_2d((m), (i), (j), 4))
#define MOERT_I32_2D(m, i, j) (*(int32_t *)moert_at_2d((m), (i), (j), 4))
#define MOERT_F32_1D(m, i) (*(float *)moert_at_1d((m), (i), 4))
#define MOERT_I32_1D(m, i) (*(int32_t *)moert_at_1d((m), (i), 4))
#define MOERT_I64_1D(m, i) (*(int64_t *)moert_at_1d((m), (i), 8))

/* a * b for non-negative sizes, or -1 when the product overflows int64 or
 * exceeds `limit`. */
static inline int64_t moert_mul_limit(int64_t a, int64_t b, int64_t limit) {
  if (a < 0 || b < 0)
    return -1;
  if (a != 0 && b > limit / a)
    return -1;
  return a * b;
}

/*===----------------------------------------------------------------------===*
 * Rank order
 *===----------------------------------------------------------------------===*/

/* Whether candidate (ka, a) ranks strictly before (kb, b) in the descending
 * order of docs/Semantics.md §1.2: larger key first, NaN after every number,
 * equal keys (including +0.0 vs -0.0, and NaN vs NaN) by index, ascending
 * unless `higher_first`. This is a strict total order on distinct indices,
 * so any correct sort or selection built on it gives one unique answer. */
static inline int moert_ranks_before(float ka, int64_t a, float kb, int64_t b,
                                     int higher_first) {
  int na = isnan(ka), nb = isnan(kb);
  if (na != nb)
    return nb;
  if (!na && ka != kb)
    return ka > kb;
  return higher_first ? a > b : a < b;
}

/* Sorts idx[0..n) best first by key[idx[i]] (moert_ranks_before). Bottom-up
 * merge sort, O(n log n); `tmp` holds n entries. The order is total, so the
 * result does not depend on the algorithm, only on the keys. */
static inline void moert_sort_ranked(const float *key, int64_t *idx, int64_t n,
                                     int higher_first, int64_t *tmp) {
  int64_t *src = idx, *dst = tmp;
  for (int64_t width = 1; width < n; width *= 2) {
    for (int64_t lo = 0; lo < n; lo += 2 * width) {
      int64_t mid = lo + width < n ? lo + width : n;
      int64_t hi = lo + 2 * width < n ? lo + 2 * width : n;
      int64_t a = lo, b = mid, o = lo;
      while (a < mid && b < hi) {
        if (moert_ranks_before(key[src[b]], src[b], key[src[a]], src[a],
                               higher_first))
          dst[o++] = src[b++];
        else
          dst[o++] = src[a++];
      }
      while (a < mid)
        dst[o++] = src[a++];
      while (b < hi)
        dst[o++] = src[b++];
    }
    int64_t *swap = src;
    src = dst;
    dst = swap;
  }
  if (src != idx)
    memcpy(idx, src, (size_t)n * sizeof(int64_t));
}

#endif /* MOERT_SRC_CPU_KERNEL_UTIL_H */
