/*===- expert_ffn_bench.c - Benchmark of the fused expert FFN kernel ------===*
 *
 * Mixtral-small-like routed experts (D = 1024, F = 3584, E = 8, k = 2,
 * SwiGLU, separate gate/up) at T tokens, through
 * _mlir_ciface_moert_cpu_expert_ffn:
 *   - single-threaded (no hook) and with a pthread parallel_for hook;
 *   - OpenBLAS cblas_sgemm on one [T*k, D] x [D, 3F] product (equal FLOPs,
 *     one weight matrix: an upper bound for a dense GEMM of that size);
 *   - a naive per-expert loop: gather rows, three cblas_sgemm calls, SwiGLU,
 *     scatter (what a framework without a fused kernel does).
 * FLOPs counted: 2 * rows * (2 D F + F D) (the products only).
 *
 * Build (no CMake needed), from the repository root:
 *   gcc -O2 -std=c11 -ffp-contract=off -Iruntime/include \
 *       bench/expert_ffn_bench.c runtime/src/cpu/expert_ffn.c runtime/src/cpu/dispatch.c \
 *       runtime/src/cpu/dtype.c -lopenblas -lpthread -lm -o /tmp/expert_ffn_bench
 * Run: /tmp/expert_ffn_bench [--threads N] [--layout in_out|out_in]
 *        [--dtype f32|f16|bf16] [--reps N] [--tokens 1,8,64,512]
 *        [--isa auto|avx2|scalar] [--hugepages] [--kernel-only] [--skew P]
 * --hugepages: madvise(MADV_HUGEPAGE) on every large buffer (weights
 * included), for the kernel and OpenBLAS alike. --skew P: a token's first
 * choice is expert 0 with probability P (0.5: expert 0 gets about half of
 * the tokens).
 *
 *===----------------------------------------------------------------------===*/

#define _GNU_SOURCE
#include "moert/cpu_kernels.h"

#include "../runtime/src/cpu/dtype.h"
#include "../runtime/src/cpu/expert_ffn_internal.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/*===----------------------------------------------------------------------===*
 * A minimal persistent pthread pool implementing moert_parallel_hook:
 * parallel_for hands out one task at a time from an atomic counter.
 *===----------------------------------------------------------------------===*/

typedef struct {
  int nthreads;
  pthread_t *threads;
  pthread_mutex_t mu;
  pthread_cond_t cv_start, cv_done;
  int64_t generation;
  int active; /* workers still running the current job */
  int quit;
  /* current job */
  int64_t n;
  moert_task_fn fn;
  void *arg;
  atomic_llong next;
} Pool;

static void pool_work(Pool *p) {
  for (;;) {
    long long i = atomic_fetch_add(&p->next, 1);
    if (i >= p->n)
      return;
    p->fn(p->arg, i, i + 1);
  }
}

static void *pool_main(void *arg) {
  Pool *p = (Pool *)arg;
  int64_t seen = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (p->generation == seen && !p->quit)
      pthread_cond_wait(&p->cv_start, &p->mu);
    if (p->quit)
      break;
    seen = p->generation;
    pthread_mutex_unlock(&p->mu);
    pool_work(p);
    pthread_mutex_lock(&p->mu);
    if (--p->active == 0)
      pthread_cond_signal(&p->cv_done);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static void pool_parallel_for(void *user, int64_t n, moert_task_fn fn, void *arg) {
  Pool *p = (Pool *)user;
  pthread_mutex_lock(&p->mu);
  p->n = n;
  p->fn = fn;
  p->arg = arg;
  atomic_store(&p->next, 0);
  p->active = p->nthreads - 1;
  ++p->generation;
  pthread_cond_broadcast(&p->cv_start);
  pthread_mutex_unlock(&p->mu);
  pool_work(p);
  pthread_mutex_lock(&p->mu);
  while (p->active > 0)
    pthread_cond_wait(&p->cv_done, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

static void pool_init(Pool *p, int nthreads) {
  memset(p, 0, sizeof *p);
  p->nthreads = nthreads;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv_start, NULL);
  pthread_cond_init(&p->cv_done, NULL);
  p->threads = (pthread_t *)calloc((size_t)nthreads, sizeof(pthread_t));
  for (int i = 1; i < nthreads; ++i)
    pthread_create(&p->threads[i], NULL, pool_main, p);
}

static void pool_destroy(Pool *p) {
  pthread_mutex_lock(&p->mu);
  p->quit = 1;
  pthread_cond_broadcast(&p->cv_start);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->nthreads; ++i)
    pthread_join(p->threads[i], NULL);
  free(p->threads);
}

/*===----------------------------------------------------------------------===*
 * Problem
 *===----------------------------------------------------------------------===*/

enum { D_ = 1024, F_ = 3584, E_ = 8, K_ = 2 };

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 11);
}
static float frand(float scale) { return ((float)(rnd() & 0xFFFFFF) / 8388608.0f - 1.0f) * scale; }

