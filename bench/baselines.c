/*===- baselines.c - Reference points measured in the benchmark's run -----===*
 *
 * Modes (all fp32, times are per call, best of a few repetitions):
 *   sgemm M N K            OpenBLAS cblas_sgemm on [M,K] x [K,N]
 *   loop  D F E K T [S FS [glu|mlp]]
 *                          a Hugging Face style MoE block on OpenBLAS: route
 *                          (softmax top-k, renormalised), then a loop over
 *                          experts: gather the expert's tokens, three sgemms
 *                          with SiLU-GLU (glu, the default; Mixtral) or two
 *                          with ReLU (mlp; Switch), weighted scatter-add;
 *                          then S shared experts of width FS over every
 *                          token, added unweighted (DeepSeek)
 *   bandwidth MiB          DRAM read bandwidth: vectorised sums over a
 *                          buffer far larger than the last-level cache,
 *                          split over the threads
 * Threads: MOE_BENCH_THREADS (default 1) for OpenBLAS and the bandwidth test.
 * Output: one line "result <mode> ms=<ms> gflops=<g> gbps=<g>".
 *===----------------------------------------------------------------------===*/

#define _GNU_SOURCE
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

void openblas_set_num_threads(int);

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static float *randn(size_t n, unsigned seed, float scale) {
  float *p = (float *)aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64);
  uint64_t s = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    p[i] = ((float)((s >> 33) & 0xffffff) / (float)0xffffff - 0.5f) * 2.0f * scale;
  }
  return p;
}

static int threads_from_env(void) {
  const char *s = getenv("MOE_BENCH_THREADS");
  int n = s ? atoi(s) : 1;
  return n > 0 ? n : 1;
}

/* Repeats `fn` until ~min_ms have passed (at least `min_reps`), returns the best time. */
#define BEST_OF(min_reps, min_ms, ...)                                       \
  ({                                                                           \
    double best = 1e30, start_all = now_ms();                                  \
    for (int rep = 0; rep < (min_reps) || now_ms() - start_all < (min_ms); ++rep) { \
      double t0 = now_ms();                                                    \
      __VA_ARGS__;                                                                  \
      double dt = now_ms() - t0;                                               \
      if (dt < best) best = dt;                                                \
    }                                                                          \
    best;                                                                      \
  })

static int mode_sgemm(int M, int N, int K) {
  float *a = randn((size_t)M * K, 1, 1.0f), *b = randn((size_t)K * N, 2, 1.0f);
  float *c = randn((size_t)M * N, 3, 0.0f);
  double ms = BEST_OF(3, 300.0, cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N));
  printf("result sgemm ms=%.4f gflops=%.2f\n", ms, 2.0 * M * N * K / ms / 1e6);
  return 0;
}

/* h[i] = act(h[i]) (* h3[i] for a GLU) for i < n: SiLU-GLU or ReLU. */
static void activate(float *h, const float *h3, size_t n, int glu) {
  if (glu)
    for (size_t i = 0; i < n; ++i) h[i] = h[i] / (1.0f + expf(-h[i])) * h3[i];
  else
    for (size_t i = 0; i < n; ++i) h[i] = h[i] > 0.0f ? h[i] : 0.0f;
}

/* One FFN over n gathered rows xe [n, D] into ye [n, D]: h = act(xe W1)
 * (* xe W3), ye = h W2 (sgemm per product, as a framework's Linear layers). */
static void ffn_rows(int n, int D, int F, int glu, const float *xe, const float *w1,
                     const float *w3, const float *w2, float *h1, float *h3, float *ye) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, F, D, 1.0f, xe, D, w1, F, 0.0f, h1, F);
  if (glu)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, F, D, 1.0f, xe, D, w3, F, 0.0f, h3, F);
  activate(h1, h3, (size_t)n * F, glu);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, F, 1.0f, h1, F, w2, D, 0.0f, ye, D);
}

