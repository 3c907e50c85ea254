/*===- expert_ffn_kernels.h - Expert FFN kernels, one ISA -------*- C -*-===*
 *
 * Internal to runtime/src/cpu/expert_ffn.c, which includes this file once
 * per instruction set after defining
 *
 *   VP       the primitive prefix of expert_ffn_simd.h (s_, y_, z_);
 *   VF       the vector type; VL its length in floats;
 *   MR       rows of the GEMM register tile (the tile is MR x 2 vectors);
 *   ISA_FN   attributes of the non-inline functions (target(...));
 *   ISA_AI   attributes of the inline helpers;
 *   NAME(x)  the instance's name of function x;
 *
 * and undefines them at its end, ready for the next instance.
 *
 * Everything here is `static`. The kernels (see expert_ffn.c for the plan):
 *
 *   ukr        C[MR x 2VL] (=|+=) A[MR x K] * Bpacked[K x 2VL] (+ bias),
 *              A given as MR row pointers (gathered rows, no A packing);
 *   ukr_pair   the GEMM path's tile where 32 registers allow: 6 rows x two
 *              adjacent panels (4VL columns);
 *   pack_block panels of B (W1/W3 or W2) in [K][2VL] panel order, from
 *              either weight layout, converting f16/bf16 to f32;
 *   epi        bias, clamp, activation, (act(g) * (u + shift)) over a row;
 *              epi_panels the same over a block of packed-panel sums;
 *   colrange   the unpacked decode product out[r, c] (+)= x[r, :] . W[:, c]
 *              for a few rows, streaming W once (K blocks kept in L2, the
 *              next block prefetched);
 *   gemm_rows  one expert's row block, fused: per F block, GEMM1 + epilogue
 *              into an L2 tile H[m, FB], then GEMM2 into the output rows;
 *   dec1/dec2  the decode path's two phases from the stored weights;
 *              pdec1/pdec2 the same from the kept panels (kept_panels);
 *              dec1_task/dec2_task pick one; row_fallback, the scratch-free
 *              path used when memory cannot be allocated.
 *
 * Every output element is one fixed chain of roundings that depends on the
 * shapes and the tuning (KC, FB), never on which rows share a tile or which
 * task computed it: rows are independent in every kernel.
 *
 *===----------------------------------------------------------------------===*/

#define VCAT2(a, b) a##b
#define VCAT(a, b) VCAT2(a, b)
#define V(op) VCAT(VP, op)
#define NR (2 * VL)
/* Extra rows a decode tile may take (ukr_dec): 2 with 32 vector registers. */
#if VL >= 16
#define UKR_TALL 2
#else
#define UKR_TALL 0
#endif

/*===----------------------------------------------------------------------===*
 * Activation epilogue
 *===----------------------------------------------------------------------===*/

ISA_AI VF NAME(act)(VF x, int act, VF alpha) {
  const VF one = V(set1)(1.0f);
  switch (act) {
  case MOERT_ACT_SILU: /* x / (1 + exp(-alpha x)) */
    return V(div)(x, V(add)(one, V(exp)(V(mul)(V(sub)(V(zero)(), alpha), x))));
  case MOERT_ACT_GELU: {
#if VL == 1
    /* erfc for x < 0: no cancellation in the left tail. */
    return x < 0.0f ? 0.5f * x * erfcf(-x * 0.70710678118654752f)
                    : 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
#else
    /* 0.5 x (1 + erf(x / sqrt 2)) through erfc(|y|) (Numerical Recipes
     * erfcc, relative error < 1.2e-7): x >= 0: x - 0.5 x erfc(y); x < 0:
     * 0.5 x erfc(|y|), which keeps the relative accuracy in the left tail. */
    VF a = V(abs)(V(mul)(x, V(set1)(0.70710678118654752f)));
    VF t = V(div)(one, V(fma)(V(set1)(0.5f), a, one));
    VF p = V(set1)(0.17087277f);
    p = V(fma)(p, t, V(set1)(-0.82215223f));
    p = V(fma)(p, t, V(set1)(1.48851587f));
    p = V(fma)(p, t, V(set1)(-1.13520398f));
    p = V(fma)(p, t, V(set1)(0.27886807f));
    p = V(fma)(p, t, V(set1)(-0.18628806f));
    p = V(fma)(p, t, V(set1)(0.09678418f));
    p = V(fma)(p, t, V(set1)(0.37409196f));
    p = V(fma)(p, t, V(set1)(1.00002368f));
    p = V(fma)(p, t, V(set1)(-1.26551223f));
    p = V(sub)(p, V(mul)(a, a));
    VF erfc = V(mul)(t, V(exp)(p));
    VF hx = V(mul)(V(set1)(0.5f), x);
    return V(sel_neg)(x, V(mul)(hx, erfc), V(sub)(x, V(mul)(hx, erfc)));
#endif
  }
  case MOERT_ACT_GELU_TANH: {
#if VL == 1
    /* 0.5 x (1 + tanh z) = x / (1 + exp(-2 z)), exactly. */
    return x / (1.0f + expf(-2.0f * 0.79788456080286536f *
                            (x + 0.044715f * x * x * x)));
#else
    /* 0.5 x (1 + tanh z) = x / (1 + exp(-2 z)), exactly. */
    VF x3 = V(mul)(V(mul)(x, x), x);
    VF z = V(fma)(V(set1)(0.044715f), x3, x);
    VF e = V(exp)(V(mul)(V(set1)(-2.0f * 0.79788456080286536f), z));
    return V(div)(x, V(add)(one, e));
#endif
  }
  case MOERT_ACT_RELU:
    return V(max)(V(zero)(), x);
  default:
    return x;
  }
}

/* h[j] = act(g[j] + bg[j]) (mlp, u == NULL) or
 * act(min(g + bg, L)) * (clamp(u + bu, -L, L) + shift) (glu), j < n.
 * bg / bu NULL: no bias. */
ISA_AI void NAME(epi)(const Ffn *P, const float *g, const float *u,
                      const float *bg, const float *bu, float *h,
                      int64_t n) {
  const VF alpha = V(set1)(P->alpha), shift = V(set1)(P->up_shift);
  const VF lim = V(set1)(P->limit), nlim = V(set1)(-P->limit);
  const int act = P->act;
  for (int64_t j = 0; j < n; j += VL) {
    int64_t c = n - j;
    VF gv = V(loadn)(g + j, c);
    if (bg)
      gv = V(add)(gv, V(loadn)(bg + j, c));
    if (!u) {
      V(storen)(h + j, NAME(act)(gv, act, alpha), c);
      continue;
    }
    VF uv = V(loadn)(u + j, c);
    if (bu)
      uv = V(add)(uv, V(loadn)(bu + j, c));
    if (P->has_limit) {
      gv = V(min)(lim, gv);
      uv = V(max)(nlim, V(min)(lim, uv));
    }
    V(storen)(h + j, V(mul)(NAME(act)(gv, act, alpha), V(add)(uv, shift)), c);
  }
}

/* The epilogue of m rows of packed-panel sums (acc[i] + q NR: panel q,
 * holding PF = VL gate + VL up units of a GLU, NR units otherwise) into
 * h[i] + hoff + q PF, for nu units (the panels' biases at bg / bu + q PF).
 * One call per block instead of one per row and panel, whose calls cost
 * about as much as the activations of a panel's 16 units: two-library
 * A/Bs, 2 threads, DeepSeek-fine T=512 0.990-0.995, Mixtral T=512
 * 0.984-0.991. */
ISA_FN static void NAME(epi_panels)(const Ffn *P, const float *const *acc, int64_t m,
                                    int64_t nu, const float *bg, const float *bu,
                                    float *const *h, int64_t hoff) {
  const int glu = P->kind == MOERT_FFN_GLU;
  const int64_t PF = glu ? VL : NR;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t q = 0; q * PF < nu; ++q) {
      const int64_t np = nu - q * PF < PF ? nu - q * PF : PF;
      const float *a = acc[i] + q * NR;
      NAME(epi)(P, a, glu ? a + VL : NULL, bg ? bg + q * PF : NULL,
                bu ? bu + q * PF : NULL, h[i] + hoff + q * PF, np);
    }
}

/*===----------------------------------------------------------------------===*
 * GEMM microkernel and packing
 *===----------------------------------------------------------------------===*/

/* c[i][coff + j] = (load_c ? c[i][coff + j] : 0) + sum_k a[i][aoff + k] *
 * B[k][j] (+ bias[j]) for i < RM, j < nn; B is NP (1 or 2) packed [K][2VL]
 * panels, panel p at b + p bps: with NP = 2 the tile is 4 vectors wide
 * (columns [coff, coff + 4VL) from two adjacent panels, no change of the
 * packed layout). Each sum is the same chain of FMAs either way. */