typedef struct {
  int layout, dtype;
  size_t es;
  void *w1, *w3, *w2;   /* stored weights */
  float *w1f, *w3f, *w2f; /* f32 in_out copies for the BLAS baselines */
} Weights;

static int use_hugepages = 0;

static void *alloc_weights(size_t n, size_t es) {
  void *p = NULL;
  size_t bytes = n * es;
  if (posix_memalign(&p, use_hugepages ? (size_t)2 << 20 : 64, bytes ? bytes : 1))
    abort();
#ifdef MADV_HUGEPAGE
  if (use_hugepages && bytes >= ((size_t)2 << 20))
    madvise(p, bytes, MADV_HUGEPAGE);
#endif
  return p;
}

static void store(void *dst, size_t i, float v, int dtype) {
  if (dtype == MOERT_F32)
    ((float *)dst)[i] = v;
  else
    ((uint16_t *)dst)[i] = dtype == MOERT_F16 ? moert_f32_to_f16(v) : moert_f32_to_bf16(v);
}

static void make_weights(Weights *w, int layout, int dtype) {
  w->layout = layout;
  w->dtype = dtype;
  w->es = dtype == MOERT_F32 ? 4 : 2;
  size_t n = (size_t)E_ * D_ * F_;
  w->w1 = alloc_weights(n, w->es);
  w->w3 = alloc_weights(n, w->es);
  w->w2 = alloc_weights(n, w->es);
  w->w1f = (float *)alloc_weights(n, 4);
  w->w3f = (float *)alloc_weights(n, 4);
  w->w2f = (float *)alloc_weights(n, 4);
  const float s1 = 1.0f / 32.0f, s2 = 1.0f / 60.0f;
  for (size_t e = 0; e < E_; ++e)
    for (size_t d = 0; d < D_; ++d)
      for (size_t f = 0; f < F_; ++f) {
        size_t io = (e * D_ + d) * F_ + f;           /* [E, D, F] */
        size_t oi = (e * F_ + f) * D_ + d;           /* [E, F, D] */
        float a = frand(s1), b = frand(s1), c = frand(s2);
        store(w->w1, layout ? oi : io, a, dtype);
        store(w->w3, layout ? oi : io, b, dtype);
        /* w2: in_out [E, F, D] (index oi); out_in [E, D, F] (index io) */
        store(w->w2, layout ? io : oi, c, dtype);
        w->w1f[io] = a;
        w->w3f[io] = b;
        w->w2f[oi] = c;
      }
}

static moert_memref_3d d3(void *p, int64_t a, int64_t b, int64_t c) {
  moert_memref_3d m;
  m.allocated = m.aligned = p;
  m.offset = 0;
  m.sizes[0] = a;
  m.sizes[1] = b;
  m.sizes[2] = c;
  m.strides[0] = b * c;
  m.strides[1] = c;
  m.strides[2] = 1;
  return m;
}

static moert_memref_2d d2(void *p, int64_t a, int64_t b) {
  moert_memref_2d m;
  m.allocated = m.aligned = p;
  m.offset = 0;
  m.sizes[0] = a;
  m.sizes[1] = b;
  m.strides[0] = b;
  m.strides[1] = 1;
  return m;
}

static moert_memref_1d d1(void *p, int64_t a) {
  moert_memref_1d m;
  m.allocated = m.aligned = p;
  m.offset = 0;
  m.sizes[0] = a;
  m.strides[0] = 1;
  return m;
}