/* The Hugging Face style block: route (softmax top-K, renormalised), then
 * for each expert gather its tokens, its FFN, and the gate-weighted
 * scatter-add; then S shared experts of width FS over every token, added
 * unweighted (DeepSeek). glu: SiLU-GLU experts (w1, w3, w2), else ReLU MLP
 * experts (w1, w2; Switch). */
static int mode_loop(int D, int F, int E, int K, int T, int S, int FS, int glu) {
  if (D < 1 || F < 1 || E < 1 || K < 1 || K > E || T < 1 || S < 0 || (S > 0 && FS < 1)) {
    fprintf(stderr, "baselines: loop needs D, F, E, T >= 1, 1 <= K <= E, S >= 0 and FS >= 1 with S\n");
    return 1;
  }
  const int FM = F > FS ? F : FS; /* widest hidden layer */
  float *x = randn((size_t)T * D, 1, 1.0f), *wg = randn((size_t)D * E, 2, 0.05f);
  float *w1 = randn((size_t)E * D * F, 3, 0.03f), *w3 = glu ? randn((size_t)E * D * F, 4, 0.03f) : NULL;
  float *w2 = randn((size_t)E * F * D, 5, 0.02f);
  float *sw1 = S ? randn((size_t)S * D * FS, 6, 0.03f) : NULL;
  float *sw3 = S && glu ? randn((size_t)S * D * FS, 7, 0.03f) : NULL;
  float *sw2 = S ? randn((size_t)S * FS * D, 8, 0.02f) : NULL;
  float *logits = malloc(sizeof(float) * T * E), *y = malloc(sizeof(float) * T * D);
  float *xe = malloc(sizeof(float) * T * D), *h1 = malloc(sizeof(float) * T * FM);
  float *h3 = malloc(sizeof(float) * T * FM), *ye = malloc(sizeof(float) * T * D);
  int *sel = malloc(sizeof(int) * T * K), *rows = malloc(sizeof(int) * T);
  float *gw = malloc(sizeof(float) * T * K), *rw = malloc(sizeof(float) * T);
  int active = 0;
  double ms = BEST_OF(3, 300.0, {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, E, D, 1.0f, x, D, wg, E, 0.0f, logits, E);
    for (int t = 0; t < T; ++t) { /* softmax top-k, renormalised */
      float *l = logits + (size_t)t * E, m = l[0], s = 0;
      for (int e = 1; e < E; ++e) m = l[e] > m ? l[e] : m;
      for (int j = 0; j < K; ++j) {
        int best = -1;
        for (int e = 0; e < E; ++e) {
          int taken = 0;
          for (int i = 0; i < j; ++i) taken |= sel[t * K + i] == e;
          if (!taken && (best < 0 || l[e] > l[best])) best = e;
        }
        sel[t * K + j] = best;
        gw[t * K + j] = expf(l[best] - m);
        s += gw[t * K + j];
      }
      for (int j = 0; j < K; ++j) gw[t * K + j] /= s;
    }
    memset(y, 0, sizeof(float) * T * D);
    active = 0;
    for (int e = 0; e < E; ++e) {
      int n = 0;
      for (int t = 0; t < T; ++t)
        for (int j = 0; j < K; ++j)
          if (sel[t * K + j] == e) { rows[n] = t; rw[n] = gw[t * K + j]; ++n; }
      if (!n) continue;
      ++active;
      for (int i = 0; i < n; ++i) memcpy(xe + (size_t)i * D, x + (size_t)rows[i] * D, sizeof(float) * D);
      ffn_rows(n, D, F, glu, xe, w1 + (size_t)e * D * F, glu ? w3 + (size_t)e * D * F : NULL,
               w2 + (size_t)e * F * D, h1, h3, ye);
      for (int i = 0; i < n; ++i)
        for (int d = 0; d < D; ++d) y[(size_t)rows[i] * D + d] += rw[i] * ye[(size_t)i * D + d];
    }
    for (int e = 0; e < S; ++e) {
      ffn_rows(T, D, FS, glu, x, sw1 + (size_t)e * D * FS, glu ? sw3 + (size_t)e * D * FS : NULL,
               sw2 + (size_t)e * FS * D, h1, h3, ye);
      for (size_t i = 0; i < (size_t)T * D; ++i) y[i] += ye[i];
    }
  });
  const int mats = glu ? 3 : 2;
  double flops = 2.0 * T * mats * ((double)K * D * F + (double)S * D * FS);
  double bytes = ((double)active * D * F + (double)S * D * FS) * mats * sizeof(float);
  printf("result loop ms=%.4f gflops=%.2f gbps=%.2f (checksum %.3g)\n", ms, flops / ms / 1e6,
         bytes / ms / 1e6, (double)y[0] + y[(size_t)T * D - 1]);
  return 0;
}