ISA_AI void NAME(ukr_t)(const int RM, const int NP, int64_t K,
                        const float *const *a, int64_t aoff, const float *b,
                        int64_t bps, float *const *c, int64_t coff, int64_t nn,
                        int load_c, const float *bias, PfCursor *pf) {
  VF acc[MR + UKR_TALL][4];
  /* Prefetches are issued between chunks of k steps, so the k loop itself
   * stays free of the cursor's bookkeeping: 16 steps, or 24 for a paired
   * tile that issues at most 80 lines (a decode group of 37-64 rows: 64
   * lines per tile at 48 rows; the GEMM path's blocks of 64 rows or more).
   * Two-library A/Bs of 24 for every paired tile (var/base, against 16; KC
   * = 128): DeepSeek-fine T=512 2 threads 0.974-0.986 (20: 0.976-0.988,
   * 28: 0.966-0.987, 32: 0.987-1.000, 40: 0.992-0.999), 1 thread
   * 0.972-0.978; Mixtral T=512 0.974-0.988, 1 thread 0.973-0.985; skewed
   * Mixtral T=512 0.977-0.996; Switch T=512, Mixtral T=2048 within noise; but
   * skewed Mixtral T=64, whose hot expert is cut into two blocks of 32 rows
   * (85 lines per tile), 1.003-1.025. With a 64-line bound: skewed
   * Mixtral T=64 0.985-1.000, DeepSeek-fine T=512 0.984-0.993, Mixtral
   * T=512 0.976-0.999; with this 80-line bound, skewed Mixtral T=64
   * 0.989-1.000 (1 and 2 threads) and DeepSeek-fine T=512 0.997-1.006
   * against 24 for every paired tile. The one-panel tiles of the
   * small decode groups keep 16: at 24 Mixtral T=8 lost 6%, and chunks of
   * 8, 4 or 2 steps lost 1%, 3% and 7% at T=512. */
  const int64_t kchunk = NP == 2 && pf && pf->per_call <= 80 ? 24 : 16;
  const int64_t ppi = pf_per_iter(pf, (K + kchunk - 1) / kchunk);
  int64_t pleft = ppi ? pf->per_call : 0;
  const float *ap[MR + UKR_TALL];
#pragma GCC unroll 16
  for (int i = 0; i < RM; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < 2 * NP; ++v)
      acc[i][v] = load_c ? V(loadn)(c[i] + coff + v * VL, nn - v * VL) : V(zero)();
    ap[i] = a[i] + aoff;
  }
  for (int64_t kk = 0; kk < K; kk += kchunk) {
    if (pleft > 0) {
      pf_issue_n(pf, ppi);
      pleft -= ppi;
    }
    const int64_t ke = K - kk < kchunk ? K : kk + kchunk;
#pragma GCC unroll 2
    for (int64_t k = kk; k < ke; ++k) {
      VF bv[4];
#pragma GCC unroll 2
      for (int p = 0; p < NP; ++p) {
        bv[2 * p] = V(load)(b + p * bps);
        bv[2 * p + 1] = V(load)(b + p * bps + VL);
      }
      b += NR;
#pragma GCC unroll 16
      for (int i = 0; i < RM; ++i) {
        VF av = V(bcast)(ap[i] + k);
#pragma GCC unroll 4
        for (int v = 0; v < 2 * NP; ++v)
          acc[i][v] = V(fma)(av, bv[v], acc[i][v]);
      }
    }
  }
  if (bias) {
#pragma GCC unroll 4
    for (int v = 0; v < 2 * NP; ++v) {
      VF bb = V(loadn)(bias + v * VL, nn - v * VL);
#pragma GCC unroll 16
      for (int i = 0; i < RM; ++i)
        acc[i][v] = V(add)(acc[i][v], bb);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < RM; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < 2 * NP; ++v)
      V(storen)(c[i] + coff + v * VL, acc[i][v], nn - v * VL);
}

/* ukr_t for mr (1..MR) rows: a tile of the last few rows of a block does
 * only their FMAs. (It used to run all MR rows, padded with copies of row
 * 0, and drop the extra results.) Each row's sums are the same chain of
 * operations in either form. In one process, runs of alternating calls:
 * Mixtral T=512 1.7-2.7% faster on 2 threads (skewed and balanced
 * routing), 1.7-2.0% on 1; DeepSeek-fine T=512 2.2-4.8% and 2.4%;
 * Mixtral T=2048 0.1-0.4%; Switch T=512 (mostly decode) within 1%. */
ISA_FN static void NAME(ukr)(int64_t K, const float *const *a, int64_t aoff,
                             const float *b, float *const *c, int64_t coff,
                             int mr, int64_t nn, int load_c,
                             const float *bias, PfCursor *pf) {
  switch (mr < MR ? mr : MR) {
#define UKR_CASE(R)                                                            \
  case R:                                                                      \
    NAME(ukr_t)(R, 1, K, a, aoff, b, 0, c, coff, nn, load_c, bias, pf);         \
    break;
    UKR_CASE(1) /* heights 1 .. MR - 1 (MR is 4, 6 or 8) */
    UKR_CASE(2)
    UKR_CASE(3)
#if MR > 4
    UKR_CASE(4)
    UKR_CASE(5)
#endif
#if MR > 6
    UKR_CASE(6)
    UKR_CASE(7)
#endif
#undef UKR_CASE
  default:
    NAME(ukr_t)(MR, 1, K, a, aoff, b, 0, c, coff, nn, load_c, bias, pf);
    break;
  }
}

#if VL >= 16
/* Rows of the GEMM path's paired-panel tile: 6 x 4 vectors of sums (24 of
 * the 32 registers), 4 panel loads and 6 broadcasts per 24 FMAs against 2
 * and 8 per 16 in the MR x 2 tile. In a microbenchmark on a Xeon (B in L2,
 * one core): 188-190 GFLOP/s against 174-178 for 8 x 2 vectors. */
#define PAIR_MR 6

/* ukr_t over two adjacent panels (b, b + bps): mr (1..PAIR_MR) rows,
 * nn (<= 4VL) columns. */
ISA_FN static void NAME(ukr_pair)(int64_t K, const float *const *a, int64_t aoff,
                                  const float *b, int64_t bps, float *const *c,
                                  int64_t coff, int mr, int64_t nn, int load_c,
                                  const float *bias, PfCursor *pf) {
  switch (mr < PAIR_MR ? mr : PAIR_MR) {
#define UKR_PAIR_CASE(R)                                                       \
  case R:                                                                      \
    NAME(ukr_t)(R, 2, K, a, aoff, b, bps, c, coff, nn, load_c, bias, pf);       \
    break;
    UKR_PAIR_CASE(1)
    UKR_PAIR_CASE(2)
    UKR_PAIR_CASE(3)
    UKR_PAIR_CASE(4)
    UKR_PAIR_CASE(5)
#undef UKR_PAIR_CASE
  default:
    NAME(ukr_t)(PAIR_MR, 2, K, a, aoff, b, bps, c, coff, nn, load_c, bias, pf);
    break;
  }
}
#else
#define PAIR_MR 0 /* 16 registers: no room for a wider tile */
#endif

/* The calls of gemm_panels over Q panels and m rows: pairs of panels in
 * tiles of PAIR_MR rows, then a last odd panel in tiles of MR rows. */
static inline int64_t NAME(gemm_calls)(int64_t Q, int64_t m) {
#if PAIR_MR > 0
  return Q / 2 * ((m + PAIR_MR - 1) / PAIR_MR) + Q % 2 * ((m + MR - 1) / MR);
#else
  return Q * ((m + MR - 1) / MR);
#endif
}

/* The GEMM path's product of K steps of Q packed panels (panel q at
 * b + q K 2VL) into c: c[i][coff + j] (=|+=) a[i][aoff:] B[:, j] for i < m,
 * j < ncols (bias[j] added if given), pairs of panels first (ukr_pair), a
 * last odd one by ukr; the lines of pf (set up, not started) spread over
 * the calls (gemm_calls).
 * With pf_c, each pair tile first prefetches (to L1, for writing) the sums
 * that the next one loads: GEMM2's output rows lie D floats apart, which
 * the hardware prefetchers do not follow. Two-library A/Bs, 2 threads,
 * var/base: T=512 Mixtral 0.97-0.99, DeepSeek-fine 0.98-0.99; Mixtral
 * T=2048 0.99-1.00. For the GEMM1 sums (scratch rows) it gained nothing;
 * for the decode groups' products it lost (DeepSeek-fine back to
 * 0.99-1.00, Switch T=512 1.00): only GEMM2 asks for it. */
ISA_FN static void NAME(gemm_panels)(int64_t K, const float *const *a, int64_t aoff,
                                     const float *b, int64_t Q, float *const *c,
                                     int64_t coff, int64_t ncols, int64_t m, int load_c,
                                     const float *bias, int pf_c, PfCursor *pf) {
  pf_start(pf, NAME(gemm_calls)(Q, m));
  int64_t q = 0;
#if PAIR_MR > 0
  for (; q + 1 < Q; q += 2) {
    const int64_t col = q * NR, nn = ncols - col < 2 * NR ? ncols - col : 2 * NR;
    for (int64_t i0 = 0; i0 < m; i0 += PAIR_MR) {
      for (int64_t r = i0 + PAIR_MR; pf_c && r < i0 + 2 * PAIR_MR && r < m; ++r)
        for (int v = 0; v < 4; ++v)
          __builtin_prefetch(c[r] + coff + col + v * VL, 1, 3);
      NAME(ukr_pair)(K, a + i0, aoff, b + q * K * NR, K * NR, c + i0, coff + col,
                     (int)(m - i0 < PAIR_MR ? m - i0 : PAIR_MR), nn, load_c,
                     bias ? bias + col : NULL, pf);
    }
  }
#endif
  (void)pf_c;
  for (; q < Q; ++q) {
    const int64_t col = q * NR, nn = ncols - col < NR ? ncols - col : NR;
    for (int64_t i0 = 0; i0 < m; i0 += MR)
      NAME(ukr)(K, a + i0, aoff, b + q * K * NR, c + i0, coff + col,
                (int)(m - i0 < MR ? m - i0 : MR), nn, load_c, bias ? bias + col : NULL, pf);
  }
}

/* The decode products' row tiles: MR rows, but a group's last tile takes
 * the 1..UKR_TALL rows that would be left after it (AVX-512: tiles of 9 or
 * 10 rows, 20 vectors of sums). A tile of 1-2 rows reads the panel slice
 * again from L2 for few FMAs: the kernel alone, 8 experts of n rows, one
 * thread, against the separate short tile: 9 rows 6-8% faster, 10 rows 2%;
 * tiles of 11 and 12 rows were 2-6% slower than 8 + 3 and 8 + 4. */