typedef struct {
  int64_t T, R;
  float *x, *out;
  int32_t *row_token, *counts;
} Batch;

/* Top-2 routing, ragged segments sorted by expert: uniform, except that
 * with probability skew a token's first choice is expert 0 (skew = 0.5
 * gives expert 0 about half of the tokens, the benchmark's skewed case). */
static void make_batch(Batch *b, int64_t T, double skew) {
  b->T = T;
  b->R = T * K_;
  b->x = (float *)alloc_weights((size_t)(T * D_), 4);
  b->out = (float *)alloc_weights((size_t)(b->R * D_), 4);
  b->row_token = (int32_t *)malloc((size_t)b->R * 4);
  b->counts = (int32_t *)calloc(E_, 4);
  for (int64_t i = 0; i < T * D_; ++i)
    b->x[i] = frand(1.0f);
  int32_t *choice = (int32_t *)malloc((size_t)b->R * 4);
  for (int64_t t = 0; t < T; ++t) {
    int32_t a = (int32_t)(rnd() % E_), c;
    if (skew > 0 && (double)(rnd() % 1000000) < skew * 1e6)
      a = 0;
    do
      c = (int32_t)(rnd() % E_);
    while (c == a);
    choice[t * 2] = a;
    choice[t * 2 + 1] = c;
    b->counts[a]++;
    b->counts[c]++;
  }
  int64_t start[E_ + 1];
  start[0] = 0;
  for (int e = 0; e < E_; ++e)
    start[e + 1] = start[e] + b->counts[e];
  for (int64_t t = 0; t < T; ++t)
    for (int j = 0; j < 2; ++j)
      b->row_token[start[choice[t * 2 + j]]++] = (int32_t)t;
  free(choice);
}

static void run_kernel(Weights *w, Batch *b) {
  moert_memref_2d x = d2(b->x, b->T, D_), out = d2(b->out, b->R, D_);
  moert_memref_1d rt = d1(b->row_token, b->R), ct = d1(b->counts, E_);
  moert_memref_3d w1 = w->layout ? d3(w->w1, E_, F_, D_) : d3(w->w1, E_, D_, F_);
  moert_memref_3d w3 = w->layout ? d3(w->w3, E_, F_, D_) : d3(w->w3, E_, D_, F_);
  moert_memref_3d w2 = w->layout ? d3(w->w2, E_, D_, F_) : d3(w->w2, E_, F_, D_);
  moert_memref_2d none = d2(NULL, 0, 0);
  moert_memref_3d no_shared = d3(NULL, 0, 0, 0);
  _mlir_ciface_moert_cpu_expert_ffn(&x, &rt, &ct, &w1, &w3, &w2, &none, &none,
                                    &no_shared, &no_shared, &no_shared, &none, &none,
                                    &none, &out, -1, 1, 0, 0, w->layout, 1.0, 0.0, 0.0,
                                    w->dtype, 0, 0);
}

/* Naive: per expert, gather its rows, sgemm x W1, x W3, SwiGLU, sgemm W2,
 * scatter. Scratch preallocated. */
typedef struct {
  float *xg, *g, *u, *y;
} Naive;

static void run_naive(Weights *w, Batch *b, Naive *s) {
  int64_t row = 0;
  for (int e = 0; e < E_; ++e) {
    int n = b->counts[e];
    if (n == 0)
      continue;
    for (int i = 0; i < n; ++i)
      memcpy(s->xg + (size_t)i * D_, b->x + (size_t)b->row_token[row + i] * D_, D_ * 4);
    const float *W1 = w->w1f + (size_t)e * D_ * F_, *W3 = w->w3f + (size_t)e * D_ * F_;
    const float *W2 = w->w2f + (size_t)e * F_ * D_;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, F_, D_, 1.0f, s->xg, D_,
                W1, F_, 0.0f, s->g, F_);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, F_, D_, 1.0f, s->xg, D_,
                W3, F_, 0.0f, s->u, F_);
    for (size_t i = 0; i < (size_t)n * F_; ++i)
      s->g[i] = s->g[i] / (1.0f + expf(-s->g[i])) * s->u[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D_, F_, 1.0f, s->g, F_,
                W2, D_, 0.0f, b->out + (size_t)row * D_, D_);
    row += n;
  }
}