typedef struct { const float *p; size_t n; double sum; } BwTask;
static void *bw_worker(void *arg) {
  BwTask *t = arg;
  /* Eight independent accumulators so the loop is load-bound, not add-bound;
     compilers vectorise it with -O3 -march=native. */
  float acc[16] = {0};
  for (size_t i = 0; i + 16 <= t->n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += t->p[i + j];
  double s = 0;
  for (int j = 0; j < 16; ++j) s += acc[j];
  t->sum = s;
  return NULL;
}

static int mode_bandwidth(int mib, int threads) {
  size_t n = (size_t)mib * 1024 * 1024 / sizeof(float);
  /* On 2 MiB transparent huge pages where the system allows (madvise): with
   * 4 KiB pages the TLB misses, not DRAM, limit two reading threads (about
   * 35 instead of 54 GB/s on the 2-core reference machine), and the
   * kernels' weights sit on huge pages too (moert_weights_load_safetensors_ex). */
  float *buf = NULL;
  if (posix_memalign((void **)&buf, (size_t)2 << 20, n * sizeof(float)) != 0)
    return 1;
#ifdef MADV_HUGEPAGE
  madvise(buf, n * sizeof(float), MADV_HUGEPAGE);
#endif
  for (size_t i = 0; i < n; ++i)
    buf[i] = (float)(i & 1023) * (1.0f / 1024.0f);
  BwTask tasks[64];
  pthread_t tid[64];
  if (threads > 64) threads = 64;
  double ms = BEST_OF(3, 500.0, {
    for (int i = 0; i < threads; ++i) {
      tasks[i].p = buf + n / threads * i;
      tasks[i].n = n / threads;
      pthread_create(&tid[i], NULL, bw_worker, &tasks[i]);
    }
    for (int i = 0; i < threads; ++i) pthread_join(tid[i], NULL);
  });
  double check = 0;
  for (int i = 0; i < threads; ++i) check += tasks[i].sum;
  printf("result bandwidth ms=%.4f gbps=%.2f (checksum %.3g)\n", ms, (double)n * sizeof(float) / ms / 1e6, check);
  return 0;
}

int main(int argc, char **argv) {
  int threads = threads_from_env();
  openblas_set_num_threads(threads);
  if (argc == 5 && !strcmp(argv[1], "sgemm"))
    return mode_sgemm(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
  if ((argc == 7 || argc == 9 || argc == 10) && !strcmp(argv[1], "loop")) {
    int glu = argc < 10 || !strcmp(argv[9], "glu");
    if (argc == 10 && !glu && strcmp(argv[9], "mlp")) {
      fprintf(stderr, "baselines: loop FORM is glu or mlp, not '%s'\n", argv[9]);
      return 1;
    }
    return mode_loop(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]),
                     argc >= 9 ? atoi(argv[7]) : 0, argc >= 9 ? atoi(argv[8]) : 0, glu);
  }
  if (argc == 3 && !strcmp(argv[1], "bandwidth"))
    return mode_bandwidth(atoi(argv[2]), threads);
  fprintf(stderr, "usage: baselines sgemm M N K | loop D F E K T [S FS [glu|mlp]] | bandwidth MiB\n");
  return 1;
}