static inline int64_t NAME(dec_tile)(int64_t left) {
  return left <= MR + UKR_TALL ? left : MR;
}

ISA_FN static void NAME(ukr_dec)(int64_t K, const float *const *a, int64_t aoff,
                                 const float *b, float *const *c, int64_t coff,
                                 int mr, int64_t nn, int load_c,
                                 const float *bias, PfCursor *pf) {
#if UKR_TALL > 0
  if (mr > MR) {
    if (mr == MR + 1)
      NAME(ukr_t)(MR + 1, 1, K, a, aoff, b, 0, c, coff, nn, load_c, bias, pf);
    else
      NAME(ukr_t)(MR + 2, 1, K, a, aoff, b, 0, c, coff, nn, load_c, bias, pf);
    return;
  }
#endif
  NAME(ukr)(K, a, aoff, b, c, coff, mr, nn, load_c, bias, pf);
}

/* Panels a decode step of n rows multiplies at once (1 or 2) when at least
 * `avail` adjacent panels are left. */
static inline int64_t NAME(dec_step)(int64_t n, int64_t avail) {
#if PAIR_MR > 0
  if (n >= MOERT_FFN_DEC_PAIR_ROWS && avail >= 2)
    return 2;
#endif
  (void)n;
  (void)avail;
  return 1;
}

/* A decode step's product over np (1 or 2) adjacent panels (b, b + bps):
 * ukr_pair in tiles of PAIR_MR rows, or ukr_dec in dec_tile's tiles. */
ISA_FN static void NAME(dec_panels_mul)(int64_t np, int64_t K, const float *const *a,
                                        int64_t aoff, const float *b, int64_t bps,
                                        float *const *c, int64_t coff, int64_t n,
                                        int64_t nn, int load_c, const float *bias,
                                        PfCursor *pf) {
#if PAIR_MR > 0
  if (np == 2) {
    for (int64_t i0 = 0; i0 < n; i0 += PAIR_MR)
      NAME(ukr_pair)(K, a + i0, aoff, b, bps, c + i0, coff,
                     (int)(n - i0 < PAIR_MR ? n - i0 : PAIR_MR), nn, load_c, bias, pf);
    return;
  }
#endif
  (void)np;
  (void)bps;
  for (int64_t i0 = 0, t; i0 < n; i0 += t) {
    t = NAME(dec_tile)(n - i0);
    NAME(ukr_dec)(K, a + i0, aoff, b, c + i0, coff, (int)t, nn, load_c, bias, pf);
  }
}

/* Over how many row tiles' calls a decode step of n rows over np panels
 * spreads the prefetch of the next step's panels: all of its tiles when the
 * call runs on several threads, so the stream goes on while the later tiles
 * (which read the panels from L1/L2) run; the first tile alone on one
 * thread. In one session, alternate calls (Mixtral T=64, tiles of 8 + 3 to
 * 8 x 4): 2 threads 3.5% (balanced) and 2.6% (skewed) faster than the
 * first tile alone, 1.1-2.1% faster than the first half of the tiles; 1
 * thread 0.7-2.2% slower than the first tile alone. Groups of
 * MOERT_FFN_DEC_PAIR_ROWS rows or more spread it over all tiles on one
 * thread too: their steps last long enough that one tile's burst of
 * prefetches stalls the loads (one thread, against the first tile alone:
 * Switch T=512 0.80-0.81, Mixtral T=64 0.91, DeepSeek-fine T=512 0.93;
 * Switch T=64, 4-row groups, unchanged). */
static inline int64_t NAME(pdec_pf_calls)(const Ffn *P, int64_t n, int64_t np) {
#if PAIR_MR > 0
  if (np == 2)
    return (n + PAIR_MR - 1) / PAIR_MR;
#endif
  (void)np;
  if (P->nthr < 2 && n < MOERT_FFN_DEC_PAIR_ROWS)
    return 1;
  int64_t tiles = 0;
  for (int64_t i0 = 0; i0 < n; i0 += NAME(dec_tile)(n - i0))
    ++tiles;
  return tiles;
}

/* dst[k * 2VL + j] = W(k0 + k, c0 + j * cs) for k < K, j < nv (<= VL),
 * zero for nv <= j < VL: one VL-wide slot of a packed panel. cs is 1 or 2
 * (interleaved gate/up). Used for out_in weights (transposed in registers,
 * VL x VL at a time; each stored row is read contiguously over K). */
ISA_AI void NAME(pack_slot_t)(float *dst, int64_t K, const MatV *W,
                              int64_t k0, int64_t c0, int64_t cs, int64_t nv,
                              const int dtype, const size_t es) {
  if (K <= 0)
    return;
  if (nv <= 0) {
    for (int64_t k = 0; k < K; ++k)
      V(store)(dst + k * NR, V(zero)());
    return;
  }
  if (nv > VL)
    nv = VL;
  const char *rows[VL];
  for (int j = 0; j < VL; ++j)
    rows[j] = W->p + ((c0 + (j < nv ? j : 0) * cs) * W->ld + k0) * (int64_t)es;
  for (int64_t kb = 0; kb < K; kb += VL) {
    int64_t kn = K - kb < VL ? K - kb : VL;
    VF r[VL];
#pragma GCC unroll 16
    for (int j = 0; j < VL; ++j)
      r[j] = j < nv ? V(ldw)(rows[j] + kb * (int64_t)es, dtype, kn) : V(zero)();
    V(transpose)(r);
    if (kn == VL) {
#pragma GCC unroll 16
      for (int j = 0; j < VL; ++j)
        V(store)(dst + (kb + j) * NR, r[j]);
    } else {
      for (int j = 0; j < kn; ++j)
        V(store)(dst + (kb + j) * NR, r[j]);
    }
  }
}

/* Packs Q panels [K][2VL] (panel q at dst + q K 2VL) of the logical rows
 * [k0, k0 + K). Slot s (0, 1) of panel q holds units u = ubase + q uq +
 * s us + j (j < VL; zero when u >= uend), unit u being logical column
 * src[s].c0 + u src[s].cs of src[s].W. f16/bf16 are widened here.
 * in_out weights are read row by row across all Q panels, so each stored
 * row is streamed in long contiguous runs (the DRAM- and prefetch-friendly
 * order); out_in weights slot by slot (contiguous in k). */
ISA_AI void NAME(pack_block_t)(float *dst, int64_t K, int64_t k0, int64_t Q,
                               int64_t ubase, int64_t uend, int64_t uq,
                               int64_t us, const PackSrc *src,
                               const int dtype, const size_t es) {
  if (K <= 0 || Q <= 0)
    return;
  const int64_t pstride = K * NR;
  if (src[0].W->trans) {
    for (int64_t q = 0; q < Q; ++q)
      for (int s = 0; s < 2; ++s) {
        int64_t u0 = ubase + q * uq + s * us;
        NAME(pack_slot_t)(dst + q * pstride + s * VL, K, src[s].W, k0,
                          src[s].c0 + u0 * src[s].cs, src[s].cs, uend - u0, dtype, es);
      }
    return;
  }
  for (int64_t k = 0; k < K; ++k) {
    const char *row[2];
    for (int s = 0; s < 2; ++s)
      row[s] = src[s].W->p + ((k0 + k) * src[s].W->ld + src[s].c0) * (int64_t)es;
    float *d = dst + k * NR;
    for (int64_t q = 0; q < Q; ++q, d += pstride)
      for (int s = 0; s < 2; ++s) {
        const int64_t u0 = ubase + q * uq + s * us;
        int64_t nv = uend - u0;
        VF v;
        if (nv <= 0) {
          v = V(zero)();
        } else {
          if (nv > VL)
            nv = VL;
          const char *p = row[s] + u0 * src[s].cs * (int64_t)es;
          if (src[s].cs == 1) {
            v = V(ldw)(p, dtype, nv);
          } else { /* only p[0], p[2], ..., p[2 (nv - 1)] are read */
            const int64_t span = 2 * nv - 1;
            v = V(evens)(V(ldw)(p, dtype, span),
                         V(ldw)(p + VL * (int64_t)es, dtype, span - VL));
          }
        }
        V(store)(d + s * VL, v);
      }
  }
}

ISA_FN static void NAME(pack_block)(float *dst, int64_t K, int64_t k0,
                                    int64_t Q, int64_t ubase, int64_t uend,
                                    int64_t uq, int64_t us, const PackSrc *src,
                                    int dtype) {
  switch (dtype) {
  case MOERT_F32:
    NAME(pack_block_t)(dst, K, k0, Q, ubase, uend, uq, us, src, MOERT_F32, 4);
    break;
  case MOERT_F16:
    NAME(pack_block_t)(dst, K, k0, Q, ubase, uend, uq, us, src, MOERT_F16, 2);
    break;
  default:
    NAME(pack_block_t)(dst, K, k0, Q, ubase, uend, uq, us, src, MOERT_BF16, 2);
    break;
  }
}

/*===----------------------------------------------------------------------===*
 * Decode product (no packing)
 *===----------------------------------------------------------------------===*/

#define CR_ROWS 4 /* rows per register block */
#define CR_VECS 4 /* vectors of columns per block (layout in_out) */
#define CR_COLS 4 /* columns per block (layout out_in) */
/* Rows per register block of the in_out product: 6 x 4 vectors of sums
 * with 32 vector registers (AVX-512), 4 x 4 with 16. With the row groups
 * of even size below, Mixtral T=64 (kernel alone, 1 thread): balanced
 * routing 31.8 -> 30.2 ms, skewed 33.0 -> 30.3 ms (its 29- and 17-row
 * experts left one-row groups). */