typedef struct {
  double best, median;
} Timing;

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

#define TIME(res, reps, stmt)                                                  \
  do {                                                                         \
    double ts_[64];                                                            \
    int r_ = (reps) > 64 ? 64 : (reps);                                        \
    stmt; /* warm-up */                                                        \
    for (int i_ = 0; i_ < r_; ++i_) {                                          \
      double t0_ = now_s();                                                    \
      stmt;                                                                    \
      ts_[i_] = now_s() - t0_;                                                 \
    }                                                                          \
    qsort(ts_, (size_t)r_, sizeof(double), cmp_d);                             \
    (res).best = ts_[0];                                                       \
    (res).median = ts_[r_ / 2];                                                \
  } while (0)

static void report(const char *what, int64_t T, double flops, Timing t) {
  printf("  T=%-4lld %-34s %9.3f ms  %7.1f GFLOP/s   (median %.3f ms)\n", (long long)T,
         what, t.best * 1e3, flops / t.best * 1e-9, t.median * 1e3);
}

static double max_rel_diff(const float *a, const float *b, size_t n) {
  double m = 0, r = 0;
  for (size_t i = 0; i < n; ++i) {
    m = fmax(m, fabs((double)a[i] - (double)b[i]));
    r = fmax(r, fabs((double)b[i]));
  }
  return r > 0 ? m / r : m;
}

