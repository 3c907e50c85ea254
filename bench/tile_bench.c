/*===- tile_bench.c - GEMM register tiles of the expert kernel, one core ---===*
 *
 * How fast each register-tile shape multiplies when its operands sit in the
 * caches, as the expert kernel's GEMM path runs them: a block of m rows of A
 * (row pointers, 4 KiB apart like token rows of D = 1024) times packed
 * panels of B ([KC][16 NV] each, 256 columns in all, in L2), sums loaded
 * from and stored to C per call (the K slices' round trip). One thread,
 * AVX-512 only. The kernel (runtime/src/cpu/expert_ffn_kernels.h) uses
 * 8 x 32 (ukr: one panel) and, since the paired tile, 6 x 64 (ukr_pair: two
 * adjacent panels).
 *
 *   clang-22 -O2 -march=native -ffp-contract=off bench/tile_bench.c -o tile_bench
 *   ./tile_bench [KC ...]     (default: 128 256)
 *   (-DTILE_ROWS=48: blocks of 48 rows instead of 96)
 *
 * Prints GFLOP/s per shape: rows x columns, best of 7 runs.
 *
 *===----------------------------------------------------------------------===*/

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef __AVX512F__
int main(void) {
  fprintf(stderr, "tile_bench: needs AVX-512 (build with -march=native on such a CPU)\n");
  return 1;
}
#else

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#ifndef TILE_ROWS
#define TILE_ROWS 96 /* rows of the block (-DTILE_ROWS=48: a DeepSeek-fine expert) */
#endif
enum { LDA = 1024, NCOLS = 256, ROWS = TILE_ROWS };

/* C[RM x 16 NV] += A[RM x K] * B[K x 16 NV]: the kernel's tile form. */
static inline __attribute__((always_inline)) void
tile(const int RM, const int NV, long K, const float *const *a, const float *b,
     float *const *c, long coff) {
  __m512 acc[16][4];
  const float *ap[16];
#pragma GCC unroll 16
  for (int i = 0; i < RM; ++i) {
    ap[i] = a[i];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      acc[i][v] = _mm512_loadu_ps(c[i] + coff + 16 * v);
  }
#pragma GCC unroll 2
  for (long k = 0; k < K; ++k) {
    __m512 bv[4];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      bv[v] = _mm512_load_ps(b + 16 * v);
    b += 16 * NV;
#pragma GCC unroll 16
    for (int i = 0; i < RM; ++i) {
      const __m512 av = _mm512_set1_ps(ap[i][k]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < RM; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      _mm512_storeu_ps(c[i] + coff + 16 * v, acc[i][v]);
}

/* Every panel over every row tile (panel outer: B stays in L1/L2 while the
 * row tiles pass over it), as the kernel orders its calls. */
#define SHAPE(RM, NV)                                                          \
  static __attribute__((noinline)) void run_##RM##x##NV(                       \
      long m, long kc, const float *A, const float *B, float **crow) {         \
    const float *ap[16];                                                       \
    for (long q = 0; q < NCOLS / (16 * NV); ++q)                               \
      for (long i0 = 0; i0 + RM <= m; i0 += RM) {                              \
        for (int i = 0; i < RM; ++i)                                           \
          ap[i] = A + (i0 + i) * LDA;                                          \
        tile(RM, NV, kc, ap, B + q * kc * 16 * NV, crow + i0, q * 16 * NV);    \
      }                                                                        \
  }
SHAPE(8, 2)
SHAPE(12, 2)
SHAPE(6, 4)
SHAPE(8, 3)
SHAPE(4, 4)

typedef void (*RunFn)(long, long, const float *, const float *, float **);

static void bench(const char *name, RunFn fn, int rm, int nv, long kc,
                  const float *A, const float *B, float **crow) {
  const long m = ROWS / rm * rm, reps = 20;
  double best = 1e30;
  for (int r = 0; r < 7; ++r) {
    double t = now();
    for (long j = 0; j < reps; ++j)
      fn(m, kc, A, B, crow);
    t = now() - t;
    if (t < best)
      best = t;
  }
  /* The columns the shape covers: whole tiles of 16 NV (240 of the 256
   * for 3 vectors). */
  const double cols = (double)(NCOLS / (16 * nv) * 16 * nv);
  const double flops = 2.0 * (double)m * (double)kc * cols * (double)reps;
  printf("%-8s (%2d rows x %2d columns)  KC=%-4ld %7.1f GFLOP/s\n", name, rm, 16 * nv,
         kc, flops / best / 1e9);
}

int main(int argc, char **argv) {
  long kcs[8] = {128, 256};
  int nk = 2;
  if (argc > 1) {
    nk = 0;
    for (int i = 1; i < argc && nk < 8; ++i) {
      long v = strtol(argv[i], NULL, 10);
      if (v < 1 || v > 4096) {
        fprintf(stderr, "tile_bench: KC must be 1..4096, got '%s'\n", argv[i]);
        return 1;
      }
      kcs[nk++] = v;
    }
  }
  long kmax = 0;
  for (int i = 0; i < nk; ++i)
    kmax = kcs[i] > kmax ? kcs[i] : kmax;
  float *A = aligned_alloc(64, (size_t)ROWS * LDA * sizeof(float));
  float *B = aligned_alloc(64, (size_t)kmax * NCOLS * sizeof(float));
  float *C = aligned_alloc(64, (size_t)ROWS * NCOLS * sizeof(float));
  float **crow = malloc(ROWS * sizeof(float *));
  if (!A || !B || !C || !crow) {
    fprintf(stderr, "tile_bench: out of memory\n");
    return 1;
  }
  for (long i = 0; i < (long)ROWS * LDA; ++i)
    A[i] = 1e-3f * (float)(i % 7);
  for (long i = 0; i < kmax * NCOLS; ++i)
    B[i] = 1e-3f * (float)(i % 5);
  memset(C, 0, (size_t)ROWS * NCOLS * sizeof(float));
  for (long i = 0; i < ROWS; ++i)
    crow[i] = C + i * NCOLS;
  for (int i = 0; i < nk; ++i) {
    bench("ukr", run_8x2, 8, 2, kcs[i], A, B, crow);
    bench("12 rows", run_12x2, 12, 2, kcs[i], A, B, crow);
    bench("ukr_pair", run_6x4, 6, 4, kcs[i], A, B, crow);
    bench("3 vecs", run_8x3, 8, 3, kcs[i], A, B, crow);
    bench("4 rows", run_4x4, 4, 4, kcs[i], A, B, crow);
  }
  /* Keep the sums observable. */
  return C[1] == 12345.0f ? 2 : 0;
}
#endif