#if VL >= 16
#define CR_ROWS_IO 6
#else
#define CR_ROWS_IO 4
#endif

/* in_out: W(k, c) at p + (k ld + c); rows r < RN, columns [c, c + w). */
ISA_AI void NAME(cr_io)(const int RN, const int dtype, const size_t es,
                        const float *const *x, int64_t xoff, int64_t K,
                        const char *wp, int64_t ld, int64_t w,
                        float *const *out, int64_t ocol, int accum,
                        PfCursor *pf) {
  VF acc[CR_ROWS_IO][CR_VECS];
  /* The next block's prefetches go out every 2^shift k steps: every 8th in
   * short (memory bound) blocks, every 2nd in deep ones (compute heavy row
   * groups, see MOERT_FFN_DEC_DEEP_K), where 8 steps of FMAs are long
   * enough for a burst of prefetches to back up. */
  const int shift = K >= MOERT_FFN_DEC_DEEP_K ? MOERT_FFN_PF_EVERY_DEEP_LOG2 : 3;
  const int64_t mask = ((int64_t)1 << shift) - 1;
  const int64_t ppi = pf_per_iter(pf, (K + mask) >> shift);
  int64_t pleft = ppi ? pf->per_call : 0;
#pragma GCC unroll 8
  for (int r = 0; r < RN; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < CR_VECS; ++v)
      acc[r][v] = accum ? V(loadn)(out[r] + ocol + v * VL, w - v * VL)
                        : V(zero)();
  const int64_t step = ld * (int64_t)es;
  for (int64_t k = 0; k < K; ++k, wp += step) {
    if (pleft > 0 && (k & mask) == 0) {
      pf_issue_n(pf, ppi);
      pleft -= ppi;
    }
    VF wv[CR_VECS];
#pragma GCC unroll 4
    for (int v = 0; v < CR_VECS; ++v)
      wv[v] = V(ldw)(wp + v * VL * (int64_t)es, dtype, w - v * VL);
#pragma GCC unroll 8
    for (int r = 0; r < RN; ++r) {
      VF xb = V(bcast)(x[r] + xoff + k);
#pragma GCC unroll 4
      for (int v = 0; v < CR_VECS; ++v)
        acc[r][v] = V(fma)(xb, wv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < RN; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < CR_VECS; ++v)
      V(storen)(out[r] + ocol + v * VL, acc[r][v], w - v * VL);
}

/* out_in: W(k, c) at rows[c] + k; rows r < RN, CR_COLS columns (rows of W;
 * the caller repeats a row for missing columns and drops the results). */
ISA_AI void NAME(cr_oi)(const int RN, const int dtype, const size_t es,
                        const float *const *x, int64_t K,
                        const char *const *wr, int64_t nc, float *const *out,
                        int64_t ocol, int accum, PfCursor *pf) {
  VF acc[CR_ROWS][CR_COLS];
  const int64_t ppi = pf_per_iter(pf, K / VL);
  int64_t pleft = ppi ? pf->per_call : 0;
#pragma GCC unroll 4
  for (int r = 0; r < RN; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < CR_COLS; ++j)
      acc[r][j] = V(zero)();
  int64_t k = 0;
  for (; k + VL <= K; k += VL) {
    if (pleft > 0) {
      pf_issue_n(pf, ppi);
      pleft -= ppi;
    }
    VF wv[CR_COLS];
#pragma GCC unroll 4
    for (int j = 0; j < CR_COLS; ++j)
      wv[j] = V(ldw)(wr[j] + k * (int64_t)es, dtype, VL);
#pragma GCC unroll 4
    for (int r = 0; r < RN; ++r) {
      VF xv = V(load)(x[r] + k);
#pragma GCC unroll 4
      for (int j = 0; j < CR_COLS; ++j)
        acc[r][j] = V(fma)(xv, wv[j], acc[r][j]);
    }
  }
  if (k < K) {
    VF wv[CR_COLS];
#pragma GCC unroll 4
    for (int j = 0; j < CR_COLS; ++j)
      wv[j] = V(ldw)(wr[j] + k * (int64_t)es, dtype, K - k);
#pragma GCC unroll 4
    for (int r = 0; r < RN; ++r) {
      VF xv = V(loadn)(x[r] + k, K - k);
#pragma GCC unroll 4
      for (int j = 0; j < CR_COLS; ++j)
        acc[r][j] = V(fma)(xv, wv[j], acc[r][j]);
    }
  }
  for (int r = 0; r < RN; ++r)
    for (int j = 0; j < nc; ++j) {
      float s = V(hsum)(acc[r][j]);
      out[r][ocol + j] = accum ? out[r][ocol + j] + s : s;
    }
}

/* RN (<= 4) x rows, in_out weights: out[r][ocol + j] (+)= sum_k x[r][k]
 * W(k0 + k, c0 + j) for j < nc, streaming W's rows [k0, k0 + K) in stored
 * order with the sums held in `out` (L1-resident: RN nc floats). One
 * sequential read per thread is what DRAM and the hardware prefetchers
 * serve best; the register-tiled path below reads K blocks as interleaved
 * runs of several rows and gets 75-80% of the bandwidth. Same bits as that
 * path: each sum is the same chain of FMAs in k order. The hardware
 * prefetchers alone serve it best, for 16-bit weights too: a software
 * prefetch 8 KiB ahead made cold Mixtral bf16 T=1 on one thread 13% slower
 * (medians of 9 interleaved runs, 1.73 vs 1.54 ms; for f32 it cost 35%). */
ISA_AI void NAME(rowstream_t)(const int RN, const int dtype, const size_t es,
                              const float *const *x, int64_t K, const MatV *W,
                              int64_t k0, int64_t c0, int64_t nc,
                              float *const *out, int64_t ocol, int accum) {
  float *o[4];
  for (int r = 0; r < RN; ++r) {
    o[r] = out[r] + ocol;
    if (!accum)
      memset(o[r], 0, (size_t)nc * sizeof(float));
  }
  const char *wp = W->p + (k0 * W->ld + c0) * (int64_t)es;
  const int64_t step = W->ld * (int64_t)es;
  const int64_t nv = nc / (4 * VL) * (4 * VL);
  for (int64_t k = 0; k < K; ++k, wp += step) {
    VF xb[4];
#pragma GCC unroll 4
    for (int r = 0; r < RN; ++r)
      xb[r] = V(bcast)(x[r] + k);
    int64_t c = 0;
    for (; c < nv; c += 4 * VL) {
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) {
        const VF w = V(ldw)(wp + (c + v * VL) * (int64_t)es, dtype, VL);
#pragma GCC unroll 4
        for (int r = 0; r < RN; ++r) {
          float *op = o[r] + c + v * VL;
          V(store)(op, V(fma)(xb[r], w, V(load)(op)));
        }
      }
    }
    for (; c < nc; c += VL) {
      const VF w = V(ldw)(wp + c * (int64_t)es, dtype, nc - c);
      for (int r = 0; r < RN; ++r)
        V(storen)(o[r] + c, V(fma)(xb[r], w, V(loadn)(o[r] + c, nc - c)), nc - c);
    }
  }
}

ISA_AI void NAME(colrange_t)(const int dtype, const size_t es, int64_t n,
                             const float *const *x, int64_t K, const MatV *W,
                             int64_t k0, int64_t c0, int64_t nc,
                             float *const *out, int64_t ocol, int accum,
                             int64_t stream_bytes, const PfRegion *next) {
  if (K <= 0) { /* empty sum (the matrix may have no storage at all) */
    if (!accum)
      for (int64_t r = 0; r < n; ++r)
        memset(out[r] + ocol, 0, (size_t)nc * sizeof(float));
    return;
  }
  /* Up to MOERT_FFN_DEC_STREAM_ROWS rows (16-bit weights: one row) over
   * whole stored rows, their sums within stream_bytes (half of it for
   * several rows: Mixtral T=8 with 2-4 rows over W2's 1024 columns took
   * 11.8 ms at 16 KiB, 10.1 at 8 KiB): one sequential stream. (Part rows, read as strided
   * runs, get half the bandwidth of the tiled path's prefetched blocks;
   * several rows of widened 16-bit weights make the stream compute bound.) */
  if (!W->trans && n <= (es == 4 ? MOERT_FFN_DEC_STREAM_ROWS : 1) && nc == W->ld && nc == W->ld &&
      n * nc * (int64_t)sizeof(float) <= (n == 1 ? stream_bytes : stream_bytes / 2)) {
    switch (n) {
    case 1:
      NAME(rowstream_t)(1, dtype, es, x, K, W, k0, c0, nc, out, ocol, accum);
      break;
    case 2:
      NAME(rowstream_t)(2, dtype, es, x, K, W, k0, c0, nc, out, ocol, accum);
      break;
    case 3:
      NAME(rowstream_t)(3, dtype, es, x, K, W, k0, c0, nc, out, ocol, accum);
      break;
    default:
      NAME(rowstream_t)(4, dtype, es, x, K, W, k0, c0, nc, out, ocol, accum);
      break;
    }
    return;
  }
  if (!W->trans) {
    /* in_out: 4 x 4-vector register tiles over 64-column chunks, in K
     * blocks of ~MOERT_FFN_DEC_KBYTES of weights, kept in L2 while every
     * chunk and row group reads them (the output rows carry the sums
     * between blocks: same bits as one pass). The next block is prefetched
     * row by row -- whole stored rows, i.e. sequential memory -- trickled
     * into the k loops of this one. Without that, the column chunks read
     * a few hundred bytes per 4 KiB page and get half the bandwidth. */
    const int64_t CW = CR_VECS * VL;
    const int64_t rowb = nc * (int64_t)es;
    int64_t kb = MOERT_FFN_DEC_KBYTES / (rowb > 0 ? rowb : 1);
    if (kb < 8)
      kb = 8;
    if (n >= MOERT_FFN_DEC_DEEP_ROWS && kb < MOERT_FFN_DEC_DEEP_K)
      kb = MOERT_FFN_DEC_DEEP_K;
    const int64_t calls = (nc + CW - 1) / CW * ((n + CR_ROWS_IO - 1) / CR_ROWS_IO);
    PfCursor pf;
    for (int64_t kb0 = 0; kb0 < K; kb0 += kb) {
      const int64_t kn = K - kb0 < kb ? K - kb0 : kb;
      const int acc_in = accum || kb0 > 0;
      const int64_t nk0 = kb0 + kb, nkn = K - nk0 < kb ? K - nk0 : kb;
      pf.nr = 0;
      if (nkn > 0) {
        pf.nr = 1;
        pf.r[0].base = W->p + ((k0 + nk0) * W->ld + c0) * (int64_t)es;
        pf.r[0].rows = nkn;
        pf.r[0].step = W->ld * (int64_t)es;
        pf.r[0].run = rowb;
      } else if (next && next->rows > 0) {
        /* The last block: the first block of the caller's next product
         * (same depth), which would otherwise start cold. */
        pf.nr = 1;
        pf.r[0] = *next;
        if (pf.r[0].rows > kb)
          pf.r[0].rows = kb;
      }
      pf_start(&pf, calls);
      for (int64_t cc = 0; cc < nc; cc += CW) {
        int64_t w = nc - cc < CW ? nc - cc : CW;
        const char *wp = W->p + ((k0 + kb0) * W->ld + c0 + cc) * (int64_t)es;
        /* Row groups of even size (17 rows: 6, 6, 5, not 6, 6, 4, 1): a
         * group of one or two rows reloads every weight vector for few
         * FMAs. */
        const int64_t ng = (n + CR_ROWS_IO - 1) / CR_ROWS_IO;
        for (int64_t g = 0, r0 = 0; g < ng; ++g) {
          const int64_t rn = n / ng + (g < n % ng);
          const int64_t r = r0;
          r0 += rn;
          switch (rn) {
          case 1:
            NAME(cr_io)(1, dtype, es, x + r, kb0, kn, wp, W->ld, w, out + r, ocol + cc, acc_in, &pf);
            break;
          case 2:
            NAME(cr_io)(2, dtype, es, x + r, kb0, kn, wp, W->ld, w, out + r, ocol + cc, acc_in, &pf);
            break;
          case 3:
            NAME(cr_io)(3, dtype, es, x + r, kb0, kn, wp, W->ld, w, out + r, ocol + cc, acc_in, &pf);
            break;
#if CR_ROWS_IO > 4
          case 5:
            NAME(cr_io)(5, dtype, es, x + r, kb0, kn, wp, W->ld, w, out + r, ocol + cc, acc_in, &pf);
            break;
          case 6:
            NAME(cr_io)(6, dtype, es, x + r, kb0, kn, wp, W->ld, w, out + r, ocol + cc, acc_in, &pf);
            break;
#endif
          default:
            NAME(cr_io)(4, dtype, es, x + r, kb0, kn, wp, W->ld, w, out + r, ocol + cc, acc_in, &pf);
            break;
          }
        }
      }
    }
    return;
  }
  /* out_in: dot products of 4 stored rows (contiguous in k) with 4 x rows;
   * the stored rows MOERT_FFN_OI_AHEAD groups ahead are prefetched. */
  PfCursor pf;
  const int64_t groups = (n + CR_ROWS - 1) / CR_ROWS;
  for (int64_t cc = 0; cc < nc; cc += CR_COLS) {
    int64_t w = nc - cc < CR_COLS ? nc - cc : CR_COLS;
    const char *wr[CR_COLS];
    for (int j = 0; j < CR_COLS; ++j)
      wr[j] = W->p + ((c0 + cc + (j < w ? j : 0)) * W->ld + k0) * (int64_t)es;
    const int64_t pc = cc + (cc == 0 ? CR_COLS : CR_COLS * MOERT_FFN_OI_AHEAD);
    const int64_t pn = cc == 0 ? CR_COLS * MOERT_FFN_OI_AHEAD : CR_COLS;
    pf.nr = 0;
    if (pc < nc) {
      pf.nr = 1;
      pf.r[0].base = W->p + ((c0 + pc) * W->ld + k0) * (int64_t)es;
      pf.r[0].rows = nc - pc < pn ? nc - pc : pn;
      pf.r[0].step = W->ld * (int64_t)es;
      pf.r[0].run = K * (int64_t)es;
    }
    pf_start(&pf, groups);
    for (int64_t r0 = 0; r0 < n; r0 += CR_ROWS) {
      switch (n - r0 < CR_ROWS ? n - r0 : CR_ROWS) {
      case 1:
        NAME(cr_oi)(1, dtype, es, x + r0, K, wr, w, out + r0, ocol + cc, accum, &pf);
        break;
      case 2:
        NAME(cr_oi)(2, dtype, es, x + r0, K, wr, w, out + r0, ocol + cc, accum, &pf);
        break;
      case 3:
        NAME(cr_oi)(3, dtype, es, x + r0, K, wr, w, out + r0, ocol + cc, accum, &pf);
        break;
      default:
        NAME(cr_oi)(4, dtype, es, x + r0, K, wr, w, out + r0, ocol + cc, accum, &pf);
        break;
      }
    }
  }
}

/* out[r][ocol + j] (+)= sum_k x[r][k] W(k0 + k, c0 + j), r < n, j < nc.
 * next (or NULL): the weights of the caller's next product, whose first K
 * block the tiled in_out path prefetches during its own last block. */
ISA_FN static void NAME(colrange)(int dtype, int64_t n, const float *const *x,
                                  int64_t K, const MatV *W, int64_t k0,
                                  int64_t c0, int64_t nc, float *const *out,
                                  int64_t ocol, int accum,
                                  int64_t stream_bytes, const PfRegion *next) {
  switch (dtype) {
  case MOERT_F32:
    NAME(colrange_t)(MOERT_F32, 4, n, x, K, W, k0, c0, nc, out, ocol, accum, stream_bytes, next);
    break;
  case MOERT_F16:
    NAME(colrange_t)(MOERT_F16, 2, n, x, K, W, k0, c0, nc, out, ocol, accum, stream_bytes, next);
    break;
  default:
    NAME(colrange_t)(MOERT_BF16, 2, n, x, K, W, k0, c0, nc, out, ocol, accum, stream_bytes, next);
    break;
  }
}

/*===----------------------------------------------------------------------===*
 * Decode path
 *===----------------------------------------------------------------------===*/

/* dec1 in steps of S hidden units with buffers G, U ([n][S]) and RAW
 * ([n][2 half] for interleaved weights: raw columns of `half` units at a
 * time), bias buffers bg, bu of S floats. */
ISA_AI void NAME(dec1_steps)(const Ffn *P, int64_t e, const float *const *x,
                             int64_t n, int64_t f0, int64_t f1,
                             float *const *hrow, int64_t hcol0, int64_t S,
                             int64_t half, float *G, float *U, float *RAW,
                             float *bg, float *bu) {
  float *gr[MOERT_DEC_MAX_ROWS], *ur[MOERT_DEC_MAX_ROWS], *rr[MOERT_DEC_MAX_ROWS];
  for (int64_t r = 0; r < n; ++r) {
    gr[r] = G + r * S;
    ur[r] = U + r * S;
    rr[r] = RAW + r * 2 * half;
  }
  MatV gv, uv;
  moert_ffn_views(P, e, &gv, &uv, NULL);
  const int glu = P->kind == MOERT_FFN_GLU;
  for (int64_t s0 = f0; s0 < f1; s0 += S) {
    int64_t ns = f1 - s0 < S ? f1 - s0 : S;
    if (P->cgs == 1) {
      /* Each product's last K block prefetches the next product's first
       * (gate -> up -> next step's gate), which used to start cold: 64
       * rows of strided runs. Mixtral T=64, in one process, runs of
       * alternating calls: 1.4-2.6% faster on 2 threads, 2.3-2.5% on 1,
       * either routing; bf16 T=64 0.8-1.5%; cold T=1 and T=8, DeepSeek-fine
       * and Switch T=64 within 1%. */
      const int64_t s1 = s0 + ns, ns1 = f1 - s1 < S ? f1 - s1 : S;
      PfRegion gnext = pf_region(&gv, P->es, 0, P->Din, P->cg0 + s1, P->cg0 + s1 + ns1);
      if (ns1 <= 0)
        gnext.rows = 0;
      const PfRegion up = glu ? pf_region(&uv, P->es, 0, P->Din, P->cu0 + s0 * P->cus,
                                          P->cu0 + s0 * P->cus + ns)
                              : gnext;
      NAME(colrange)(P->dtype, n, x, P->Din, &gv, 0, P->cg0 + s0, ns, gr, 0, 0,
                     P->stream_bytes, glu ? &up : &gnext);
      if (glu)
        NAME(colrange)(P->dtype, n, x, P->Din, &uv, 0, P->cu0 + s0 * P->cus, ns, ur, 0,
                       0, P->stream_bytes, &gnext);
    } else {
      /* Interleaved: raw columns [2 s, 2 s + 2 hn), split even / odd. */
      for (int64_t hs = 0; hs < ns; hs += half) {
        int64_t hn = ns - hs < half ? ns - hs : half;
        NAME(colrange)(P->dtype, n, x, P->Din, &gv, 0, 2 * (s0 + hs), 2 * hn, rr, 0,
                       0, P->stream_bytes, NULL);
        for (int64_t r = 0; r < n; ++r)
          for (int64_t j = 0; j < hn; ++j) {
            gr[r][hs + j] = rr[r][2 * j];
            ur[r][hs + j] = rr[r][2 * j + 1];
          }
      }
    }
    const int has_bg = moert_ffn_bias1(P, e, 0, s0, ns, bg);
    const int has_bu = glu && moert_ffn_bias1(P, e, 1, s0, ns, bu);
    for (int64_t r = 0; r < n; ++r)
      NAME(epi)(P, gr[r], glu ? ur[r] : NULL, has_bg ? bg : NULL,
                has_bu ? bu : NULL, hrow[r] + (s0 - hcol0), ns);
  }
}

/* h rows (hrow[r] + f - hcol0) = FFN hidden activations of rows x[r], r < n
 * (<= MOERT_DEC_MAX_ROWS), for f in [f0, f1). In steps of S ~
 * MOERT_DEC_ACC_FLOATS / n hidden units (L2-sized accumulators, next to the
 * K blocks of weights; wide steps mean long sequential weight rows for
 * in_out) with heap buffers; without memory (or for short
 * out_in ranges), in steps of MOERT_DEC_SUB units and groups of at most 16
 * rows with stack buffers (same bits: chunking never changes a sum). */
ISA_FN static void NAME(dec1)(const Ffn *P, int64_t e, const float *const *x,
                              int64_t n, int64_t f0, int64_t f1,
                              float *const *hrow, int64_t hcol0) {
  const int64_t nf = f1 - f0;
  if (nf > MOERT_DEC_SUB || n > 16) {
    int64_t S = (MOERT_DEC_ACC_FLOATS / n + 63) / 64 * 64;
    if (S > nf)
      S = nf;
    /* Deep groups: steps of at most MOERT_DEC_STEP_BYTES of weights per
     * row, so that a K block, the next one being prefetched and the sums
     * leave room in L2 (8 rows, f32: 2 x 448 KiB of blocks + 112 KiB of
     * sums before). */
    if (n >= MOERT_FFN_DEC_DEEP_ROWS && S * (int64_t)P->es > MOERT_DEC_STEP_BYTES)
      S = MOERT_DEC_STEP_BYTES / (int64_t)P->es;
    { /* Steps of even width: no narrow last step (1% faster, T=64). */
      const int64_t steps = (nf + S - 1) / S;
      S = ((nf + steps - 1) / steps + 63) / 64 * 64;
    }
    /* G, U, RAW (2 S per row), bg, bu; on cache lines (S is a multiple
     * of 64), so the sums' vector loads and stores never split a line:
     * bf16 Mixtral T=8 cold, 2 threads, against malloc's alignment
     * 0.979-0.991 (6 runs of 100 alternating calls). */
    float *buf = (float *)moert_ffn_alloc_lines(P, (size_t)(4 * n * S + 2 * S) * sizeof(float));
    if (buf) {
      NAME(dec1_steps)(P, e, x, n, f0, f1, hrow, hcol0, S, S, buf, buf + n * S,
                       buf + 2 * n * S, buf + 4 * n * S, buf + 4 * n * S + S);
      free(buf);
      return;
    }
  }
  enum { BUF = 16 * MOERT_DEC_SUB };
  float G[BUF], U[BUF], RAW[BUF], bg[MOERT_DEC_SUB], bu[MOERT_DEC_SUB];
  for (int64_t r0 = 0; r0 < n; r0 += 16)
    NAME(dec1_steps)(P, e, x + r0, n - r0 < 16 ? n - r0 : 16, f0, f1, hrow + r0,
                     hcol0, MOERT_DEC_SUB, MOERT_DEC_SUB / 2, G, U, RAW, bg, bu);
}

/* out[r][d] += b2[e][d], d in [d0, d1). */
ISA_FN static void NAME(add_b2)(const Ffn *P, int64_t e, float *o, int64_t d0,
                                int64_t d1) {
  const char *b = P->b2 + (e * P->b2se + d0) * (int64_t)P->es;
  for (int64_t d = d0; d < d1; d += VL, b += VL * (int64_t)P->es) {
    int64_t c = d1 - d;
    V(storen)(o + d, V(add)(V(loadn)(o + d, c), V(ldw)(b, P->dtype, c)), c);
  }
}

/* out rows [d0, d1) = h rows W2 + b2 (phase 2 of the decode path). */
ISA_FN static void NAME(dec2)(const Ffn *P, int64_t e, const float *const *h,
                              int64_t n, float *const *orow, int64_t d0,
                              int64_t d1) {
  MatV w2;
  moert_ffn_views(P, e, NULL, NULL, &w2);
  NAME(colrange)(P->dtype, n, h, P->F, &w2, 0, d0, d1 - d0, orow, d0, 0,
                 P->stream_bytes, NULL);
  if (ffn_has_b2(P, e))
    for (int64_t r = 0; r < n; ++r)
      NAME(add_b2)(P, e, orow[r], d0, d1);
}

/* Scratch-free path: row by row, F in MOERT_DEC_SUB slices accumulated into
 * the output row. Only used when scratch memory cannot be allocated. */
ISA_FN static void NAME(row_fallback)(const Ffn *P, int64_t e,
                                      const float *const *x, int64_t n,
                                      float *const *orow) {
  float h[MOERT_DEC_SUB];
  float *hp = h;
  MatV w2;
  moert_ffn_views(P, e, NULL, NULL, &w2);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t s0 = 0; s0 < P->F; s0 += MOERT_DEC_SUB) {
      int64_t ns = P->F - s0 < MOERT_DEC_SUB ? P->F - s0 : MOERT_DEC_SUB;
      NAME(dec1)(P, e, x + i, 1, s0, s0 + ns, &hp, s0);
      NAME(colrange)(P->dtype, 1, (const float *const *)&hp, ns, &w2, s0, 0,
                     P->Dout, orow + i, 0, s0 > 0, P->stream_bytes, NULL);
    }
    if (ffn_has_b2(P, e))
      NAME(add_b2)(P, e, orow[i], 0, P->Dout);
  }
}