int main(int argc, char **argv) {
  int threads = 2, layout = 0, dtype = MOERT_F32, reps = 0, isa = -1;
  int64_t tokens[16] = {1, 8, 64, 512};
  int64_t row_block = 0, f_block = 0, k_block = 0, decode_rows = 0;
  int kernel_only = 0;
  int ntok = 4;
  double skew = 0.0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--layout") && i + 1 < argc)
      layout = !strcmp(argv[++i], "out_in");
    else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
      ++i;
      dtype = !strcmp(argv[i], "f16") ? MOERT_F16 : !strcmp(argv[i], "bf16") ? MOERT_BF16 : MOERT_F32;
    } else if (!strcmp(argv[i], "--rb") && i + 1 < argc)
      row_block = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--fb") && i + 1 < argc)
      f_block = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--kc") && i + 1 < argc)
      k_block = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--dec") && i + 1 < argc)
      decode_rows = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--skew") && i + 1 < argc)
      skew = atof(argv[++i]);
    else if (!strcmp(argv[i], "--kernel-only"))
      kernel_only = 1;
    else if (!strcmp(argv[i], "--hugepages"))
      use_hugepages = 1;
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
      ++i;
      isa = !strcmp(argv[i], "scalar") ? 0 : !strcmp(argv[i], "avx2") ? 1 : -1;
    } else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) {
      ntok = 0;
      for (char *s = strtok(argv[++i], ","); s && ntok < 16; s = strtok(NULL, ","))
        tokens[ntok++] = atoll(s);
    } else {
      fprintf(stderr, "usage: %s [--threads N] [--layout in_out|out_in] "
                      "[--dtype f32|f16|bf16] [--reps N] [--tokens 1,8,...] "
                      "[--isa auto|avx2|scalar] [--hugepages] [--kernel-only] [--skew P]\n"
                      "  tuning: [--rb rows] [--fb cols] [--kc depth] [--dec rows]\n", argv[0]);
      return 2;
    }
  }
  moert_expert_ffn_tuning tune;
  memset(&tune, 0, sizeof tune);
  tune.isa = isa;
  tune.row_block = row_block;
  tune.f_block = f_block;
  tune.k_block = k_block;
  tune.decode_rows = decode_rows;
  moert_expert_ffn_set_tuning(&tune);
  static const char *isas[] = {"scalar", "AVX2+FMA", "AVX-512"};
  static const char *dts[] = {"f32", "f16", "bf16"};
  printf("expert FFN: D=%d F=%d E=%d k=%d SwiGLU, layout %s, weights %s, kernel ISA %s\n",
         D_, F_, E_, K_, layout ? "out_in" : "in_out", dts[dtype], isas[moert_expert_ffn_isa()]);
  printf("OpenBLAS %s, core %s\n", openblas_get_config(), openblas_get_corename());

  Weights w;
  make_weights(&w, layout, dtype);
  Pool pool;
  pool_init(&pool, threads);
  moert_parallel_hook hook = {&pool, threads, pool_parallel_for};

  for (int ti = 0; ti < ntok; ++ti) {
    int64_t T = tokens[ti];
    Batch b;
    make_batch(&b, T, skew);
    const double flops = 2.0 * (double)b.R * (3.0 * D_ * F_);
    int r = reps > 0 ? reps : T >= 512 ? 5 : T >= 64 ? 10 : 20;
    Timing t;
    printf("T=%lld (rows %lld, per expert:", (long long)T, (long long)b.R);
    for (int e = 0; e < E_; ++e)
      printf(" %d", b.counts[e]);
    printf(")\n");

    moert_cpu_set_parallel_hook(NULL);
    TIME(t, r, run_kernel(&w, &b));
    report("kernel, 1 thread", T, flops, t);
    float *ref = (float *)malloc((size_t)b.R * D_ * 4);
    memcpy(ref, b.out, (size_t)b.R * D_ * 4);
    moert_cpu_set_parallel_hook(&hook);
    TIME(t, r, run_kernel(&w, &b));
    char label[64];
    snprintf(label, sizeof label, "kernel, %d threads (hook)", threads);
    report(label, T, flops, t);
    if (memcmp(ref, b.out, (size_t)b.R * D_ * 4))
      printf("  !! threaded result differs from serial\n");
    moert_cpu_set_parallel_hook(NULL);
    if (kernel_only) {
      free(ref);
      free(b.x);
      free(b.out);
      free(b.row_token);
      free(b.counts);
      continue;
    }

    /* Equal-FLOP dense sgemm: [R, D] x [D, 3F]. */
    float *bw = w.w1f; /* [D, 3F] view of E*D*F floats: needs 3 D F <= E D F */
    float *c = (float *)alloc_weights((size_t)b.R * 3 * F_, 4);
    float *a = (float *)alloc_weights((size_t)b.R * D_, 4);
    for (int64_t i = 0; i < b.R * D_; ++i)
      a[i] = frand(1.0f);
    for (int nt = 1; nt <= threads; nt += threads - 1 > 0 ? threads - 1 : 1) {
      openblas_set_num_threads(nt);
      TIME(t, r,
           cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)b.R, 3 * F_, D_, 1.0f,
                       a, D_, bw, 3 * F_, 0.0f, c, 3 * F_));
      snprintf(label, sizeof label, "OpenBLAS sgemm equal-FLOP, %dT", nt);
      report(label, T, flops, t);
      if (threads == 1)
        break;
    }
    Naive s;
    int64_t maxn = 0;
    for (int e = 0; e < E_; ++e)
      maxn = b.counts[e] > maxn ? b.counts[e] : maxn;
    s.xg = (float *)alloc_weights((size_t)(maxn + 1) * D_, 4);
    s.g = (float *)alloc_weights((size_t)(maxn + 1) * F_, 4);
    s.u = (float *)alloc_weights((size_t)(maxn + 1) * F_, 4);
    for (int nt = 1; nt <= threads; nt += threads - 1 > 0 ? threads - 1 : 1) {
      openblas_set_num_threads(nt);
      TIME(t, r, run_naive(&w, &b, &s));
      snprintf(label, sizeof label, "naive per-expert sgemm, %dT", nt);
      report(label, T, flops, t);
      if (threads == 1)
        break;
    }
    if (dtype == MOERT_F32)
      printf("  kernel vs naive: max rel diff %.2e\n", max_rel_diff(ref, b.out, (size_t)b.R * D_));
    free(s.xg);
    free(s.g);
    free(s.u);
    free(c);
    free(a);
    free(ref);
    free(b.x);
    free(b.out);
    free(b.row_token);
    free(b.counts);
  }
  pool_destroy(&pool);
  return 0;
}
