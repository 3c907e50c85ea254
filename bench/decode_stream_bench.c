/*===- decode_stream_bench.c - The decode product's weight stream, one core -===*
 *
 * What streaming the weights costs the decode path's product at prefill
 * sizes (DeepSeek-fine T=512: about 48 rows per routed expert): the same
 * 6 x 64 register tile and call order as the expert kernel's decode phase 1
 * on kept panels (runtime/src/cpu/expert_ffn_kernels.h, pdec1): for each
 * K slice of 128, for each pair of packed panels, every 6-row tile; the
 * sums of all slices but the first loaded and stored per call. Each call of
 * expert() multiplies one F block (1 MiB of panels); successive calls walk
 * through a region of REGION_MB MiB, so the panels come from L2 (1), L3 or
 * DRAM (hundreds of MiB), with or without the kernel's software prefetch of
 * the next pair's panels (prefetcht1, spread over the step's tiles in bursts
 * every 24 k steps). x rows are 48 token rows of a 2 MiB activation matrix,
 * 4 KiB apart, in scattered order.
 *
 *   clang-22 -O2 -march=native -ffp-contract=off bench/decode_stream_bench.c \
 *       -o decode_stream_bench
 *   ./decode_stream_bench [REGION_MB ...]     (default: 1 8 512)
 *
 * Prints GFLOP/s without and with the prefetch per region, best of 5 runs.
 * One thread, AVX-512 only.
 *
 *===----------------------------------------------------------------------===*/

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifndef __AVX512F__
int main(void) {
  fprintf(stderr, "decode_stream_bench: needs AVX-512 (build with -march=native on such a CPU)\n");
  return 1;
}
#else

enum {
  D = 1024,     /* depth of the product (model dimension) */
  KC = 128,     /* K slice (the kernel's k_block on Intel) */
  ACCW = 256,   /* sums per row: one F block of 128 gate + 128 up units */
  PANEL = 32,   /* floats per packed-panel row (2 vectors) */
  XROWS = 512,  /* token rows of the activation matrix */
  ROWS = 48,    /* rows of the expert */
  TILE = 6,     /* rows per register tile */
  KCHUNK = 24,  /* k steps between prefetch bursts */
};

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The tile: c[i][coff + 0:64] (=|+=) sum_k a[i][aoff + k] * B[k][0:64],
 * B as two panels bps floats apart; before each chunk of k steps it issues
 * its share of the next panels' prefetches (*pf, *pfn lines left). */
static inline __attribute__((always_inline)) void
tile(const float *const *a, long aoff, const float *b, long bps, float *const *c,
     long coff, int load_c, const char **pf, long npf) {
  __m512 acc[TILE][4];
  const float *ap[TILE];
  for (int i = 0; i < TILE; ++i) {
    ap[i] = a[i] + aoff;
    for (int v = 0; v < 4; ++v)
      acc[i][v] = load_c ? _mm512_loadu_ps(c[i] + coff + 16 * v) : _mm512_setzero_ps();
  }
  const long chunks = (KC + KCHUNK - 1) / KCHUNK;
  const long per_chunk = (npf + chunks - 1) / chunks;
  for (long kk = 0; kk < KC; kk += KCHUNK) {
    for (long j = 0; j < per_chunk && npf > 0; ++j, --npf) {
      __builtin_prefetch(*pf, 0, 2);
      *pf += 64;
    }
    const long ke = kk + KCHUNK < KC ? kk + KCHUNK : KC;
#pragma GCC unroll 2
    for (long k = kk; k < ke; ++k) {
      const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
      const __m512 b2 = _mm512_load_ps(b + bps), b3 = _mm512_load_ps(b + bps + 16);
      b += PANEL;
      for (int i = 0; i < TILE; ++i) {
        const __m512 av = _mm512_set1_ps(ap[i][k]);
        acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
        acc[i][2] = _mm512_fmadd_ps(av, b2, acc[i][2]);
        acc[i][3] = _mm512_fmadd_ps(av, b3, acc[i][3]);
      }
    }
  }
  for (int i = 0; i < TILE; ++i)
    for (int v = 0; v < 4; ++v)
      _mm512_storeu_ps(c[i] + coff + 16 * v, acc[i][v]);
}