/*===----------------------------------------------------------------------===*
 * Kept packed panels
 *===----------------------------------------------------------------------===*/

/* Expert e's packed panels in the weight cache (layout: ffn_kept_floats),
 * packed here when this call creates the entry; NULL without a cache, or
 * when it declines (not constant, over its budget, being packed by another
 * thread). */
ISA_FN static const float *NAME(kept_panels)(const Ffn *P,
                                             const MoertFfnTune *tn,
                                             int64_t e) {
  MatV gv, uv, w2;
  moert_ffn_views(P, e, &gv, &uv, &w2);
  int fill;
  float *kept = ffn_cache_acquire(P, tn, VL, &gv, &uv, &w2, &fill);
  if (!kept || !fill)
    return kept;
  const int glu = P->kind == MOERT_FFN_GLU;
  const int64_t FB = tn->f_block, KC = tn->k_block, DN = MOERT_FFN_N_BLOCK;
  const int64_t PF = glu ? VL : NR;
  PackSrc s1[2], s2[2];
  ffn_pack_srcs(P, &gv, &uv, &w2, s1, s2);
  float *d = kept;
  for (int64_t fb0 = 0; fb0 < P->F; fb0 += FB) {
    const int64_t nf = P->F - fb0 < FB ? P->F - fb0 : FB;
    const int64_t Q1 = (nf + PF - 1) / PF;
    for (int64_t k0 = 0; k0 < P->Din; k0 += KC) {
      const int64_t kc = P->Din - k0 < KC ? P->Din - k0 : KC;
      NAME(pack_block)(d, kc, k0, Q1, fb0, fb0 + nf, PF, glu ? 0 : VL, s1, P->dtype);
      d += kc * Q1 * NR;
    }
    for (int64_t dn0 = 0; dn0 < P->Dout; dn0 += DN) {
      const int64_t dn = P->Dout - dn0 < DN ? P->Dout - dn0 : DN;
      const int64_t Q2 = (dn + NR - 1) / NR;
      NAME(pack_block)(d, nf, fb0, Q2, dn0, P->Dout, NR, VL, s2, P->dtype);
      d += nf * Q2 * NR;
    }
  }
  P->wc.publish(P->wc.user, kept);
  return kept;
}

/* Whether a decode task of n rows reads the expert's kept panels instead of
 * the stored weights. Only f32 in_out weights: there the panels hold the
 * same values, and the products below run the same chain of FMAs per sum as
 * the stored-weight products (cr_io, rowstream_t; in k order from zero),
 * so the result does not depend on whether the cache had the panels. 16-bit
 * weights are widened in the panels (twice the bytes to read), out_in
 * decode products are dot products (another chain). */
static int NAME(dec_panels_ok)(const Ffn *P, int64_t n) {
  return P->has_wc && P->es == 4 && !P->trans && n >= MOERT_FFN_DEC_PANEL_MIN_ROWS &&
         n <= MOERT_FFN_DEC_PANEL_ROWS;
}

/* dec1 from the kept panels (hcol0 = 0): for each F block that [f0, f1)
 * touches (f0 a multiple of the panel's PF units), its W1/W3 panels in
 * stored order, KC slice by slice, each panel's slice multiplied into the
 * sums ACC [n][panels x 2VL] by the microkernel, MR rows at a time while it
 * sits in L1/L2; then the epilogue. One sequential read of the weights,
 * which the hardware prefetcher serves at about the rate of the DRAM test,
 * and sums in registers for KC steps: small row groups are no longer held
 * to the 21-24 GB/s that one thread's strided K blocks read. Returns 0
 * (nothing written) without scratch memory. */