/* One F block of one expert: panels w ([D / KC] slices of [ACCW / PANEL]
 * panels of [KC][PANEL]), rows x, sums acc. */
static __attribute__((noinline)) void expert(const float *const *x, const float *w,
                                             float *const *acc, int prefetch) {
  for (long k0 = 0; k0 < D; k0 += KC) {
    const float *slice = w + k0 * ACCW;
    for (long q = 0; q < ACCW / PANEL; q += 2) {
      const float *b = slice + q * KC * PANEL;
      /* The next pair of panels: the next one of this slice, or the next
       * slice's first (adjacent either way). */
      const char *pf = (const char *)(b + 2 * KC * PANEL);
      long left = prefetch ? 2 * KC * PANEL * (long)sizeof(float) / 64 : 0;
      const long per_tile = (left + ROWS / TILE - 1) / (ROWS / TILE);
      for (int i0 = 0; i0 < ROWS; i0 += TILE) {
        const long n = left < per_tile ? left : per_tile;
        left -= n;
        tile(x + i0, k0, b, KC * PANEL, acc + i0, q * PANEL, k0 > 0, &pf, n);
      }
    }
  }
}

int main(int argc, char **argv) {
  long regions[8] = {1, 8, 512};
  int nr = 3;
  if (argc > 1) {
    nr = 0;
    for (int i = 1; i < argc && nr < 8; ++i) {
      char *end;
      const long v = strtol(argv[i], &end, 10);
      if (*end || v < 1 || v > 8192) {
        fprintf(stderr, "decode_stream_bench: REGION_MB must be 1..8192, got '%s'\n", argv[i]);
        return 1;
      }
      regions[nr++] = v;
    }
  }
  long rmax = 0;
  for (int i = 0; i < nr; ++i)
    rmax = regions[i] > rmax ? regions[i] : rmax;
  const long block = (long)D * ACCW; /* floats of one F block's panels: 1 MiB */
  /* One block more than the largest region: the prefetch of a block's last
   * pair reaches into the next. */
  float *W = aligned_alloc(64, (size_t)(rmax + 1) * (size_t)block * sizeof(float));
  float *X = aligned_alloc(64, (size_t)XROWS * D * sizeof(float));
  float *A = aligned_alloc(64, (size_t)ROWS * ACCW * sizeof(float));
  if (!W || !X || !A) {
    fprintf(stderr, "decode_stream_bench: out of memory\n");
    return 1;
  }
  for (long i = 0; i < (rmax + 1) * block; ++i)
    W[i] = 1e-3f * (float)(i % 5);
  for (long i = 0; i < (long)XROWS * D; ++i)
    X[i] = 1e-3f * (float)(i % 7);
  const float *xr[ROWS];
  float *ar[ROWS];
  for (int i = 0; i < ROWS; ++i) {
    xr[i] = X + (long)((i * 37 + 11) % XROWS) * D; /* scattered token rows */
    ar[i] = A + (long)i * ACCW;
  }
  const long calls = 200;
  const double flops = 2.0 * ROWS * D * ACCW * (double)calls;
  for (int r = 0; r < nr; ++r)
    for (int prefetch = 0; prefetch < 2; ++prefetch) {
      double best = 1e30;
      for (int run = 0; run < 5; ++run) {
        const double t = now();
        for (long j = 0; j < calls; ++j)
          expert(xr, W + (j % regions[r]) * block, ar, prefetch);
        const double dt = now() - t;
        best = dt < best ? dt : best;
      }
      printf("panels from a %5ld MiB region, %-11s %7.1f GFLOP/s\n", regions[r],
             prefetch ? "prefetch:" : "no prefetch:", flops / best / 1e9);
    }
  /* Keep the sums observable. */
  return A[1] == 12345.0f ? 2 : 0;
}
#endif