ISA_FN static int NAME(pdec1)(const Ffn *P, const MoertFfnTune *tn,
                              const float *kept, int64_t e,
                              const float *const *x, int64_t n, int64_t f0,
                              int64_t f1, float *const *hrow) {
  const int64_t Din = P->Din, FB = tn->f_block, KC = tn->k_block;
  const int glu = P->kind == MOERT_FFN_GLU;
  const int64_t PF = glu ? VL : NR, accw = FB / PF * NR;
  const int64_t bfl = ffn_kept_floats(P, VL, FB);
  /* ACC [n][accw], gate/up biases of a block, ACC row pointers. */
  void *mem = moert_ffn_alloc_lines(P, (size_t)(n * accw + 2 * FB) * sizeof(float) +
                                           (size_t)n * sizeof(float *));
  if (!mem)
    return 0;
  float *acc = (float *)mem;
  float *bgv = acc + n * accw, *buv = bgv + FB;
  float **ar = (float **)(buv + FB);
  for (int64_t i = 0; i < n; ++i)
    ar[i] = acc + i * accw;
  const float *kend = kept + ffn_packed_bytes(P, tn, VL) / sizeof(float);
  PfCursor pf;
  for (int64_t fb0 = f0 / FB * FB; fb0 < f1; fb0 += FB) {
    const int64_t nf = P->F - fb0 < FB ? P->F - fb0 : FB;
    const int64_t Q1 = (nf + PF - 1) / PF;
    const int64_t u0 = f0 > fb0 ? f0 : fb0, u1 = f1 < fb0 + nf ? f1 : fb0 + nf;
    const int64_t qa = (u0 - fb0) / PF, qb = (u1 - fb0 + PF - 1) / PF;
    const float *blk = kept + (fb0 / FB) * bfl;
    for (int64_t k0 = 0; k0 < Din; k0 += KC) {
      const int64_t kc = Din - k0 < KC ? Din - k0 : KC;
      const float *sl = blk + k0 * Q1 * NR;
      for (int64_t q = qa, np; q < qb; q += np) {
        np = NAME(dec_step)(n, qb - q);
        /* The hardware prefetcher alone keeps one thread's sequential read
         * at about 20 GB/s here (a call ends every KC steps); the next
         * panel slice prefetched during this one: 25-26 GB/s (8 rows,
         * microbenchmark). See pdec_pf_calls for which row tiles issue
         * it. The next step's panels are adjacent: one run. */
        const float *nx = NULL;
        int64_t nxl = 0;
        if (q + np < qb) {
          nx = sl + (q + np) * kc * NR;
          nxl = NAME(dec_step)(n, qb - q - np) * kc * NR;
        } else if (k0 + kc < Din) {
          const int64_t kc2 = Din - k0 - kc < KC ? Din - k0 - kc : KC;
          nx = blk + (k0 + kc) * Q1 * NR + qa * kc2 * NR;
          nxl = NAME(dec_step)(n, qb - qa) * kc2 * NR;
        } else if (fb0 + FB < f1) {
          nx = blk + bfl; /* the next block starts at its unit fb0 + FB >= f0 */
          nxl = (Din < KC ? Din : KC) * NR;
        }
        ffn_pf_kept(&pf, n >= tn->pf_rows ? nx : NULL, nxl, kend);
        pf_start(&pf, NAME(pdec_pf_calls)(P, n, np));
        NAME(dec_panels_mul)(np, kc, x, k0, sl + q * kc * NR, kc * NR, ar, (q - qa) * NR, n,
                             np * NR, k0 > 0, NULL, &pf);
      }
    }
    /* The block's units from the first panel's: [h0, u1). */
    const int64_t h0 = fb0 + qa * PF, nu = u1 - h0;
    const float *bg = moert_ffn_bias1(P, e, 0, h0, nu, bgv) ? bgv : NULL;
    const float *bu = glu && moert_ffn_bias1(P, e, 1, h0, nu, buv) ? buv : NULL;
    NAME(epi_panels)(P, (const float *const *)ar, n, nu, bg, bu, hrow, h0);
  }
  free(mem);
  return 1;
}

/* dec2 from the kept panels: output columns [d0, d1) (d0 a multiple of
 * 2VL) of n rows, F block by F block (each output sum continues over the
 * blocks in order, b2 added after the last), each block's W2 panels of
 * those columns in stored order. */
ISA_FN static void NAME(pdec2)(const Ffn *P, const MoertFfnTune *tn,
                               const float *kept, int64_t e,
                               const float *const *h, int64_t n,
                               float *const *orow, int64_t d0, int64_t d1) {
  const int64_t FB = tn->f_block;
  const int glu = P->kind == MOERT_FFN_GLU;
  const int64_t PF = glu ? VL : NR;
  const int64_t bfl = ffn_kept_floats(P, VL, FB);
  const float *b2 = ffn_has_b2(P, e) ? (const float *)P->b2 + e * P->b2se : NULL;
  const float *kend = kept + ffn_packed_bytes(P, tn, VL) / sizeof(float);
  PfCursor pf;
  for (int64_t fb0 = 0; fb0 < P->F; fb0 += FB) {
    const int64_t nf = P->F - fb0 < FB ? P->F - fb0 : FB;
    const float *w2p = kept + (fb0 / FB) * bfl + P->Din * ((nf + PF - 1) / PF) * NR;
    const int last = fb0 + nf >= P->F;
    const int64_t npan = (d1 - d0 + NR - 1) / NR; /* panels of [d0, d1) */
    for (int64_t n0 = d0, np; n0 < d1; n0 += np * NR) {
      const int64_t left = npan - (n0 - d0) / NR;
      np = NAME(dec_step)(n, left);
      const int64_t nn = d1 - n0 < np * NR ? d1 - n0 : np * NR;
      const float *cur = w2p + n0 / NR * nf * NR;
      /* Prefetch the next step's panels: the next columns, or the next
       * block's first. */
      if (n < tn->pf_rows) {
        pf.nr = 0;
      } else if (left > np) {
        ffn_pf_kept(&pf, cur + np * nf * NR, NAME(dec_step)(n, left - np) * nf * NR, kend);
      } else if (!last) {
        const int64_t nf2 = P->F - fb0 - FB < FB ? P->F - fb0 - FB : FB;
        ffn_pf_kept(&pf, kept + (fb0 / FB + 1) * bfl + P->Din * ((nf2 + PF - 1) / PF) * NR +
                             d0 / NR * nf2 * NR, NAME(dec_step)(n, npan) * nf2 * NR, kend);
      } else {
        pf.nr = 0;
      }
      pf_start(&pf, NAME(pdec_pf_calls)(P, n, np));
      NAME(dec_panels_mul)(np, nf, h, fb0, cur, nf * NR, orow, n0, n, nn, fb0 > 0,
                           last && b2 ? b2 + n0 : NULL, &pf);
    }
  }
}

/* The kept panels a decode task of n rows of expert e reads, or NULL
 * (the stored weights). */
ISA_FN static const float *NAME(dec_panels)(const Ffn *P, const MoertFfnTune *tn,
                                            int64_t e, int64_t n) {
  return NAME(dec_panels_ok)(P, n) ? NAME(kept_panels)(P, tn, e) : NULL;
}

/* A decode task's phase 1 (hidden units [f0, f1)) and phase 2 (output
 * columns [d0, d1)): from the kept panels where dec_panels_ok, else from
 * the stored weights. */
ISA_FN static void NAME(dec1_task)(const Ffn *P, const MoertFfnTune *tn,
                                   int64_t e, const float *const *x, int64_t n,
                                   int64_t f0, int64_t f1, float *const *hrow) {
  const float *kept = NAME(dec_panels)(P, tn, e, n);
  if (!kept || !NAME(pdec1)(P, tn, kept, e, x, n, f0, f1, hrow))
    NAME(dec1)(P, e, x, n, f0, f1, hrow, 0);
}

ISA_FN static void NAME(dec2_task)(const Ffn *P, const MoertFfnTune *tn,
                                   int64_t e, const float *const *h, int64_t n,
                                   float *const *orow, int64_t d0, int64_t d1) {
  const float *kept = NAME(dec_panels)(P, tn, e, n);
  if (kept)
    NAME(pdec2)(P, tn, kept, e, h, n, orow, d0, d1);
  else
    NAME(dec2)(P, e, h, n, orow, d0, d1);
}

/*===----------------------------------------------------------------------===*
 * Fused GEMM path
 *===----------------------------------------------------------------------===*/

/* One expert's block of m rows (x rows xr[i] -> output rows orow[i]). */
ISA_FN static void NAME(gemm_rows)(const Ffn *P, const MoertFfnTune *tn,
                                   int64_t e, const float *const *xr,
                                   float *const *orow, int64_t m, int64_t fb_first,
                                   FfnSteal *st) {
  const int64_t Din = P->Din, Dout = P->Dout, F = P->F;
  const int64_t FB = tn->f_block, KC = tn->k_block, DN = MOERT_FFN_N_BLOCK;
  const int glu = P->kind == MOERT_FFN_GLU;
  const int64_t PF = glu ? VL : NR;       /* hidden units per GEMM1 panel */
  const int64_t accw = FB / PF * NR;      /* ACC row: every panel of a block */
  const int64_t mpad = (m + MR - 1) / MR * MR;
  const int64_t doutp = (Dout + NR - 1) / NR * NR;
  /* Scratch (64-byte aligned): B1 panels [FB/PF][KC][2VL], B2 panels
   * [DN/2VL][FB][2VL], ACC [mpad][accw], H [mpad][FB], b2, gate/up biases
   * of a block; then the row pointer arrays. */
  const int64_t nfl = KC * accw + FB * DN + mpad * accw + mpad * FB + doutp + 2 * FB;
  size_t bytes = (size_t)nfl * sizeof(float) + (size_t)(3 * mpad) * sizeof(void *);
  void *mem = moert_ffn_alloc_lines(P, bytes);
  if (!mem) {
    /* The whole rows, from scratch: right for rows taken from another
     * thread too (fb_first > 0), whose earlier blocks it overwrites. */
    NAME(row_fallback)(P, e, xr, m, orow);
    return;
  }
  float *bp1 = (float *)mem;
  float *bp2 = bp1 + KC * accw;
  float *acc = bp2 + FB * DN;
  float *hbuf = acc + mpad * accw;
  float *b2v = hbuf + mpad * FB;
  float *bgv = b2v + doutp, *buv = bgv + FB;
  const float **xa = (const float **)(buv + FB);
  float **hr = (float **)(xa + mpad);
  float **ar = hr + mpad;
  for (int64_t i = 0; i < mpad; ++i) {
    xa[i] = xr[i < m ? i : 0];
    hr[i] = hbuf + (i < m ? i : 0) * FB;
    ar[i] = acc + i * accw;
  }
  if (ffn_has_b2(P, e))
    for (int64_t d = 0; d < Dout; ++d)
      b2v[d] = moert_load_elem(P->b2 + (e * P->b2se + d) * (int64_t)P->es, P->dtype);

  MatV gv, uv, w2;
  moert_ffn_views(P, e, &gv, &uv, &w2);
  PackSrc s1[2], s2[2];
  ffn_pack_srcs(P, &gv, &uv, &w2, s1, s2);
  /* Packed panels kept in the weight cache: read them (packing them first
   * when this call creates the entry) instead of packing per block. */
  const float *kept = NAME(kept_panels)(P, tn, e);
  /* The next kept block (every block before the last is a full one). */
  const float *kp = kept ? kept + fb_first * ffn_kept_floats(P, VL, FB) : NULL;
  const float *kend = kept ? kept + ffn_packed_bytes(P, tn, VL) / sizeof(float) : NULL;
  PfCursor pf;
  for (int64_t fb0 = fb_first * FB; fb0 < F; fb0 += FB) {
    const int64_t nf = F - fb0 < FB ? F - fb0 : FB;
    const int64_t Q1 = (nf + PF - 1) / PF;
    /* Rows [m', m) may go to an idle thread from this block on. */
    m = ffn_steal_poll(st, fb0 / FB, m);
    /* GEMM1: ACC[:, panel q] (+)= X[:, k0:k0+kc] B1[k0:k0+kc, panel q]. */
    int64_t k0 = 0;
    do {
      const int64_t kc = Din - k0 < KC ? Din - k0 : KC;
      const float *b1 = bp1;
      if (kp) {
        b1 = kp;
        kp += kc * Q1 * NR;
        ffn_pf_kept(&pf, kp, kc * Q1 * NR, kend);
      } else {
        NAME(pack_block)(bp1, kc, k0, Q1, fb0, fb0 + nf, PF, glu ? 0 : VL, s1, P->dtype);
        /* Prefetch what the next packing reads: the next K slice, or the
         * first W2 block. */
        if (k0 + kc < Din)
          moert_ffn_pf_w1(P, &gv, &uv, &pf, k0 + kc, k0 + kc + (Din - k0 - kc < KC ? Din - k0 - kc : KC), fb0, nf);
        else
          moert_ffn_pf_w2(P, &w2, &pf, fb0, nf, 0, Dout < DN ? Dout : DN);
      }
      NAME(gemm_panels)(kc, xa, k0, b1, Q1, ar, 0, Q1 * NR, m, k0 > 0, NULL, 0, &pf);
      k0 += kc;
    } while (k0 < Din);
    /* Epilogue: H[:, 0:nf] = act(...) of hidden units [fb0, fb0 + nf). */
    const float *bg = moert_ffn_bias1(P, e, 0, fb0, nf, bgv) ? bgv : NULL;
    const float *bu = glu && moert_ffn_bias1(P, e, 1, fb0, nf, buv) ? buv : NULL;
    NAME(epi_panels)(P, (const float *const *)ar, m, nf, bg, bu, hr, 0);
    /* GEMM2: out[:, :] (+)= H[:, 0:nf] W2[fb0:fb0+nf, :] (+ b2 after the
     * last block), DN output columns at a time. */
    const int last = fb0 + nf >= F;
    for (int64_t dn0 = 0; dn0 < Dout; dn0 += DN) {
      const int64_t dn = Dout - dn0 < DN ? Dout - dn0 : DN;
      const int64_t Q2 = (dn + NR - 1) / NR;
      const float *b2 = bp2;
      if (kp) {
        b2 = kp;
        kp += nf * Q2 * NR;
        ffn_pf_kept(&pf, kp, nf * Q2 * NR, kend);
      } else {
        NAME(pack_block)(bp2, nf, fb0, Q2, dn0, Dout, NR, VL, s2, P->dtype);
        /* Next: the following W2 block, or the next F block's first slice. */
        if (dn0 + DN < Dout) {
          moert_ffn_pf_w2(P, &w2, &pf, fb0, nf, dn0 + DN,
                          Dout - dn0 - DN < DN ? Dout : dn0 + 2 * DN);
        } else if (fb0 + FB < F) {
          moert_ffn_pf_w1(P, &gv, &uv, &pf, 0, Din < KC ? Din : KC, fb0 + FB,
                          F - fb0 - FB < FB ? F - fb0 - FB : FB);
        } else {
          pf.nr = 0;
        }
      }
      NAME(gemm_panels)(nf, (const float *const *)hr, 0, b2, Q2, orow, dn0, Dout - dn0, m,
                        fb0 > 0, last && ffn_has_b2(P, e) ? b2v + dn0 : NULL, fb0 > 0, &pf);
    }
  }
  free(mem);
}

/*===----------------------------------------------------------------------===*
 * A lone decode row, split by K
 *===----------------------------------------------------------------------===*/

/* Part `part` of `parts` of a lone decode row's product, over a contiguous
 * range of the stored weight rows (K): phase 1, buf [F] (gate) and
 * buf + F (up) = in[k range] W1 (W3)[k range, :] for the x row in; phase
 * 2, buf [Dout] = in[f range] W2[f range, :] for the hidden row in. Each
 * thread streams one block of whole rows, where column chunks would have
 * two threads read interleaved part-row runs (see ffn_compute). */
ISA_FN static void NAME(dec_kpart)(const Ffn *P, int64_t e, int phase, const float *in,
                                   int64_t part, int64_t parts, float *buf) {
  MatV gv, uv, w2;
  moert_ffn_views(P, e, &gv, &uv, &w2);
  const int64_t K = phase == 1 ? P->Din : P->F;
  const int64_t k0 = K * part / parts, k1 = K * (part + 1) / parts;
  const float *xs = in + k0;
  float *o = buf;
  if (phase == 2) {
    NAME(colrange)(P->dtype, 1, &xs, k1 - k0, &w2, k0, 0, P->Dout, &o, 0, 0,
                   P->stream_bytes, NULL);
    return;
  }
  NAME(colrange)(P->dtype, 1, &xs, k1 - k0, &gv, k0, P->cg0, P->F, &o, 0, 0,
                 P->stream_bytes, NULL);
  if (P->kind == MOERT_FFN_GLU) {
    o = buf + P->F;
    NAME(colrange)(P->dtype, 1, &xs, k1 - k0, &uv, k0, P->cu0, P->F, &o, 0, 0,
                   P->stream_bytes, NULL);
  }
}

/* The parts' sums (part p at buf + p stride, parts >= 2) added in part
 * order, then phase 1: into part 0's, and from there the hidden row dst
 * [F] (biases, activation; bias scratch [2 F]); phase 2: into the output
 * row dst [Dout] (+ b2). The order is fixed, so the result does not
 * depend on which thread ran which part or finished last. */
ISA_FN static void NAME(dec_kfinish)(const Ffn *P, int64_t e, int phase, float *buf,
                                     int64_t parts, int64_t stride, float *dst,
                                     float *scratch) {
  const int glu = P->kind == MOERT_FFN_GLU;
  const int64_t n = phase == 1 ? (glu ? 2 * P->F : P->F) : P->Dout;
  float *sum = phase == 1 ? buf : dst;
  for (int64_t p = 1; p < parts; ++p)
    for (int64_t j = 0; j < n; j += VL) {
      const int64_t c = n - j;
      const float *acc = p == 1 ? buf : sum;
      V(storen)(sum + j, V(add)(V(loadn)(acc + j, c), V(loadn)(buf + p * stride + j, c)), c);
    }
  if (phase == 2) {
    if (ffn_has_b2(P, e))
      NAME(add_b2)(P, e, dst, 0, n);
    return;
  }
  const float *bg = moert_ffn_bias1(P, e, 0, 0, P->F, scratch) ? scratch : NULL;
  const float *bu = glu && moert_ffn_bias1(P, e, 1, 0, P->F, scratch + P->F) ? scratch + P->F
                                                                              : NULL;
  NAME(epi)(P, buf, glu ? buf + P->F : NULL, bg, bu, dst, P->F);
}

static const MoertFfnOps NAME(ops) = {NAME(gemm_rows), NAME(dec1_task), NAME(dec2_task),
                                      NAME(row_fallback), NAME(dec_kpart),
                                      NAME(dec_kfinish)};

#undef NR
#undef UKR_TALL
#undef PAIR_MR
#undef CR_ROWS_IO
#undef V
#undef VCAT
#undef VCAT2
/* The instance's parameters too, so the next instance can define them. */
#undef NAME
#undef VP
#undef VF
#undef VL
#undef MR
#undef ISA_FN
#undef ISA_AI
