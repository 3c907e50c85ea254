/*===- expert_ffn.c - moe.experts: fused expert FFN on the CPU --*- C -*-===*
 *
 * out[r] = FFN_e(x[row_token[r]]) for every row r of every expert segment
 * (docs/Semantics.md §3; the contract is in moert/cpu_kernels.h). The token
 * gather is fused into the products: the GEMM microkernel reads its A rows
 * through row pointers straight from x, so the dispatched [R, D] copy is
 * never made.
 *
 * Two paths, chosen per expert from its row count only (so the result never
 * depends on the number of threads):
 *
 *  - GEMM path (>= decode_rows rows, default 64). Tasks own a block of up to
 *    row_block rows of one expert and loop over F in blocks of FB hidden
 *    units (vertical fusion):
 *      for each F block:
 *        GEMM1: for each KC slice of D: pack the W1/W3 columns of the block
 *          ([KC] x [FB gate | FB up] as 2VL-wide panels: VL gate + VL up
 *          units per panel for a GLU; f16/bf16 -> f32; out_in weights
 *          transposed in registers), then run the MR x 2VL register-tiled
 *          microkernel (8 x 32 on AVX-512; a block's last tile has a kernel
 *          of its own height) over the row block, accumulating
 *          in ACC[rows, panels x 2VL] (L2);
 *        epilogue: bias, clamp, activation, act(g) * (u + shift) -> H[rows, FB]
 *          (an L2-resident tile, never the whole [rows, F]);
 *        GEMM2: for each block of 256 output columns: pack W2[FB, 256], run
 *          the microkernel H x W2 into the output rows, which accumulate the
 *          F blocks in order (b2 is added after the last one).
 *    Every weight element is packed once per row block and reused by all
 *    its rows. Packing reads stored rows in runs of 0.5-1 KiB, and the
 *    weights of the next packing step are prefetched (prefetcht1) a few
 *    lines per chunk of 16 or 24 k steps of the microkernel (ukr_t),
 *    which hides most of the DRAM latency the packing would otherwise
 *    stall on.
 *
 *  - Decode path (< decode_rows rows). Memory bound: every weight is
 *    streamed from memory once per task. With a weight cache, row groups
 *    of 2 or more rows of f32 in_out weights read the expert's kept GEMM
 *    panels (packed on first use) in stored order: the microkernel over
 *    each KC slice of a panel, MR rows at a time (a group's last tile up
 *    to MR + 2 on AVX-512), the next panel prefetched (pdec1/pdec2). Otherwise the stored weights, unpacked,
 *    converted on load.
 *    in_out matrices: up to 4 rows (whole stored rows, sums <= 16 KiB for
 *    one row, 8 KiB for several; 16-bit weights: one row, 8 KiB) stream
 *    the weight rows in stored order
 *    with the sums in L1, the single sequential read DRAM serves best;
 *    otherwise 4 rows x 64 columns register tiles over K
 *    blocks of ~64 KiB of weights (L2), the next block prefetched as whole
 *    stored rows (sequential memory); out_in matrices: 4 x 4 dot products of
 *    contiguous stored rows, the next rows prefetched. Phase 1 tasks
 *    (expert, <= 64 rows, F chunk) write the hidden activations
 *    [rows, F chunk] into a per-call buffer; phase 2 tasks (expert, rows,
 *    output column chunk) multiply them by W2. Chunks are as wide as the
 *    thread count allows (one chunk per expert when serial).
 *
 * Parallelism comes from the thread-local hook (moert_cpu_set_parallel_hook):
 * one parallel_for over one group of GEMM row blocks per thread, then the
 * phase 1 tasks and the phase 2 tasks (a phase 2 task waits for its
 * expert's phase 1 tasks; calls of few decode row groups run phase 2 as a
 * second parallel_for instead). Decode tasks are handed out
 * by their expert's rows, most first, so that a hot expert does not end a
 * phase alone. The GEMM groups are planned
 * from a cost model (rows, plus the weight packing every block does): whole
 * experts largest first, or, when one expert holds more than a thread's
 * share (skewed routing), experts split at the thread boundaries, whichever
 * leaves the busiest thread less to do (ffn_plan_gemm); in a call of GEMM
 * groups only, a thread done with its group takes rows of a busy one from
 * its next F block on (ffn_steal_loop). Decode chunks are
 * sized so the task count is a multiple of the thread count. Tasks write
 * disjoint outputs and every output element is one fixed chain of
 * operations that depends on the shapes only (never on row blocks, chunks,
 * threads or task order), so the result is bit-identical for any number of
 * threads and any task order. Scratch memory is allocated per call and per
 * task; without it, slower scratch-free paths give the same accuracy.
 *
 * Instruction sets: AVX-512 (F/BW/VL/DQ), AVX2+FMA+F16C and portable C,
 * chosen at run time (__builtin_cpu_supports); the same kernels
 * (expert_ffn_kernels.h) are instantiated for each with target attributes.
 * Results differ between instruction sets (FMA vs separate roundings, vector
 * lengths of the dot products) but not between runs on one machine.
 *
 *===----------------------------------------------------------------------===*/

#include "moert/cpu_kernels.h"

#include "../cpu_relax.h"
#include "dtype.h"
#include "expert_ffn_internal.h"
#include "expert_ffn_simd.h"
#include "kernel_util.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { MOERT_FFN_MLP = 0, MOERT_FFN_GLU = 1 };
enum {
  MOERT_ACT_SILU = 0,
  MOERT_ACT_GELU = 1,
  MOERT_ACT_GELU_TANH = 2,
  MOERT_ACT_RELU = 3,
  MOERT_ACT_IDENTITY = 4
};
enum { MOERT_GU_SEPARATE = 0, MOERT_GU_CONCAT = 1, MOERT_GU_INTERLEAVED = 2 };

#define MOERT_FFN_I32(m, i)                                                    \
  (*(const int32_t *)((const char *)(m)->aligned +                             \
                      ((m)->offset + (i) * (m)->strides[0]) * 4))

#define MOERT_DEC_MAX_ROWS 64 /* most rows of one decode task */
#define MOERT_DEC_SUB 64      /* F columns per decode sub-step */
/* Floats of one decode step's accumulators per product (rows x step
 * columns; gate and up each): with the K blocks below they share the L2.
 * 16K against 32K: Mixtral T=64, 1 thread, 31.6 vs 32.4 ms. */
#define MOERT_DEC_ACC_FLOATS 16384
/* The most weight bytes per row of one decode step of MOERT_FFN_DEC_DEEP_ROWS
 * rows or more. In one process, runs of alternating calls against
 * MOERT_DEC_ACC_FLOATS alone: Mixtral T=64 on 2 threads 1.2-1.4% faster
 * skewed, 1.2-2.9% balanced, mixtral-small 0.3-0.5%; 1 thread (f32, 768
 * units) 1.1-1.4%; bf16 T=64 within 0.3%. 4 KiB: about the same for f32;
 * 768 units for bf16 too: 0.8-1.0% slower there. Other models' deep groups
 * already have shorter steps (DeepSeek-fine: F = 512). */
#define MOERT_DEC_STEP_BYTES (3 * 1024)

/* Defaults of the tuning knobs (expert_ffn_internal.h). */
#define MOERT_FFN_ROW_BLOCK 256
#define MOERT_FFN_F_BLOCK 128
#define MOERT_FFN_K_BLOCK 256
/* On Intel CPUs (tuned on a Xeon with 48 KiB of L1d): a K slice of two
 * adjacent W1/W3 panels (ukr_pair) is then 32 KiB and stays in L1 while
 * the row tiles pass over it. Two-library A/Bs, 2 threads, var/base:
 * T=512 Mixtral 0.97-0.99, DeepSeek-fine 0.96-0.98, Switch 0.96-0.97; T=2048
 * Mixtral 0.99; decode (T=1, 8 cold, T=64) within the runs' noise (+-1-5%).
 * Elsewhere 256 (tuned on Zen 4, before the paired tile). */
#define MOERT_FFN_K_BLOCK_INTEL 128
#define MOERT_FFN_N_BLOCK 256 /* output columns per packed W2 block */
/* Experts with fewer rows take the decode path. 64 against 48 (the decode
 * path takes DeepSeek-fine T=512's experts of 48-63 rows), two-library
 * A/Bs, var/base: DeepSeek-fine T=512 0.978-0.996 on 2 threads,
 * 0.978-0.987 on 1; Switch T=512 and skewed Mixtral T=64 within the runs'
 * noise (0.99-1.01). Larger decode groups (96 rows, with the group cap
 * raised) were no faster (0.997-1.005). */
#define MOERT_FFN_DECODE_ROWS 64
#define MOERT_FFN_MIN_SPLIT 32  /* smallest piece of an expert split between threads */
#define MOERT_FFN_PACK_ROWS 8   /* cost of packing an expert's weights, in rows */
/* The same with a weight cache: the panels are packed once (the first call
 * pays as before) and then only read; what is left is the cost of a block
 * that starts cold. */
#define MOERT_FFN_PACKED_ROWS 1
#define MOERT_FFN_DEC_MIN_CHUNK 64 /* fewest columns of a decode task */
#define MOERT_FFN_DEC_KPARTS 2     /* K ranges of a lone decode row (ffn_compute) */
#ifndef MOERT_FFN_DEC_KBYTES
/* Weight bytes per decode K block. 64 KiB streams 5-20% faster than 192 KiB
 * once the weights sit on huge pages (bench/run_bench.py, cold decode rows),
 * the same without them. */
#define MOERT_FFN_DEC_KBYTES (64 * 1024)
#endif
#ifndef MOERT_FFN_DEC_STREAM_BYTES
/* Most bytes of sums (columns) that a one-row in_out decode product keeps
 * in L1 while it streams the weight rows in stored order (half of it for
 * 2..MOERT_FFN_DEC_STREAM_ROWS rows). Above that the sums spill to L2 and
 * the register-tiled product is faster (Mixtral's 2 x 3584 columns). */
#define MOERT_FFN_DEC_STREAM_BYTES (16 * 1024)
#endif
#define MOERT_FFN_DEC_STREAM_ROWS 4
/* Decode products of at least MOERT_FFN_DEC_DEEP_ROWS x rows are compute
 * bound (T = 64: 8-30 rows per expert): their K blocks are at least
 * MOERT_FFN_DEC_DEEP_K rows deep, so that each register tile runs that many
 * FMA steps between loads and stores of its sums instead of the 8-18 that
 * MOERT_FFN_DEC_KBYTES leaves wide steps. Mixtral T=64, 1 thread: 36.3 ->
 * 31.6 ms (16 rows per expert: 41.2 -> 30.5 ms, kernel alone); depth 128
 * and 256 were slower. Fewer rows stay on MOERT_FFN_DEC_KBYTES blocks:
 * they are memory bound. */
#define MOERT_FFN_DEC_DEEP_ROWS 8
#define MOERT_FFN_DEC_DEEP_K 64
/* In deep blocks the next block's prefetches go out every 2^this k steps
 * (every 8th in others). Against every 8th, in one process, runs of 40
 * (2 threads) or 20 (1 thread) alternating calls: Mixtral T=64 on 2 threads
 * 0.4-1.0% faster skewed, -0.2% to +1.0% balanced; on 1 thread 0.8-1.0% and
 * 0.7-1.5%; cold T=8 (short blocks only) within 1%. An earlier form (the
 * interval picked per block with a division): DeepSeek-fine T=64 0.5-2.7%
 * faster, Switch and bf16 Mixtral T=64 within 1%. The interval for all
 * blocks, Mixtral T=64 on 2 threads: every step no gain; every 2nd to 4th
 * 0.5-1.5% faster, but every 2nd made cold T=8 1-3% slower; every 16th
 * 2.5-3% slower. */
#ifndef MOERT_FFN_PF_EVERY_DEEP_LOG2
#define MOERT_FFN_PF_EVERY_DEEP_LOG2 1
#endif
/* Decode groups averaging at least this many rows are compute heavy and
 * uneven under skewed routing: their experts are cut into column chunks as
 * balance needs (ffn_decode_parts). */
#ifndef MOERT_FFN_DEC_SPLIT_ROWS
#define MOERT_FFN_DEC_SPLIT_ROWS 8
#endif
/* Heavy decode experts: chunks are at most 1 / (MOERT_FFN_DEC_GUIDE x
 * threads) of the work left, at most MOERT_FFN_DEC_MAX_PARTS per expert;
 * the weight stream of a group costs about MOERT_FFN_DEC_STREAM_COST rows
 * of FMAs (see ffn_decode_parts). */
#ifndef MOERT_FFN_DEC_GUIDE
#define MOERT_FFN_DEC_GUIDE 2
#endif
#ifndef MOERT_FFN_DEC_MAX_PARTS
#define MOERT_FFN_DEC_MAX_PARTS 8
#endif
#ifndef MOERT_FFN_DEC_STREAM_COST
#define MOERT_FFN_DEC_STREAM_COST 4
#endif
/* Decode calls with more than this many row groups per thread run both
 * phases as one job (see the planner). In one process, runs of alternating
 * calls on 2 threads, against two jobs: Mixtral T=64 0.1-3.4% faster
 * skewed and 0.1-2.2% balanced, DeepSeek-fine T=64 2.7% slower to 5.3%
 * faster (7 of 8 runs faster), Switch T=64 0-2.3%, DeepSeek-fine T=8
 * 0.5-1.9%, Switch T=8 0.8-1.6%, Mixtral cold T=8 0-0.5%, bf16 T=64 within
 * 0.7%; but Switch T=1 (one group) 0.4% faster to 5.3% slower and Mixtral
 * T=1 (two) 0.3-3.3% slower (a range the warm 2-thread T=1 calls also
 * show between identical code paths: 0.4-2.0%). */
#define MOERT_FFN_DEC_MERGE_GROUPS 2
/* The limit for 16-bit weights: the tiled product is faster for wide rows
 * of sums, the stream for narrow ones. Cold Mixtral bf16 T=1 against f32,
 * medians of interleaved rounds: on 2 threads 0.56 all tiled, 0.60 all
 * streamed (15 rounds), 0.51 with W2 (4 KiB of sums) streamed and W1/W3
 * (14 KiB each) tiled (11 rounds); on one thread 0.535 with W1/W3 streamed,
 * 0.508 tiled (9 rounds). */
#define MOERT_FFN_DEC_STREAM_BYTES_16 (8 * 1024)
/* The same limit on Intel CPUs, where the tiled product is faster for
 * 16-bit weights at every width that Mixtral has (W2's 4 KiB of sums too).
 * Measured on a Sapphire Rapids-class Xeon (2 vCPU), cold Mixtral bf16,
 * medians of 100 alternating calls against the 8 KiB limit: T=1 2 threads
 * 19-21% faster, 1 thread 1-2%; T=8 and T=64 on 2 threads within 0.8%. The
 * same choice for f32 weights there: T=1 4% faster on 2 threads but 5.5%
 * slower on 1, so f32 keeps MOERT_FFN_DEC_STREAM_BYTES everywhere. */
#define MOERT_FFN_DEC_STREAM_BYTES_16_INTEL (2 * 1024)
#ifndef MOERT_FFN_DEC_PANEL_ROWS
/* Decode row groups of at most this many rows read the session's kept
 * packed panels of f32 in_out weights (kept_panels, pdec1/pdec2) instead
 * of the stored weights. */
#define MOERT_FFN_DEC_PANEL_ROWS MOERT_DEC_MAX_ROWS
#endif
#ifndef MOERT_FFN_DEC_PANEL_MIN_ROWS
#define MOERT_FFN_DEC_PANEL_MIN_ROWS 2
#endif
#ifndef MOERT_FFN_DEC_PANEL_PF_ROWS
/* Decode row groups of at least this many rows on the kept panels prefetch
 * the next panels; smaller ones leave the stream to the hardware prefetcher
 * (tuned on Zen 4). */
#define MOERT_FFN_DEC_PANEL_PF_ROWS 6
#endif
#ifndef MOERT_FFN_DEC_PANEL_PF_ROWS_INTEL
/* On Intel CPUs groups of 2-5 rows prefetch too: on the Xeon the hardware
 * prefetcher alone read Mixtral T=8's panels (about 2 rows per expert) at
 * 73% of the DRAM test. Two-library A/Bs, cold, var/base: Mixtral T=8
 * 0.83-0.85 (2 threads), 0.83 (1 thread), skewed routing 0.82-0.85;
 * DeepSeek-fine T=8 0.95-0.97; Switch T=8 (warm) 0.95-0.98. */
#define MOERT_FFN_DEC_PANEL_PF_ROWS_INTEL 2
#endif
#ifndef MOERT_FFN_DEC_PAIR_ROWS
/* Decode row groups of at least this many rows on the kept panels take the
 * GEMM path's paired-panel tile (ukr_pair, AVX-512): there the FMAs, not
 * the weight stream, bound the time. */
#define MOERT_FFN_DEC_PAIR_ROWS 16
#endif
#ifndef MOERT_FFN_OI_AHEAD
#define MOERT_FFN_OI_AHEAD 1 /* out_in decode: prefetch distance in row groups */
#endif

/* A logical [K, N] matrix of one expert: element (k, n) is stored at
 * p + (k ld + n) (trans = 0, layout in_out) or p + (n ld + k) (trans = 1,
 * out_in), in elements of the weight dtype. */
typedef struct {
  const char *p;
  int64_t ld;
  int trans;
} MatV;

/* One stack of expert weights: expert i's matrix starts at w + i wse (in
 * elements), rows ld apart; w3 only for a GLU with separate gate/up. */
typedef struct {
  const char *w1, *w3, *w2;
  int64_t w1se, w1ld, w3se, w3ld, w2se, w2ld;
} FfnStack;

typedef struct {
  int64_t T, Din, Dout, F, F1, R, E;
  int kind, act, dtype, trans, has_limit, up_w3;
  size_t es;
  float alpha, up_shift, limit;
  /* Experts 0 .. E0 - 1 read the routed stack, E0 .. E - 1 the shared one
   * (shared experts folded in as always-selected experts, no biases; E0 = E
   * when there are none). */
  FfnStack routed, shared;
  int64_t E0;
  /* gate column of hidden unit f: cg0 + f cgs of W1; up column: cu0 + f cus
   * of W3 (up_w3) or W1. */
  int64_t cg0, cgs, cu0, cus;
  const char *b1, *b2; /* element (e, c) at b + (e bse + c) es */
  int64_t b1se, b2se;
  int has_b1, has_b2;
  int no_heap; /* test knob: every allocation fails */
  int64_t stream_bytes; /* decode: widest row-streamed product (bytes) */
  /* Where GEMM-path packed panels of constant weights are kept across calls
   * (moert_cpu_set_weight_cache), or NULL. */
  moert_weight_cache wc;
  int has_wc;
  int64_t nthr; /* threads the call's tasks run on */
} Ffn;

/* Every scratch allocation of the kernel goes through here. */
static void *moert_ffn_alloc(const Ffn *P, size_t bytes) {
  return P->no_heap ? NULL : malloc(bytes ? bytes : 1);
}

/* The same, starting on a cache line (freed with free()). */
static void *moert_ffn_alloc_lines(const Ffn *P, size_t bytes) {
  void *p = NULL;
  if (P->no_heap || posix_memalign(&p, 64, bytes ? bytes : 1) != 0)
    return NULL;
  return p;
}

/* n floats rounded up to whole 4 KiB pages. */
static int64_t ffn_page_floats(int64_t n) { return (n + 1023) / 1024 * 1024; }

/* What names one expert's packed GEMM-path panels in the weight cache: the
 * source matrices and everything the packed layout depends on (instruction
 * set width, blocking, shapes, gate/up placement). Zero-filled before use,
 * so the padding bytes compare equal too. */
typedef struct {
  uint32_t version; /* of the packed layout */
  int32_t vl, glu, dtype, trans;
  int64_t fb, kc, dn, din, dout, f;
  const void *g, *u, *w2;
  int64_t gld, uld, w2ld, cg0, cgs, cu0, cus;
} FfnPackKey;

/* Bytes of the stored elements of logical [K, N] matrix W (columns up to
 * ncols - 1) from W->p on: what a packed copy is derived from. */
static size_t ffn_mat_bytes(const MatV *W, int64_t K, int64_t ncols, size_t es) {
  if (K <= 0 || ncols <= 0)
    return 0;
  const int64_t n = W->trans ? (ncols - 1) * W->ld + K : (K - 1) * W->ld + ncols;
  return (size_t)n * es;
}

/* Source of one slot of packed panels: logical column c0 + u cs of W for
 * unit u. */
typedef struct {
  const MatV *W;
  int64_t c0, cs;
} PackSrc;

/* The sources of an expert's packed panels (views g, u, w2): W1/W3 panels
 * hold gate units in slot 0 and up units (GLU) or the next VL gate units
 * (MLP) in slot 1; W2 panels read W2's columns in both slots. */
static void ffn_pack_srcs(const Ffn *P, const MatV *g, const MatV *u,
                          const MatV *w2, PackSrc s1[2], PackSrc s2[2]) {
  const int glu = P->kind == MOERT_FFN_GLU;
  const PackSrc a = {g, P->cg0, P->cgs};
  const PackSrc b = {glu ? u : g, glu ? P->cu0 : P->cg0, glu ? P->cus : P->cgs};
  const PackSrc w = {w2, 0, 1};
  s1[0] = a;
  s1[1] = b;
  s2[0] = s2[1] = w;
}

/* Software prefetch of the weights the next packing step will read,
 * spread over the microkernel calls of the current step: packing reads 0.5-1
 * KiB runs of many rows, a pattern the hardware prefetchers pick up too late,
 * so without this the packing stalls on memory latency. A cursor walks up to
 * three regions (rows x contiguous run) line by line. */
typedef struct {
  const char *base;
  int64_t rows, step, run; /* bytes */
} PfRegion;

typedef struct {
  PfRegion r[3];
  int nr, ri;
  int64_t row;
  uintptr_t cur, end; /* line addresses left in the current row */
  int64_t per_call;
} PfCursor;

/* The part of logical matrix W (rows [k0, k1), columns [c0, c1)) as stored. */
static PfRegion pf_region(const MatV *W, size_t es, int64_t k0, int64_t k1,
                          int64_t c0, int64_t c1) {
  PfRegion g;
  const int64_t e = (int64_t)es;
  if (!W->p) { /* no such matrix (up of a non-GLU FFN): nothing to fetch */
    g.base = NULL;
    g.rows = g.step = g.run = 0;
    return g;
  }
  if (!W->trans) {
    g.base = W->p + (k0 * W->ld + c0) * e;
    g.rows = k1 - k0;
    g.run = (c1 - c0) * e;
  } else {
    g.base = W->p + (c0 * W->ld + k0) * e;
    g.rows = c1 - c0;
    g.run = (k1 - k0) * e;
  }
  g.step = W->ld * e;
  if (g.rows <= 0 || g.run <= 0)
    g.rows = 0;
  return g;
}

static int64_t pf_total_lines(const PfCursor *c) {
  int64_t n = 0;
  for (int i = 0; i < c->nr; ++i)
    n += c->r[i].rows * (c->r[i].run / 64 + 2);
  return n;
}

/* Starts a cursor over c->r[0..nr) whose lines are issued over `calls`
 * calls of pf_issue. */
static void pf_start(PfCursor *c, int64_t calls) {
  c->ri = 0;
  c->row = -1;
  c->cur = 64; /* past end: the first issue moves to row 0 */
  c->end = 0;
  int64_t n = pf_total_lines(c);
  c->per_call = calls > 0 ? (n + calls - 1) / calls : n;
}

/* Issues up to n of the cursor's lines. */
static inline void pf_issue_n(PfCursor *c, int64_t n) {
  while (n > 0) {
    if (c->cur > c->end) {
      if (c->ri >= c->nr)
        return;
      const PfRegion *g = &c->r[c->ri];
      if (++c->row >= g->rows) {
        ++c->ri;
        c->row = -1;
        continue;
      }
      const char *p = g->base + c->row * g->step;
      c->cur = (uintptr_t)p & ~(uintptr_t)63;
      c->end = ((uintptr_t)p + (uintptr_t)g->run - 1) & ~(uintptr_t)63;
    }
    /* prefetcht1 (to L2): on Zen 4 it streams about 1.5x the bandwidth of
     * prefetcht0, which is limited by the L1 miss buffers. */
    __builtin_prefetch((const void *)c->cur, 0, 2);
    c->cur += 64;
    --n;
  }
}

/* Spreads one call's share of lines over a loop of `iters` iterations:
 * returns the lines to issue per iteration. Bursts of prefetches fill the
 * miss buffers and stall; a steady trickle does not. */
static inline int64_t pf_per_iter(const PfCursor *c, int64_t iters) {
  if (!c || c->ri >= c->nr)
    return 0;
  return iters > 0 ? (c->per_call + iters - 1) / iters : c->per_call;
}

typedef struct {
  int64_t row_block, f_block, k_block, decode_rows, stream_bytes;
  int path;
  /* Planner: what packing an expert's weights costs, in rows (see
   * ffn_plan_split); next to nothing when packed panels are kept. */
  int64_t pack_rows;
  /* Chosen by CPU vendor, not by the tuning API: the widest row-streamed
   * product of 16-bit weights (bytes), and the fewest decode rows on kept
   * panels that prefetch the next panels. */
  int64_t stream_bytes_16, pf_rows;
} MoertFfnTune;

/* A thread's GEMM work in a call that lets idle threads take rows from busy
 * ones (see ffn_steal_loop). Every field is accessed atomically. */
typedef struct {
  int64_t busy;    /* nonzero while the thread runs GEMM work */
  int64_t task;    /* id of the work it runs now (0: none) */
  int64_t e, i0;   /* that work: expert e, rows from i0 (row lists) */
  int64_t rows;    /* how many of them the thread still computes */
  int64_t block;   /* the F block it is on */
  /* A request from an idle thread: 0 none; > 0 (task id << 32 | rows to
   * keep); -1 accepted: rows [acc_i0 + keep, acc_i0 + acc_end) of expert
   * acc_e are the requester's from F block acc_block on (stable until the
   * requester sets req back to 0); -2 refused. */
  int64_t req;
  int64_t acc_block, acc_e, acc_i0, acc_end;
  int64_t pad[5]; /* one slot per 128 bytes: no false sharing */
} FfnSteal;

/* Called by a GEMM task at the start of its F block b with m rows: accepts
 * a pending request for this work and returns the rows it keeps. */
static int64_t ffn_steal_poll(FfnSteal *st, int64_t b, int64_t m) {
  if (!st)
    return m;
  __atomic_store_n(&st->block, b, __ATOMIC_RELAXED);
  const int64_t r = __atomic_load_n(&st->req, __ATOMIC_ACQUIRE);
  if (r <= 0)
    return m;
  const int64_t id = r >> 32, keep = r & 0xffffffff;
  if (id == __atomic_load_n(&st->task, __ATOMIC_RELAXED) && keep > 0 && keep < m) {
    __atomic_store_n(&st->acc_block, b, __ATOMIC_RELAXED);
    __atomic_store_n(&st->acc_e, __atomic_load_n(&st->e, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
    __atomic_store_n(&st->acc_i0, __atomic_load_n(&st->i0, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
    __atomic_store_n(&st->acc_end, m, __ATOMIC_RELAXED);
    __atomic_store_n(&st->rows, keep, __ATOMIC_RELAXED);
    __atomic_store_n(&st->req, -1, __ATOMIC_RELEASE);
    return keep;
  }
  __atomic_store_n(&st->req, -2, __ATOMIC_RELEASE);
  return m;
}

typedef struct {
  /* Rows [0, m) of expert e from F block fb (in blocks) on; st: the
   * calling thread's steal slot, or NULL. */
  void (*gemm_rows)(const Ffn *, const MoertFfnTune *, int64_t,
                    const float *const *, float *const *, int64_t, int64_t,
                    FfnSteal *);
  void (*dec1)(const Ffn *, const MoertFfnTune *, int64_t, const float *const *,
               int64_t, int64_t, int64_t, float *const *);
  void (*dec2)(const Ffn *, const MoertFfnTune *, int64_t, const float *const *,
               int64_t, float *const *, int64_t, int64_t);
  void (*row_fallback)(const Ffn *, int64_t, const float *const *, int64_t,
                       float *const *);
  /* A lone decode row split by K: one part's sums, and their sum. */
  void (*dec_kpart)(const Ffn *, int64_t, int, const float *, int64_t, int64_t, float *);
  void (*dec_kfinish)(const Ffn *, int64_t, int, float *, int64_t, int64_t, float *,
                      float *);
} MoertFfnOps;

static void moert_ffn_views(const Ffn *P, int64_t e, MatV *g, MatV *u,
                            MatV *w2) {
  const int64_t es = (int64_t)P->es;
  const int shared = e >= P->E0;
  const FfnStack *st = shared ? &P->shared : &P->routed;
  const int64_t i = shared ? e - P->E0 : e;
  if (g) {
    g->p = st->w1 + i * st->w1se * es;
    g->ld = st->w1ld;
    g->trans = P->trans;
  }
  if (u) {
    u->p = P->up_w3 ? st->w3 + i * st->w3se * es : st->w1 + i * st->w1se * es;
    u->ld = P->up_w3 ? st->w3ld : st->w1ld;
    u->trans = P->trans;
  }
  if (w2) {
    w2->p = st->w2 + i * st->w2se * es;
    w2->ld = st->w2ld;
    w2->trans = P->trans;
  }
}

/* Whether expert e adds a b2 row (shared experts have no biases). */
static inline int ffn_has_b2(const Ffn *P, int64_t e) {
  return P->has_b2 && e < P->E0;
}

/* dst[j] = bias of the gate (up = 0) or up (up = 1) pre-activation of hidden
 * unit f0 + j, j < n, as f32; returns 0 (dst untouched) when there is none. */
static int moert_ffn_bias1(const Ffn *P, int64_t e, int up, int64_t f0,
                           int64_t n, float *dst) {
  if (!P->has_b1 || (up && P->up_w3) || e >= P->E0)
    return 0;
  const int64_t c0 = up ? P->cu0 : P->cg0, cs = up ? P->cus : P->cgs;
  const char *b = P->b1 + e * P->b1se * (int64_t)P->es;
  for (int64_t j = 0; j < n; ++j)
    dst[j] = moert_load_elem(b + (c0 + (f0 + j) * cs) * (int64_t)P->es, P->dtype);
  return 1;
}

/* Prefetch regions of the W1/W3 packing step (logical rows [k0, k1), hidden
 * units [f0, f0 + nf)) and of the W2 one (rows [f0, f0 + nf), output
 * columns [d0, d1)). */
static void moert_ffn_pf_w1(const Ffn *P, const MatV *g, const MatV *u,
                            PfCursor *c, int64_t k0, int64_t k1, int64_t f0,
                            int64_t nf) {
  c->nr = 0;
  if (P->kind == MOERT_FFN_GLU && P->cgs == 2) { /* interleaved: one span */
    c->r[c->nr++] = pf_region(g, P->es, k0, k1, 2 * f0, 2 * (f0 + nf));
    return;
  }
  c->r[c->nr++] = pf_region(g, P->es, k0, k1, P->cg0 + f0, P->cg0 + f0 + nf);
  if (P->kind == MOERT_FFN_GLU)
    c->r[c->nr++] = pf_region(u, P->es, k0, k1, P->cu0 + f0, P->cu0 + f0 + nf);
}

static void moert_ffn_pf_w2(const Ffn *P, const MatV *w2, PfCursor *c,
                            int64_t f0, int64_t nf, int64_t d0, int64_t d1) {
  c->nr = 1;
  c->r[0] = pf_region(w2, P->es, f0, f0 + nf, d0, d1);
}

/* Prefetch region of the next kept packed block: nfl floats from next,
 * clipped at end (none when next is NULL or at the end). Kept panels lie in
 * the order the kernel reads them, so this is one contiguous run. */
static void ffn_pf_kept(PfCursor *c, const float *next, int64_t nfl,
                        const float *end) {
  c->nr = 0;
  if (!next || next >= end)
    return;
  if (nfl > end - next)
    nfl = end - next;
  c->nr = 1;
  c->r[0].base = (const char *)next;
  c->r[0].rows = 1;
  c->r[0].step = 0;
  c->r[0].run = nfl * (int64_t)sizeof(float);
}

/* One expert's packed panels (kept_panels), for panels of NR = 2 VL floats:
 * for each F block of FB hidden units, its W1/W3 panels (for each KC slice
 * of D, the block's panels [kc][NR] of PF units each: VL gate + VL up units
 * for a GLU, NR units otherwise), then its W2 panels (for each NR output
 * columns, [nf][NR]). ffn_kept_floats: the floats of a block of nf units
 * (every block but the last is full); ffn_packed_bytes: of all blocks. */
static int64_t ffn_kept_floats(const Ffn *P, int64_t vl, int64_t nf) {
  const int64_t nr = 2 * vl, pf = P->kind == MOERT_FFN_GLU ? vl : nr;
  const int64_t q2 = (P->Dout + nr - 1) / nr; /* DN is a multiple of NR */
  return P->Din * ((nf + pf - 1) / pf) * nr + nf * q2 * nr;
}

static size_t ffn_packed_bytes(const Ffn *P, const MoertFfnTune *tn, int64_t vl) {
  size_t n = 0;
  for (int64_t fb0 = 0; fb0 < P->F; fb0 += tn->f_block)
    n += (size_t)ffn_kept_floats(P, vl, P->F - fb0 < tn->f_block ? P->F - fb0 : tn->f_block);
  return n * sizeof(float);
}

/* The weight cache's entry for an expert's packed panels (views g, u, w2):
 * ready (*fill = 0), or new and to be written by the caller, who then
 * publishes it (*fill = 1). NULL when there is no cache, the weights are not
 * constant or the cache declines (see moert_weight_cache). */
static float *ffn_cache_acquire(const Ffn *P, const MoertFfnTune *tn,
                                int64_t vl, const MatV *g,
                                const MatV *u, const MatV *w2, int *fill) {
  *fill = 0;
  if (!P->has_wc || P->F == 0 || P->Din == 0)
    return NULL;
  const int glu = P->kind == MOERT_FFN_GLU;
  const size_t es = P->es;
  if (!P->wc.is_constant(P->wc.user, g->p,
                         ffn_mat_bytes(g, P->Din, P->cg0 + (P->F - 1) * P->cgs + 1, es)) ||
      (glu && !P->wc.is_constant(P->wc.user, u->p,
                                 ffn_mat_bytes(u, P->Din, P->cu0 + (P->F - 1) * P->cus + 1, es))) ||
      !P->wc.is_constant(P->wc.user, w2->p, ffn_mat_bytes(w2, P->F, P->Dout, es)))
    return NULL;
  FfnPackKey key;
  memset(&key, 0, sizeof key);
  key.version = 1;
  key.vl = (int32_t)vl;
  key.glu = glu;
  key.dtype = P->dtype;
  key.trans = P->trans;
  key.fb = tn->f_block;
  key.kc = tn->k_block;
  key.dn = MOERT_FFN_N_BLOCK;
  key.din = P->Din;
  key.dout = P->Dout;
  key.f = P->F;
  key.g = g->p;
  key.gld = g->ld;
  key.cg0 = P->cg0;
  key.cgs = P->cgs;
  if (glu) {
    key.u = u->p;
    key.uld = u->ld;
    key.cu0 = P->cu0;
    key.cus = P->cus;
  }
  key.w2 = w2->p;
  key.w2ld = w2->ld;
  return (float *)P->wc.acquire(P->wc.user, &key, sizeof key,
                                ffn_packed_bytes(P, tn, vl), fill);
}

/*===----------------------------------------------------------------------===*
 * Kernel instances
 *===----------------------------------------------------------------------===*/

#define NAME(x) x##_scalar
#define VP s_
#define VF s_vf
#define VL 1
#define MR 4
#define ISA_FN
#define ISA_AI static inline __attribute__((always_inline))
#include "expert_ffn_kernels.h" /* undefines the parameters */

#if MOERT_FFN_X86
#define NAME(x) x##_avx2
#define VP y_
#define VF y_vf
#define VL 8
#define MR 6
#define ISA_FN __attribute__((target(MOERT_Y_TARGET)))
#define ISA_AI MOERT_YI
#include "expert_ffn_kernels.h" /* undefines the parameters */

#define NAME(x) x##_avx512
#define VP z_
#define VF z_vf
#define VL 16
#define MR 8
#define ISA_FN __attribute__((target(MOERT_Z_TARGET)))
#define ISA_AI MOERT_ZI
#include "expert_ffn_kernels.h" /* undefines the parameters */
#endif

/*===----------------------------------------------------------------------===*
 * Thread-local state: the parallel hook and the test knobs
 *===----------------------------------------------------------------------===*/

static _Thread_local moert_parallel_hook tl_hook;
static _Thread_local int tl_hook_set;
static _Thread_local moert_expert_ffn_tuning tl_tuning;
static _Thread_local int tl_tuning_set;
static _Thread_local moert_weight_cache tl_cache;
static _Thread_local int tl_cache_set;

void moert_cpu_set_weight_cache(const moert_weight_cache *cache) {
  if (cache && cache->is_constant && cache->acquire && cache->publish) {
    tl_cache = *cache;
    tl_cache_set = 1;
  } else {
    tl_cache_set = 0;
  }
}

void moert_cpu_set_parallel_hook(const moert_parallel_hook *hook) {
  if (hook) {
    tl_hook = *hook;
    tl_hook_set = 1;
  } else {
    tl_hook_set = 0;
  }
}

const moert_parallel_hook *moert_cpu_parallel_hook(void) {
  return tl_hook_set && tl_hook.parallel_for && tl_hook.num_threads > 1
             ? &tl_hook
             : NULL;
}

void moert_expert_ffn_set_tuning(const moert_expert_ffn_tuning *t) {
  if (t) {
    tl_tuning = *t;
    tl_tuning_set = 1;
  } else {
    tl_tuning_set = 0;
  }
}

static int moert_ffn_cpu_isa(void) {
#if MOERT_FFN_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return MOERT_FFN_ISA_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c"))
    return MOERT_FFN_ISA_AVX2;
#endif
  return MOERT_FFN_ISA_SCALAR;
}

/* Whether the CPU is Intel's: only tuning depends on it, never results. */
static int moert_ffn_cpu_intel(void) {
#if MOERT_FFN_X86
  __builtin_cpu_init();
  return __builtin_cpu_is("intel");
#else
  return 0;
#endif
}

int moert_expert_ffn_isa(void) {
  int isa = moert_ffn_cpu_isa();
  if (tl_tuning_set && tl_tuning.isa >= 0 && tl_tuning.isa < isa)
    isa = tl_tuning.isa;
  return isa;
}

static const MoertFfnOps *moert_ffn_ops(void) {
#if MOERT_FFN_X86
  switch (moert_expert_ffn_isa()) {
  case MOERT_FFN_ISA_AVX512:
    return &ops_avx512;
  case MOERT_FFN_ISA_AVX2:
    return &ops_avx2;
  default:
    break;
  }
#endif
  return &ops_scalar;
}

static MoertFfnTune moert_ffn_tune(void) {
  const int intel = moert_ffn_cpu_intel();
  MoertFfnTune t = {MOERT_FFN_ROW_BLOCK, MOERT_FFN_F_BLOCK,
                    intel ? MOERT_FFN_K_BLOCK_INTEL : MOERT_FFN_K_BLOCK,
                    MOERT_FFN_DECODE_ROWS, MOERT_FFN_DEC_STREAM_BYTES,
                    MOERT_FFN_PATH_AUTO,
                    tl_cache_set ? MOERT_FFN_PACKED_ROWS : MOERT_FFN_PACK_ROWS,
                    intel ? MOERT_FFN_DEC_STREAM_BYTES_16_INTEL : MOERT_FFN_DEC_STREAM_BYTES_16,
                    intel ? MOERT_FFN_DEC_PANEL_PF_ROWS_INTEL : MOERT_FFN_DEC_PANEL_PF_ROWS};
  if (tl_tuning_set) {
    const moert_expert_ffn_tuning *u = &tl_tuning;
    if (u->row_block > 0)
      t.row_block = u->row_block < (1 << 20) ? u->row_block : (1 << 20);
    if (u->f_block > 0)
      t.f_block = u->f_block < (1 << 16) ? u->f_block : (1 << 16);
    if (u->k_block > 0)
      t.k_block = u->k_block < (1 << 16) ? u->k_block : (1 << 16);
    if (u->decode_rows > 0)
      t.decode_rows = u->decode_rows;
    if (u->decode_stream_bytes != 0)
      t.stream_bytes = u->decode_stream_bytes > 0 ? u->decode_stream_bytes : 0;
    if (u->path == MOERT_FFN_PATH_DECODE || u->path == MOERT_FFN_PATH_GEMM)
      t.path = u->path;
  }
  /* FB must be a multiple of every instance's panel width 2VL (<= 32). */
  t.f_block = (t.f_block + 31) / 32 * 32;
  if (t.decode_rows > MOERT_DEC_MAX_ROWS + 1)
    t.decode_rows = MOERT_DEC_MAX_ROWS + 1;
  return t;
}

/*===----------------------------------------------------------------------===*
 * Descriptor checks
 *===----------------------------------------------------------------------===*/

static int ffn_ok1(const moert_memref_1d *m) {
  return m && m->sizes[0] >= 0 && (m->sizes[0] == 0 || m->aligned);
}

/* Non-negative sizes, data when non-empty, innermost dimension contiguous
 * (the ABI's rule; checked because the kernels read rows as vectors). */
static int ffn_ok2(const moert_memref_2d *m) {
  if (!m || m->sizes[0] < 0 || m->sizes[1] < 0)
    return 0;
  if (m->sizes[0] == 0 || m->sizes[1] == 0)
    return 1;
  return m->aligned && (m->sizes[1] == 1 || m->strides[1] == 1);
}

static int ffn_ok3(const moert_memref_3d *m) {
  if (!m || m->sizes[0] < 0 || m->sizes[1] < 0 || m->sizes[2] < 0)
    return 0;
  if (m->sizes[0] == 0 || m->sizes[1] == 0 || m->sizes[2] == 0)
    return 1;
  return m->aligned && (m->sizes[2] == 1 || m->strides[2] == 1);
}

static int ffn_is3(const moert_memref_3d *m, int64_t a, int64_t b, int64_t c) {
  return m->sizes[0] == a && m->sizes[1] == b && m->sizes[2] == c;
}

/* Element 0 of a descriptor (NULL when it has no storage: the kernels then
 * never address it). */
static const char *ffn_base(void *aligned, int64_t offset, size_t es) {
  return aligned ? (const char *)aligned + offset * (int64_t)es : NULL;
}

static const char *ffn_base3(const moert_memref_3d *m, size_t es) {
  return ffn_base(m->aligned, m->offset, es);
}

static void ffn_stack(FfnStack *st, const moert_memref_3d *w1,
                      const moert_memref_3d *w3, const moert_memref_3d *w2,
                      size_t es) {
  st->w1 = ffn_base3(w1, es);
  st->w1se = w1->strides[0];
  st->w1ld = w1->strides[1];
  st->w2 = ffn_base3(w2, es);
  st->w2se = w2->strides[0];
  st->w2ld = w2->strides[1];
  if (w3) {
    st->w3 = ffn_base3(w3, es);
    st->w3se = w3->strides[0];
    st->w3ld = w3->strides[1];
  }
}

static int ffn_setup(Ffn *P, moert_memref_2d *x, moert_memref_1d *row_token,
                     moert_memref_1d *counts, moert_memref_3d *w1,
                     moert_memref_3d *w3, moert_memref_3d *w2,
                     moert_memref_2d *b1, moert_memref_2d *b2,
                     moert_memref_3d *sw1, moert_memref_3d *sw3,
                     moert_memref_3d *sw2, moert_memref_2d *out,
                     int64_t segment_stride, int64_t kind,
                     int64_t activation, int64_t gate_up, int64_t layout,
                     double alpha, double up_shift, double limit,
                     int64_t weight_dtype) {
  memset(P, 0, sizeof *P);
  if (kind < 0 || kind > 1 || activation < 0 || activation > 4 || gate_up < 0 ||
      gate_up > 2 || layout < 0 || layout > 1 || weight_dtype < 0 ||
      weight_dtype > 2)
    return 0;
  if (!ffn_ok2(x) || !ffn_ok1(row_token) || !ffn_ok1(counts) || !ffn_ok3(w1) ||
      !ffn_ok3(w2) || !ffn_ok2(b1) || !ffn_ok2(b2) || !ffn_ok2(out) ||
      !ffn_ok3(sw1))
    return 0;
  const int glu = kind == MOERT_FFN_GLU;
  const int fused = glu && gate_up != MOERT_GU_SEPARATE;
  const int trans = layout == 1;
  P->T = x->sizes[0];
  P->Din = x->sizes[1];
  P->E = counts->sizes[0];
  P->R = row_token->sizes[0];
  P->F = trans ? w2->sizes[2] : w2->sizes[1];
  P->Dout = trans ? w2->sizes[1] : w2->sizes[2];
  P->F1 = fused ? 2 * P->F : P->F;
  if (P->F > INT64_MAX / 4)
    return 0;
  const int64_t S = sw1->sizes[0];
  const int64_t E = P->E - S; /* routed experts */
  P->E0 = E;
  if (E < 0)
    return 0;
  if (!ffn_is3(w1, E, trans ? P->F1 : P->Din, trans ? P->Din : P->F1) ||
      w2->sizes[0] != E)
    return 0;
  if (glu && gate_up == MOERT_GU_SEPARATE) {
    if (!ffn_ok3(w3) || !ffn_is3(w3, E, w1->sizes[1], w1->sizes[2]))
      return 0;
  }
  if (S > 0) {
    if (!ffn_ok3(sw2) || !ffn_is3(sw1, S, w1->sizes[1], w1->sizes[2]) ||
        !ffn_is3(sw2, S, w2->sizes[1], w2->sizes[2]))
      return 0;
    if (glu && gate_up == MOERT_GU_SEPARATE &&
        (!ffn_ok3(sw3) || !ffn_is3(sw3, S, w1->sizes[1], w1->sizes[2])))
      return 0;
  }
  if (out->sizes[0] != P->R || out->sizes[1] != P->Dout)
    return 0;
  P->has_b1 = b1->sizes[0] != 0;
  if (P->has_b1 && (b1->sizes[0] != E || b1->sizes[1] != P->F1))
    return 0;
  P->has_b2 = b2->sizes[0] != 0;
  if (P->has_b2 && (b2->sizes[0] != E || b2->sizes[1] != P->Dout))
    return 0;
  if (segment_stride >= 0 && S > 0)
    return 0; /* shared experts: ragged layout only */
  if (segment_stride >= 0 &&
      (E == 0 ? P->R != 0 : (segment_stride > INT64_MAX / E ||
                             segment_stride * E != P->R)))
    return 0;

  P->kind = (int)kind;
  P->act = (int)activation;
  P->dtype = (int)weight_dtype;
  P->es = moert_elem_size(weight_dtype);
  P->trans = trans;
  P->alpha = (float)alpha;
  P->up_shift = (float)up_shift;
  P->has_limit = limit > 0.0;
  P->limit = P->has_limit ? (float)limit : 0.0f;
  const size_t es = P->es;
  const int sep = glu && gate_up == MOERT_GU_SEPARATE;
  ffn_stack(&P->routed, w1, sep ? w3 : NULL, w2, es);
  if (S > 0)
    ffn_stack(&P->shared, sw1, sep ? sw3 : NULL, sw2, es);
  P->cg0 = 0;
  P->cgs = 1;
  P->cu0 = 0;
  P->cus = 1;
  if (glu) {
    switch (gate_up) {
    case MOERT_GU_SEPARATE:
      P->up_w3 = 1;
      break;
    case MOERT_GU_CONCAT:
      P->cu0 = P->F;
      break;
    default:
      P->cgs = P->cus = 2;
      P->cu0 = 1;
      break;
    }
  }
  if (P->has_b1) {
    P->b1 = ffn_base(b1->aligned, b1->offset, es);
    P->b1se = b1->strides[0];
  }
  if (P->has_b2) {
    P->b2 = ffn_base(b2->aligned, b2->offset, es);
    P->b2se = b2->strides[0];
  }
  return 1;
}

/*===----------------------------------------------------------------------===*
 * Tasks
 *===----------------------------------------------------------------------===*/

/* TASK_DEC1K / TASK_DEC2K: part c0 of c1 of a lone decode row's phase 1 /
 * phase 2, split by K (see ffn_compute). */
enum { TASK_GEMM = 0, TASK_DEC1 = 1, TASK_DEC2 = 2, TASK_DEC1K = 3, TASK_DEC2K = 4 };

typedef struct {
  int type;
  int64_t e, i0, n; /* expert, first row (index into the row lists), rows */
  int64_t c0, c1;   /* F chunk (DEC1) or output column chunk (DEC2) */
} FfnTask;

typedef struct {
  const Ffn *P;
  const MoertFfnTune *tn;
  const MoertFfnOps *ops;
  const float **xr; /* per computed row: its x row */
  float **orow;     /* per computed row: its output row */
  float **hrow;     /* per decode row: its hidden row */
  const FfnTask *tasks;
  /* Work item g < ngroups runs tasks [gofs[g], gofs[g + 1]) in order; item
   * ngroups + i runs task gofs[ngroups] + i. */
  const int64_t *gofs;
  int64_t ngroups;
  /* One job for both decode phases (NULL: phase 2 is a job of its own).
   * claimed[i]: task gofs[ngroups] + i has been taken; pend[e]: phase 1
   * tasks of expert e not finished yet; [p1[e], p1[E + e]): the indices
   * (into tasks) of expert e's phase 1 tasks. */
  int *claimed;
  int64_t *pend;
  const int64_t *p1;
  /* Row stealing (NULL: none): nsteal slots, one per thread, handed out
   * by *nslot; task ids from *next_id; call: this call's id; nblocks: the
   * F blocks of every expert. */
  FfnSteal *steal;
  int64_t nsteal, call, nblocks;
  int64_t *nslot, *next_id;
  /* A lone decode row split by K (kpart[0] NULL: none): kpart[phase - 1],
   * that phase's parts, kstride[phase - 1] floats apart ([parts][2 F] for
   * phase 1, [parts][Dout] for phase 2, each rounded up to whole pages);
   * kbias, bias scratch [2 F]; kleft[phase - 1], the parts of that phase
   * not finished yet. */
  float *kpart[2], *kbias;
  int64_t kstride[2];
  int64_t *kleft;
} FfnCtx;

/* Row stealing at the end of a threaded GEMM call. The plan gives every
 * thread a fixed group of row blocks, but the threads' speed differs by a
 * few percent from call to call, so the first thread done used to wait
 * 1-3 ms (Mixtral T=512, 2 threads). Now it takes rows from a busy thread:
 * it asks for the last half of the rows of the work that thread runs; the
 * owner, at the start of its next F block, keeps the first half, and the
 * idle thread runs the rest from that block on. A row's output sums the F
 * blocks in order whichever thread runs which blocks, so results do not
 * change; the panels of the remaining blocks are read by both threads. The
 * idle thread waits for the owner's next block (about 1 ms at Mixtral
 * shapes), which bounds what it saves. In one session, the variant on
 * every other call, Mixtral T=512 on 2 threads: skewed routing 0.4-0.7%
 * faster (medians of 20 calls, 3 processes), balanced -0.8% to +0.4%. */
#define MOERT_FFN_STEAL_MIN_ROWS 8   /* fewest rows either side keeps */
#define MOERT_FFN_STEAL_MIN_BLOCKS 2 /* fewest F blocks left to take */

static int64_t ffn_steals; /* accepted, since the process started (tests) */

int64_t moert_expert_ffn_steals(void) {
  return __atomic_load_n(&ffn_steals, __ATOMIC_RELAXED);
}

static _Thread_local int64_t tl_steal_call;
static _Thread_local FfnSteal *tl_steal_slot;

/* The calling thread's slot in this call, or NULL. */
static FfnSteal *ffn_steal_slot(const FfnCtx *c) {
  if (!c->steal)
    return NULL;
  if (tl_steal_call != c->call) {
    const int64_t i = __atomic_fetch_add(c->nslot, 1, __ATOMIC_RELAXED);
    tl_steal_call = c->call;
    tl_steal_slot = i < c->nsteal ? &c->steal[i] : NULL;
  }
  return tl_steal_slot;
}

/* Rows [i0, i0 + n) of expert e from F block fb on, published in slot me
 * (if any) so that an idle thread can take part of them. */
static void ffn_run_gemm(const FfnCtx *c, FfnSteal *me, int64_t e, int64_t i0,
                         int64_t n, int64_t fb) {
  if (me) {
    __atomic_store_n(&me->e, e, __ATOMIC_RELAXED);
    __atomic_store_n(&me->i0, i0, __ATOMIC_RELAXED);
    __atomic_store_n(&me->rows, n, __ATOMIC_RELAXED);
    __atomic_store_n(&me->block, fb, __ATOMIC_RELAXED);
    __atomic_store_n(&me->task, __atomic_fetch_add(c->next_id, 1, __ATOMIC_RELAXED),
                     __ATOMIC_RELEASE);
  }
  c->ops->gemm_rows(c->P, c->tn, e, c->xr + i0, c->orow + i0, n, fb, me);
  if (me) {
    __atomic_store_n(&me->task, 0, __ATOMIC_RELEASE);
    int64_t r = __atomic_load_n(&me->req, __ATOMIC_ACQUIRE);
    if (r > 0) /* asked too late: refuse */
      __atomic_compare_exchange_n(&me->req, &r, -2, 0, __ATOMIC_ACQ_REL,
                                  __ATOMIC_ACQUIRE);
  }
}

/* Takes rows from busy threads until none is busy (see above). */
static void ffn_steal_loop(const FfnCtx *c, FfnSteal *me) {
  for (;;) {
    FfnSteal *v = NULL;
    int64_t any = 0, best = 0, id = 0, rows = 0;
    for (int64_t i = 0; i < c->nsteal; ++i) {
      FfnSteal *s = &c->steal[i];
      if (s == me || !__atomic_load_n(&s->busy, __ATOMIC_ACQUIRE))
        continue;
      any = 1;
      const int64_t t = __atomic_load_n(&s->task, __ATOMIC_ACQUIRE);
      const int64_t n = __atomic_load_n(&s->rows, __ATOMIC_RELAXED);
      const int64_t left = c->nblocks - __atomic_load_n(&s->block, __ATOMIC_RELAXED) - 1;
      if (t == 0 || n < 2 * MOERT_FFN_STEAL_MIN_ROWS || left < MOERT_FFN_STEAL_MIN_BLOCKS)
        continue;
      if (n * left > best) {
        best = n * left;
        v = s;
        id = t;
        rows = n;
      }
    }
    if (!any)
      return;
    /* The owner keeps the first half, in whole register tiles of 8. */
    const int64_t keep = (rows / 2 + 7) / 8 * 8;
    int64_t want = 0;
    if (!v || keep >= rows ||
        !__atomic_compare_exchange_n(&v->req, &want, id << 32 | keep, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      moert_cpu_relax();
      continue;
    }
    int64_t r;
    for (;;) {
      r = __atomic_load_n(&v->req, __ATOMIC_ACQUIRE);
      if (r < 0)
        break;
      if (__atomic_load_n(&v->task, __ATOMIC_ACQUIRE) != id) {
        /* The owner moved on without seeing it: withdraw (unless it
         * answered meanwhile). */
        int64_t mine = id << 32 | keep;
        if (__atomic_compare_exchange_n(&v->req, &mine, 0, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
          break;
        continue;
      }
      moert_cpu_relax();
    }
    if (r != -1) {
      if (r == -2)
        __atomic_store_n(&v->req, 0, __ATOMIC_RELEASE);
      continue;
    }
    const int64_t fb = __atomic_load_n(&v->acc_block, __ATOMIC_RELAXED);
    const int64_t e = __atomic_load_n(&v->acc_e, __ATOMIC_RELAXED);
    const int64_t i0 = __atomic_load_n(&v->acc_i0, __ATOMIC_RELAXED);
    const int64_t end = __atomic_load_n(&v->acc_end, __ATOMIC_RELAXED);
    __atomic_store_n(&v->req, 0, __ATOMIC_RELEASE);
    __atomic_fetch_add(&ffn_steals, 1, __ATOMIC_RELAXED);
    if (me)
      __atomic_store_n(&me->busy, 1, __ATOMIC_RELEASE);
    ffn_run_gemm(c, me, e, i0 + keep, end - keep, fb);
    if (me)
      __atomic_store_n(&me->busy, 0, __ATOMIC_RELEASE);
  }
}

static void ffn_run_task(const FfnCtx *c, const FfnTask *k) {
  switch (k->type) {
  case TASK_GEMM:
    ffn_run_gemm(c, ffn_steal_slot(c), k->e, k->i0, k->n, 0);
    break;
  case TASK_DEC1:
    c->ops->dec1(c->P, c->tn, k->e, c->xr + k->i0, k->n, k->c0, k->c1,
                 c->hrow + k->i0);
    break;
  case TASK_DEC2:
    c->ops->dec2(c->P, c->tn, k->e, (const float *const *)c->hrow + k->i0, k->n,
                 c->orow + k->i0, k->c0, k->c1);
    break;
  default: { /* TASK_DEC1K, TASK_DEC2K */
    const int ph = k->type == TASK_DEC1K ? 1 : 2;
    const int64_t stride = c->kstride[ph - 1];
    float *parts = c->kpart[ph - 1];
    c->ops->dec_kpart(c->P, k->e, ph, ph == 1 ? c->xr[k->i0] : c->hrow[k->i0], k->c0, k->c1,
                      parts + k->c0 * stride);
    /* The last part to finish adds them all (acquiring the others' sums). */
    if (__atomic_sub_fetch(&c->kleft[ph - 1], 1, __ATOMIC_ACQ_REL) == 0)
      c->ops->dec_kfinish(c->P, k->e, ph, parts, k->c1, stride,
                          ph == 1 ? c->hrow[k->i0] : c->orow[k->i0], c->kbias);
    break;
  }
  }
}

/* Takes decode task t (an index into c->tasks) of a merged job and runs
 * it; returns at once if another item took it already. A phase 2 task
 * needs its expert's phase 1 tasks done: it runs those not yet taken
 * itself (whatever order the hook hands out the items in) and waits for
 * the others, which their takers are running. */
static void ffn_take_task(const FfnCtx *c, int64_t t) {
  const int64_t base = c->gofs[c->ngroups];
  if (__atomic_exchange_n(&c->claimed[t - base], 1, __ATOMIC_ACQ_REL))
    return;
  const FfnTask *k = &c->tasks[t];
  const int64_t E = c->P->E;
  if (k->type == TASK_DEC2 &&
      __atomic_load_n(&c->pend[k->e], __ATOMIC_ACQUIRE) > 0) {
    for (int64_t j = c->p1[k->e]; j < c->p1[E + k->e]; ++j)
      ffn_take_task(c, j);
    while (__atomic_load_n(&c->pend[k->e], __ATOMIC_ACQUIRE) > 0)
      moert_cpu_relax();
  }
  ffn_run_task(c, k);
  if (k->type == TASK_DEC1)
    __atomic_fetch_sub(&c->pend[k->e], 1, __ATOMIC_RELEASE);
}

static void ffn_run_tasks(void *arg, int64_t begin, int64_t end) {
  const FfnCtx *c = (const FfnCtx *)arg;
  for (int64_t w = begin; w < end; ++w) {
    if (w < c->ngroups) {
      FfnSteal *me = ffn_steal_slot(c);
      if (me)
        __atomic_store_n(&me->busy, 1, __ATOMIC_RELEASE);
      for (int64_t t = c->gofs[w]; t < c->gofs[w + 1]; ++t)
        ffn_run_task(c, &c->tasks[t]);
      if (me) {
        __atomic_store_n(&me->busy, 0, __ATOMIC_RELEASE);
        ffn_steal_loop(c, me);
      }
    } else {
      const int64_t base = c->gofs ? c->gofs[c->ngroups] : 0;
      if (c->claimed)
        ffn_take_task(c, base + w - c->ngroups);
      else
        ffn_run_task(c, &c->tasks[base + w - c->ngroups]);
    }
  }
}

static void ffn_parallel(const moert_parallel_hook *h, int64_t n,
                         FfnCtx *ctx) {
  if (n <= 0)
    return;
  if (h && n > 1)
    h->parallel_for(h->user, n, ffn_run_tasks, ctx);
  else
    ffn_run_tasks(ctx, 0, n);
}

/* Segment of expert e: rows [*s, *s + *n). */
static void ffn_segment(const Ffn *P, const moert_memref_1d *counts,
                        int64_t segment_stride, int64_t e, int64_t *cursor,
                        int64_t *s, int64_t *n) {
  int64_t c = MOERT_FFN_I32(counts, e);
  if (c < 0)
    c = 0;
  if (segment_stride < 0) {
    *s = *cursor;
    *n = c < P->R - *cursor ? c : P->R - *cursor;
    *cursor += *n;
  } else {
    *s = e * segment_stride;
    *n = c < segment_stride ? c : segment_stride;
  }
}

/* Columns per decode task: n split in `parts`, rounded up to a multiple of
 * 64, at least MOERT_FFN_DEC_MIN_CHUNK (and at least 1). */
static int64_t ffn_chunk(int64_t n, int64_t parts) {
  if (parts < 1)
    parts = 1;
  int64_t c = (n + parts - 1) / parts;
  c = (c + 63) / 64 * 64;
  if (c < MOERT_FFN_DEC_MIN_CHUNK)
    c = MOERT_FFN_DEC_MIN_CHUNK;
  return c;
}

/* Estimated cost of a decode group of n rows, in rows: the FMAs plus the
 * weight stream, which costs about MOERT_FFN_DEC_STREAM_COST rows. */
static int64_t ffn_decode_cost(int64_t n) {
  return n + MOERT_FFN_DEC_STREAM_COST;
}

/* Column chunks of a heavy decode expert of cost `cost`, handed out when
 * `left` is the cost of it and all experts after it (longest first):
 * chunks of at most left / (MOERT_FFN_DEC_GUIDE x nthr), so experts handed
 * out early stay whole (whole weight rows stream best) and the last ones
 * are cut finer, leaving the threads little to even out at the end.
 * Mixtral T=64, 2 threads: 4 chunks of every expert read the weight rows
 * as runs of 3.5 KiB (W1/W3) and 1 KiB (W2); a 9-row expert took 2.00 ms
 * for W1/W3 and 1.14 ms for W2, against 1.92 and 0.82 ms whole (profiled,
 * in one process). This plan against 4 chunks of every expert, medians of
 * 40 alternating calls: skewed routing 0.7-2.6% faster, balanced 0.9-1.7%
 * (MOERT_FFN_DEC_GUIDE 3: within 0.7% of the old plan). */
static int64_t ffn_decode_parts(int64_t cost, int64_t left, int64_t nthr) {
  const int64_t piece = left / (MOERT_FFN_DEC_GUIDE * nthr);
  int64_t parts = piece > 0 ? (cost + piece - 1) / piece : MOERT_FFN_DEC_MAX_PARTS;
  if (parts < 1)
    parts = 1;
  return parts < MOERT_FFN_DEC_MAX_PARTS ? parts : MOERT_FFN_DEC_MAX_PARTS;
}

/* Whether an expert with n rows takes the decode path (n only: never the
 * thread count, so that the result does not depend on it). */
static int ffn_decode(const MoertFfnTune *tn, int64_t n) {
  return tn->path == MOERT_FFN_PATH_DECODE ||
         (tn->path == MOERT_FFN_PATH_AUTO && n < tn->decode_rows);
}

/* Blocks of at most rb rows that n rows are cut into. */
static int64_t ffn_blocks(int64_t n, int64_t rb) {
  return n > 0 ? (n + rb - 1) / rb : 0;
}

/* Estimated cost of n rows of one expert on the GEMM path, in rows. */
static int64_t ffn_cost(const MoertFfnTune *tn, int64_t n) {
  return n + tn->pack_rows * ffn_blocks(n, tn->row_block);
}

/* The cost of an expert with n rows on the GEMM path, or 0 when it has
 * none there (no rows, or the decode path's). */
static int64_t ffn_gemm_cost(const MoertFfnTune *tn, int64_t n) {
  return n > 0 && !ffn_decode(tn, n) ? ffn_cost(tn, n) : 0;
}

/* Appends the GEMM tasks of rows [i0, i0 + n) of expert e: ffn_blocks(n, rb)
 * blocks of equal size (multiples of 8 rows, but for the last). */
static int64_t ffn_emit_blocks(FfnTask *tasks, int64_t nt, int64_t e,
                               int64_t i0, int64_t n, int64_t rb) {
  const int64_t nb = ffn_blocks(n, rb);
  const int64_t bs = ((n + nb - 1) / nb + 7) / 8 * 8;
  for (int64_t i = 0; i < n; i += bs) {
    FfnTask t = {TASK_GEMM, e, i0 + i, n - i < bs ? n - i : bs, 0, 0};
    tasks[nt++] = t;
  }
  return nt;
}

/* Appends the decode tasks of `type` (TASK_DEC1 over F, TASK_DEC2 over the
 * output columns: `total` columns in chunks of `chunk`) for rows
 * [i0, i0 + n) of expert e, in groups of at most MOERT_DEC_MAX_ROWS rows. */
static int64_t ffn_emit_decode(FfnTask *tasks, int64_t nt, int type, int64_t e,
                               int64_t i0, int64_t n, int64_t chunk,
                               int64_t total) {
  for (int64_t i = 0; i < n; i += MOERT_DEC_MAX_ROWS) {
    const int64_t rn = n - i < MOERT_DEC_MAX_ROWS ? n - i : MOERT_DEC_MAX_ROWS;
    for (int64_t c0 = 0; c0 < total; c0 += chunk) {
      FfnTask t = {type, e, i0 + i, rn, c0, total - c0 < chunk ? total : c0 + chunk};
      tasks[nt++] = t;
    }
  }
  return nt;
}

/* Two ways of dealing the GEMM-path experts (expert e: rows [est[e],
 * est[e + 1])) out to nthr threads as groups of tasks, one group per thread
 * (group g: tasks [gofs[g], gofs[g + 1])). Both use a cost model in rows: a
 * block of m rows costs m + tn->pack_rows, the second term being the
 * packing of the expert's weights that every block does (both terms scale
 * with D x F, so the ratio holds for every shape; with a weight cache the
 * panels are packed once and the term nearly vanishes, so pieces of an
 * expert cost only their rows). The planner keeps the
 * plan whose busiest thread has less to do:
 *
 *  - whole experts, largest first to the least loaded thread (LPT): no
 *    weights packed twice; balanced when no expert is much larger than
 *    another;
 *  - in sequence, each thread's share filled exactly, splitting the
 *    expert at the boundary (pieces of at least MOERT_FFN_MIN_SPLIT rows):
 *    at most nthr - 1 experts pack their weights once more, but a hot expert
 *    holding half of the rows is shared between threads. Dynamic scheduling
 *    of per-expert blocks cannot balance that case (9 blocks on 2 threads
 *    leave one thread ~10% more work than the other). The sequence
 *    (ffn_split_order) puts the nthr - 1 largest experts where the
 *    boundaries fall, so that the experts cut in two are the large ones:
 *    a piece reads all of its expert's weights for its rows, and two
 *    pieces of a 110-row expert (48 + 61 rows, as expert order gave for
 *    skewed Mixtral T=512) stream twice the weights per row of one
 *    127-row half of a 254-row expert.
 *
 * Tasks within a group run in order on one thread; groups are handed out
 * dynamically, so a thread that starts late only delays its own group. */

typedef struct {
  int64_t cost, e;
} FfnExpertCost;

static int ffn_by_cost_desc(const void *a, const void *b) {
  const FfnExpertCost *x = (const FfnExpertCost *)a, *y = (const FfnExpertCost *)b;
  if (x->cost != y->cost)
    return x->cost > y->cost ? -1 : 1;
  return x->e < y->e ? -1 : x->e > y->e; /* deterministic order */
}

/* The split plan's sequence of experts (order: E entries; pool: E entries
 * of scratch). The GEMM-path experts sorted largest first: the first
 * nthr - 1 are pivots, pivot g for boundary g; before each pivot, whole
 * experts (largest first, each that still fits) up to where the pivot's
 * middle meets its boundary; then the experts left, then those off the
 * GEMM path (which the plan skips). */
static void ffn_split_order(const MoertFfnTune *tn, const int64_t *est,
                            int64_t E, int64_t nthr, int64_t *order,
                            FfnExpertCost *pool) {
  int64_t total = 0, npool = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t c = ffn_gemm_cost(tn, est[e + 1] - est[e]);
    total += c;
    if (c > 0) {
      FfnExpertCost x = {c, e};
      pool[npool++] = x;
    }
  }
  qsort(pool, (size_t)npool, sizeof *pool, ffn_by_cost_desc);
  const int64_t np = nthr - 1 < npool ? nthr - 1 : npool;
  int64_t n = 0, cum = 0;
  for (int64_t g = 0; g < np; ++g) {
    const int64_t target = total * (g + 1) / nthr, pc = pool[g].cost;
    for (int64_t i = np; i < npool; ++i)
      if (pool[i].e >= 0 && cum + pool[i].cost + pc / 2 <= target) {
        order[n++] = pool[i].e;
        cum += pool[i].cost;
        pool[i].e = -1; /* placed */
      }
    order[n++] = pool[g].e;
    cum += pc;
  }
  for (int64_t i = np; i < npool; ++i)
    if (pool[i].e >= 0)
      order[n++] = pool[i].e;
  for (int64_t e = 0; e < E; ++e)
    if (ffn_gemm_cost(tn, est[e + 1] - est[e]) == 0)
      order[n++] = e;
}

/* The split plan over the experts in `order` (ffn_split_order; NULL:
 * expert order): writes the tasks and gofs, returns the number of groups
 * and the largest group's cost in *busiest. */
static int64_t ffn_plan_split(const MoertFfnTune *tn, const int64_t *est,
                              int64_t E, int64_t nthr, const int64_t *order,
                              FfnTask *tasks, int64_t *gofs, int64_t *busiest) {
  const int64_t rb = tn->row_block;
  int64_t left = 0; /* cost of the rows not yet dealt out */
  for (int64_t e = 0; e < E; ++e)
    left += ffn_gemm_cost(tn, est[e + 1] - est[e]);
  int64_t ng = 0, nt = 0, fill = 0;
  int64_t share = (left + nthr - 1) / nthr;
  *busiest = 0;
  gofs[0] = 0;
  for (int64_t s = 0; s < E; ++s) {
    const int64_t e = order ? order[s] : s;
    const int64_t n = est[e + 1] - est[e];
    if (n == 0 || ffn_decode(tn, n))
      continue;
    int64_t i = 0;
    while (i < n) {
      const int64_t r = n - i, cost = ffn_cost(tn, r);
      const int64_t room = share - fill;
      int64_t take = r;
      if (ng < nthr - 1 && cost > room) {
        /* The rows that fill the room, to a multiple of 8; an empty group
         * takes at least a minimal piece. */
        int64_t m = room - tn->pack_rows * ffn_blocks(room, rb);
        m = (m + 4) / 8 * 8;
        if (fill == 0 && m < MOERT_FFN_MIN_SPLIT)
          m = MOERT_FFN_MIN_SPLIT;
        if (r - m < MOERT_FFN_MIN_SPLIT)
          take = r;
        else if (m >= MOERT_FFN_MIN_SPLIT)
          take = m;
        else /* a piece too small to split off: overshoot or stop here */
          take = cost - room <= room ? r : 0;
      }
      if (take > 0) {
        nt = ffn_emit_blocks(tasks, nt, e, est[e] + i, take, rb);
        fill += ffn_cost(tn, take);
        left += ffn_cost(tn, r - take) - cost;
        i += take;
      }
      if (fill > *busiest)
        *busiest = fill;
      if (ng < nthr - 1 && (take < r || fill >= share)) {
        /* This group is full (and not empty: fill > 0): close it and size
         * the remaining groups' shares from what is left. */
        gofs[++ng] = nt;
        fill = 0;
        share = (left + (nthr - ng) - 1) / (nthr - ng);
      }
    }
  }
  if (nt > gofs[ng])
    gofs[++ng] = nt;
  return ng;
}

/* The whole-expert plan: group[e] = the thread of GEMM expert e (-1 for the
 * others), using order (E entries) and load (nthr entries) as scratch;
 * returns the largest group's cost. */
static int64_t ffn_plan_whole(const MoertFfnTune *tn, const int64_t *est,
                              int64_t E, int64_t nthr, int64_t *group,
                              FfnExpertCost *order, int64_t *load) {
  int64_t no = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t cost = ffn_gemm_cost(tn, est[e + 1] - est[e]);
    group[e] = -1;
    if (cost > 0) {
      FfnExpertCost c = {cost, e};
      order[no++] = c;
    }
  }
  qsort(order, (size_t)no, sizeof *order, ffn_by_cost_desc);
  for (int64_t g = 0; g < nthr; ++g)
    load[g] = 0;
  int64_t busiest = 0;
  for (int64_t i = 0; i < no; ++i) {
    int64_t g = 0;
    for (int64_t h = 1; h < nthr; ++h)
      if (load[h] < load[g])
        g = h;
    group[order[i].e] = g;
    load[g] += order[i].cost;
    if (load[g] > busiest)
      busiest = load[g];
  }
  return busiest;
}

/* Plans the GEMM tasks (see above); returns the number of groups. Without
 * scratch memory for the whole-expert plan, the split plan is used. */
static int64_t ffn_plan_gemm(const Ffn *P, const MoertFfnTune *tn,
                             const int64_t *est, int64_t nthr, FfnTask *tasks,
                             int64_t *gofs) {
  const int64_t E = P->E;
  int64_t split_busiest;
  int64_t *seq = nthr > 1 ? (int64_t *)moert_ffn_alloc(
                                P, (size_t)E * (sizeof(int64_t) + sizeof(FfnExpertCost)) + 1)
                          : NULL;
  if (seq)
    ffn_split_order(tn, est, E, nthr, seq, (FfnExpertCost *)(seq + E));
  const int64_t ng = ffn_plan_split(tn, est, E, nthr, seq, tasks, gofs, &split_busiest);
  free(seq);
  if (nthr == 1)
    return ng;
  int64_t *group = (int64_t *)moert_ffn_alloc(
      P, (size_t)(E + nthr) * sizeof(int64_t) + (size_t)E * sizeof(FfnExpertCost));
  if (!group)
    return ng;
  int64_t *load = group + E;
  FfnExpertCost *order = (FfnExpertCost *)(load + nthr);
  const int64_t whole_busiest = ffn_plan_whole(tn, est, E, nthr, group, order, load);
  if (whole_busiest > split_busiest) {
    free(group);
    return ng;
  }
  int64_t nt = 0, nw = 0;
  gofs[0] = 0;
  for (int64_t g = 0; g < nthr; ++g) {
    for (int64_t e = 0; e < E; ++e)
      if (group[e] == g)
        nt = ffn_emit_blocks(tasks, nt, e, est[e], est[e + 1] - est[e], tn->row_block);
    if (nt > gofs[nw])
      gofs[++nw] = nt;
  }
  free(group);
  return nw;
}

int64_t moert_expert_ffn_plan(const int64_t *counts, int64_t E, int64_t nthr,
                              int64_t *rows, int64_t *cost, int64_t *groups_of) {
  if (E < 0 || nthr < 1 || (E > 0 && !counts) || !rows || !cost)
    return -1;
  Ffn P;
  memset(&P, 0, sizeof P);
  P.E = P.E0 = E;
  P.no_heap = tl_tuning_set && tl_tuning.no_heap;
  const MoertFfnTune tn = moert_ffn_tune();
  int64_t *est = (int64_t *)moert_ffn_alloc(&P, (size_t)(E + 1) * sizeof(*est));
  int64_t *gofs = (int64_t *)moert_ffn_alloc(&P, (size_t)(nthr + 1) * sizeof(*gofs));
  int64_t ntask = nthr;
  if (est)
    est[0] = 0;
  for (int64_t e = 0; est && e < E; ++e) {
    const int64_t n = counts[e] > 0 ? counts[e] : 0;
    est[e + 1] = est[e] + n;
    ntask += ffn_blocks(n, tn.row_block);
  }
  FfnTask *tasks = (FfnTask *)moert_ffn_alloc(&P, (size_t)ntask * sizeof(*tasks));
  int64_t ng = -1;
  if (est && gofs && tasks) {
    ng = ffn_plan_gemm(&P, &tn, est, nthr, tasks, gofs);
    for (int64_t g = 0; g < nthr; ++g)
      rows[g] = cost[g] = 0;
    for (int64_t e = 0; groups_of && e < E; ++e)
      groups_of[e] = 0;
    for (int64_t g = 0; g < ng; ++g)
      for (int64_t t = gofs[g]; t < gofs[g + 1]; ++t) {
        rows[g] += tasks[t].n;
        cost[g] += ffn_cost(&tn, tasks[t].n);
        /* An expert's tasks in a group are adjacent. */
        if (groups_of && (t == gofs[g] || tasks[t - 1].e != tasks[t].e))
          ++groups_of[tasks[t].e];
      }
  }
  free(est);
  free(gofs);
  free(tasks);
  return ng;
}

static void ffn_zero_row(const moert_memref_2d *out, const Ffn *P, int64_t r) {
  memset((float *)out->aligned + out->offset + r * out->strides[0], 0,
         (size_t)P->Dout * sizeof(float));
}

/* Rows of out outside every segment: zero. */
static void ffn_zero_gaps(const Ffn *P, const moert_memref_1d *counts,
                          const moert_memref_2d *out, int64_t segment_stride) {
  int64_t cursor = 0;
  for (int64_t e = 0; e < P->E; ++e) {
    int64_t s, n;
    ffn_segment(P, counts, segment_stride, e, &cursor, &s, &n);
    if (segment_stride >= 0)
      for (int64_t r = s + n; r < s + segment_stride; ++r)
        ffn_zero_row(out, P, r);
  }
  if (segment_stride < 0)
    for (int64_t r = cursor; r < P->R; ++r)
      ffn_zero_row(out, P, r);
}

/* One row of expert e by the scratch-free path: o = FFN_e(x row xp); with
 * no hidden units, b2 (or 0) and xp is not read. */
static void ffn_row_alone(const Ffn *P, const MoertFfnOps *ops, int64_t e,
                          const float *xp, float *o) {
  if (P->F > 0) {
    ops->row_fallback(P, e, &xp, 1, &o);
    return;
  }
  memset(o, 0, (size_t)P->Dout * sizeof(float));
  if (ffn_has_b2(P, e))
    for (int64_t d = 0; d < P->Dout; ++d)
      o[d] = moert_load_elem(P->b2 + (e * P->b2se + d) * (int64_t)P->es, P->dtype);
}

/*===----------------------------------------------------------------------===*
 * Kept workspaces
 *===----------------------------------------------------------------------===*/

/* Buffers of a call that scale with its rows, kept per calling thread,
 * grown to the largest call's and freed when the thread exits: the fused
 * combine's rows (16 MiB for DeepSeek-fine T=512) and the decode path's
 * hidden activations (6 MiB there). A fresh 16 MiB rows buffer per call
 * came from new pages every call, and faulting them in made the fused call
 * 1-7% slower than the unfused one (two-library A/Bs, same kernels).
 * Buffers of 2 MiB or more are 2 MiB aligned and advised to be backed by
 * transparent huge pages, where the system allows it: each 4 KiB row of
 * D = 1024 is a page of its own otherwise, and the combine's and the
 * decode products' reads of gathered rows miss the TLB on every one
 * (DeepSeek-fine T=512, 2 threads, against 4 KiB pages, two-library A/Bs:
 * rows 0.981-1.003, then the hidden activations 0.989-1.007). Smaller
 * buffers start on 4 KiB pages: threads write rows of them side by side,
 * and rows sharing a page streamed slower (see the lone row's part sums,
 * the third workspace, in ffn_compute). Mixtral-small T=1, cold, 2
 * threads, against 64-byte alignment: 0.984-0.995 (8 runs of 100
 * alternating calls); DeepSeek-fine T=1 and bf16 Mixtral T=8 unchanged.
 * NULL when memory or the thread key cannot be had. */
enum { FFN_WS_ROWS, FFN_WS_HIDDEN, FFN_WS_KPARTS, FFN_WS_COUNT };

typedef struct {
  void *p[FFN_WS_COUNT];
  size_t cap[FFN_WS_COUNT];
} FfnWorkspace;

static pthread_key_t ffn_ws_key;
static pthread_once_t ffn_ws_once = PTHREAD_ONCE_INIT;
static int ffn_ws_key_ok;

static void ffn_ws_release(void *v) {
  FfnWorkspace *w = (FfnWorkspace *)v;
  for (int i = 0; i < FFN_WS_COUNT; ++i)
    free(w->p[i]);
  free(w);
}

static void ffn_ws_key_init(void) {
  ffn_ws_key_ok = pthread_key_create(&ffn_ws_key, ffn_ws_release) == 0;
}

static float *ffn_workspace(int slot, size_t bytes) {
  if (pthread_once(&ffn_ws_once, ffn_ws_key_init) != 0 || !ffn_ws_key_ok)
    return NULL;
  FfnWorkspace *w = (FfnWorkspace *)pthread_getspecific(ffn_ws_key);
  if (!w) {
    w = (FfnWorkspace *)calloc(1, sizeof *w);
    if (!w)
      return NULL;
    if (pthread_setspecific(ffn_ws_key, w) != 0) {
      free(w);
      return NULL;
    }
  }
  if (w->cap[slot] < bytes) {
    free(w->p[slot]);
    w->p[slot] = NULL;
    w->cap[slot] = 0;
    const size_t huge = (size_t)2 << 20;
    const size_t align = bytes >= huge ? huge : 4096;
    if (bytes > SIZE_MAX - align)
      return NULL;
    const size_t size = (bytes + align - 1) / align * align;
    void *p = NULL;
    if (posix_memalign(&p, align, size) != 0)
      return NULL;
#ifdef MADV_HUGEPAGE
    if (align == huge)
      (void)madvise(p, size, MADV_HUGEPAGE); /* advice only */
#endif
    w->p[slot] = p;
    w->cap[slot] = size;
  }
  return (float *)w->p[slot];
}

/* The rows of the expert FFN (P set up by ffn_setup) into out [R, Dout]. */
static void ffn_compute(const Ffn *Pp, const moert_memref_2d *x,
                        const moert_memref_1d *row_token,
                        const moert_memref_1d *counts,
                        const moert_memref_2d *out, int64_t segment_stride) {
  Ffn P = *Pp;
  if (P.R == 0 || P.Dout == 0)
    return;
  const MoertFfnTune tn = moert_ffn_tune();
  P.no_heap = tl_tuning_set && tl_tuning.no_heap;
  P.stream_bytes = tn.stream_bytes;
  P.has_wc = tl_cache_set;
  if (tl_cache_set)
    P.wc = tl_cache;
  const MoertFfnOps *ops = moert_ffn_ops();
  const moert_parallel_hook *hook =
      tl_hook_set && tl_hook.parallel_for && tl_hook.num_threads > 1 ? &tl_hook
                                                                     : NULL;
  const int stream_tuned = tl_tuning_set && tl_tuning.decode_stream_bytes != 0;
  if (P.es != 4 && !stream_tuned && P.stream_bytes > tn.stream_bytes_16)
    P.stream_bytes = tn.stream_bytes_16;
  const int64_t E = P.E, R = P.R;
  /* With D = 0 every x row is the empty vector: point them all at a dummy
   * (never read: every product over D is then empty). */
  static const float no_x = 0.0f;
  const float *xbase = P.Din > 0 ? (const float *)ffn_base(x->aligned, x->offset, 4) : &no_x;
  const int64_t xs0 = P.Din > 0 ? x->strides[0] : 0;
  float *obase = (float *)out->aligned + out->offset;
  const int64_t os0 = out->strides[0];

  ffn_zero_gaps(&P, counts, out, segment_stride);

  /* Row lists: the computed rows of every expert, in segment order. */
  const float **xr = (const float **)moert_ffn_alloc(&P, (size_t)R * sizeof(*xr));
  float **orow = (float **)moert_ffn_alloc(&P, (size_t)R * sizeof(*orow));
  int64_t *est = (int64_t *)moert_ffn_alloc(&P, (size_t)(E + 1) * sizeof(*est));
  if (!xr || !orow || !est) {
    free(xr);
    free(orow);
    free(est);
    /* No memory: the scratch-free row path, serially. */
    int64_t cursor = 0;
    for (int64_t e = 0; e < E; ++e) {
      int64_t s, n;
      ffn_segment(&P, counts, segment_stride, e, &cursor, &s, &n);
      for (int64_t r = s; r < s + n; ++r) {
        int64_t t = MOERT_FFN_I32(row_token, r);
        if (t < 0 || t >= P.T)
          ffn_zero_row(out, &P, r);
        else
          ffn_row_alone(&P, ops, e, xbase + t * xs0, obase + r * os0);
      }
    }
    return;
  }
  int64_t nrows = 0, cursor = 0;
  for (int64_t e = 0; e < E; ++e) {
    int64_t s, n;
    ffn_segment(&P, counts, segment_stride, e, &cursor, &s, &n);
    est[e] = nrows;
    for (int64_t r = s; r < s + n; ++r) {
      int64_t t = MOERT_FFN_I32(row_token, r);
      if (t < 0 || t >= P.T) {
        ffn_zero_row(out, &P, r);
        continue;
      }
      xr[nrows] = xbase + t * xs0;
      orow[nrows++] = obase + r * os0;
    }
  }
  est[E] = nrows;

  if (P.F == 0) { /* no hidden units: y = b2 */
    for (int64_t e = 0; e < E; ++e)
      for (int64_t i = est[e]; i < est[e + 1]; ++i)
        ffn_row_alone(&P, ops, e, xr[i], orow[i]);
    free(xr);
    free(orow);
    free(est);
    return;
  }

  /* Plan. */
  const int64_t nthr = hook ? hook->num_threads : 1;
  P.nthr = nthr;
  /* Decode rows and row groups (of <= MOERT_DEC_MAX_ROWS rows). Decode
   * chunks: as wide as possible (in_out rows are then streamed
   * sequentially). Chunking never changes a result bit. */
  int64_t dec_rows = 0, ndg = 0;
  for (int64_t e = 0; e < E; ++e) {
    int64_t n = est[e + 1] - est[e];
    if (n > 0 && ffn_decode(&tn, n)) {
      dec_rows += n;
      ndg += (n + MOERT_DEC_MAX_ROWS - 1) / MOERT_DEC_MAX_ROWS;
    }
  }
  /* Decode tasks of few rows cost about the same (weight streaming), so
   * balance needs a task count that is a multiple of the thread count.
   * Groups of many rows (heavy) cost in proportion to their rows as well,
   * and their experts are cut into column chunks so that the dynamic
   * schedule can even them out -- but only as finely as that needs: a
   * chunk reads each weight row as a run of its columns, and short runs
   * stream worse than whole rows (see ffn_decode_parts). */
  const int heavy = nthr > 1 && ndg > 0 && dec_rows >= MOERT_FFN_DEC_SPLIT_ROWS * ndg;
  int64_t split = heavy ? 2 * nthr : 1;
  if (ndg > 0)
    while (split < nthr && (ndg * split) % nthr != 0)
      ++split;
  /* The most chunks of one group: every part count is at most this. */
  const int64_t max_parts =
      heavy && split < MOERT_FFN_DEC_MAX_PARTS ? MOERT_FFN_DEC_MAX_PARTS : split;
  int64_t ntask = 0;
  for (int64_t e = 0; e < E; ++e) {
    int64_t n = est[e + 1] - est[e];
    if (n == 0)
      continue;
    const int dec = ffn_decode(&tn, n);
    if (dec)
      ntask += (n + MOERT_DEC_MAX_ROWS - 1) / MOERT_DEC_MAX_ROWS * 2 * max_parts;
    else
      ntask += ffn_blocks(n, tn.row_block);
  }
  /* Splitting experts between threads adds at most one block per thread;
   * a lone decode row split by K, 2 MOERT_FFN_DEC_KPARTS tasks. */
  ntask += nthr + 2 * MOERT_FFN_DEC_KPARTS;
  FfnTask *tasks = (FfnTask *)moert_ffn_alloc(&P, (size_t)ntask * sizeof(*tasks));
  float **hrow = (float **)moert_ffn_alloc(&P, (size_t)nrows * sizeof(*hrow));
  /* The decode rows' hidden activations: a kept workspace (above). */
  float *hbuf = dec_rows > 0 && !P.no_heap
                    ? ffn_workspace(FFN_WS_HIDDEN, (size_t)dec_rows * (size_t)P.F * sizeof(float))
                    : NULL;
  int64_t *gofs = (int64_t *)moert_ffn_alloc(&P, (size_t)(nthr + 1) * sizeof(*gofs));
  if (!tasks || !hrow || (dec_rows > 0 && !hbuf) || !gofs) {
    free(tasks);
    free(hrow);
    free(gofs);
    for (int64_t e = 0; e < E; ++e)
      ops->row_fallback(&P, e, xr + est[e], est[e + 1] - est[e], orow + est[e]);
    free(xr);
    free(orow);
    free(est);
    return;
  }
  /* One job: a group of GEMM blocks per thread, then the decode phase 1
   * tasks and the phase 2 tasks, handed out dynamically to whichever thread
   * is free; a phase 2 task waits for its expert's phase 1 tasks (merged,
   * see ffn_take_task). Without a hook or scratch for that, phase 2 is a
   * second job. One job instead of two: the threads do not wait for each
   * other between the phases; a thread done with the first phase's last
   * tasks starts the second phase's first while the other finishes. Only
   * with more than MOERT_FFN_DEC_MERGE_GROUPS row groups per thread: a
   * call of a few groups has nothing to overlap. */
  const int64_t ngroups = ffn_plan_gemm(&P, &tn, est, nthr, tasks, gofs);
  int64_t na = gofs[ngroups], hused = 0;
  int64_t *pend = NULL;
  if (hook && ndg > MOERT_FFN_DEC_MERGE_GROUPS * nthr)
    pend = (int64_t *)moert_ffn_alloc(&P, (size_t)(3 * E) * sizeof(int64_t) +
                                              (size_t)ntask * sizeof(int));
  int64_t *p1 = pend ? pend + E : NULL;
  int *claimed = pend ? (int *)(p1 + 2 * E) : NULL;
  for (int64_t e = 0; pend && e < E; ++e)
    pend[e] = p1[e] = p1[E + e] = 0;
  /* Decode experts, most rows first (ties in expert order): their tasks are
   * handed out in that order, so that a hot expert's tasks start first
   * rather than last (longest first). Mixtral T=64, 2 threads, the hot
   * expert (35 rows) last in expert order, against balanced routing with
   * the same library, medians of 15 interleaved rounds: +2.7% -> +0.7%.
   * Without scratch, expert order. */
  FfnExpertCost *dorder = (FfnExpertCost *)moert_ffn_alloc(&P, (size_t)E * sizeof(*dorder));
  int64_t nd = 0;
  for (int64_t e = 0; e < E; ++e) {
    int64_t n = est[e + 1] - est[e];
    if (n == 0 || !ffn_decode(&tn, n))
      continue;
    for (int64_t i = 0; i < n; ++i)
      hrow[est[e] + i] = hbuf + (hused + i) * P.F;
    hused += n;
    if (dorder) {
      FfnExpertCost c = {n, e};
      dorder[nd++] = c;
    }
  }
  if (dorder)
    qsort(dorder, (size_t)nd, sizeof *dorder, ffn_by_cost_desc);
  const int64_t norder = dorder ? nd : E;
  /* Heavy and ordered: each expert's chunks as ffn_decode_parts says;
   * otherwise `split` chunks each. A phase 2 product (W2) costs half of a
   * phase 1 product (W1 and W3); in one job the work left after a phase 1
   * expert includes all of phase 2, so phase 1 chunks stay whole and only
   * the job's end, phase 2's last experts, is cut finer. */
  const int guided = heavy && dorder;
  int64_t dec_cost = 0; /* of all decode experts, phase 2 */
  for (int64_t j = 0; guided && j < norder; ++j)
    dec_cost += ffn_decode_cost(est[dorder[j].e + 1] - est[dorder[j].e]);
  /* A lone decode row (one decode group, of one row: a k = 1 model at
   * T = 1) is split by K into MOERT_FFN_DEC_KPARTS contiguous ranges of
   * its stored weight rows, summed apart and then added in order, instead
   * of into column chunks: two threads then each stream one block of whole
   * rows, where column chunks have them read interleaved part-row runs
   * (each core's prefetcher runs into the other's half of every page).
   * Switch T=1, 2 threads, cold: W2's 768-float rows as 1.5 KiB runs read
   * at 21.8 GB/s, 71% of the DRAM test for the call; split, 0.84x the
   * time. in_out weights only: out_in rows run along K, so there column
   * chunks are the whole rows. The split does not depend on the thread
   * count, so every thread count gives the same bits. */
  float *kbuf = NULL;
  int64_t kleft[2] = {MOERT_FFN_DEC_KPARTS, MOERT_FFN_DEC_KPARTS};
  /* Every part's sums start a 4 KiB page of their own. On cache lines of
   * their own first: two threads write parts side by side, and a line
   * shared at the seam bounced between their cores on every weight row
   * (malloc's 16-byte alignment; forced 16 bytes off against on lines,
   * cold, 2 threads, 1.09-1.14x the time). Then on pages: with W2's parts
   * of 768 floats (Switch) 3 KiB apart, the part whose sums sat second
   * streamed 5-10% slower than the other in every process, whichever
   * weight rows it read and whichever thread ran it (swapping the two
   * buffers moved the slowdown with them). Whole pages apart, both parts
   * stream alike: cold, 2 threads, 0.94-0.98x the time (two sets of 6
   * runs of 200 alternating calls); 1 thread unchanged. Why is not pinned
   * down: only the buffers' addresses changed (at an offset of 2 KiB into
   * their pages they stream as fast as at 0). A kept workspace, which
   * starts on a page, instead of an allocation per call. */
  const int64_t ks1 = ffn_page_floats(2 * P.F), ks2 = ffn_page_floats(P.Dout);
  if (ndg == 1 && dec_rows == 1 && !P.trans && P.cgs == 1 && P.Din >= MOERT_FFN_DEC_KPARTS &&
      P.F >= MOERT_FFN_DEC_KPARTS && !P.no_heap)
    kbuf = ffn_workspace(FFN_WS_KPARTS,
                         (size_t)((MOERT_FFN_DEC_KPARTS + 1) * ks1 +
                                  MOERT_FFN_DEC_KPARTS * ks2) *
                             sizeof(float));
  int64_t phase_a = 0;
  for (int type = TASK_DEC1; type <= TASK_DEC2; ++type) {
    if (type == TASK_DEC2)
      phase_a = na;
    const int64_t total = type == TASK_DEC1 ? P.F : P.Dout;
    const int64_t weight = type == TASK_DEC1 ? 2 : 1;
    /* Of the experts not yet emitted (and of phase 2, in one job). */
    int64_t left = weight * dec_cost + (pend && type == TASK_DEC1 ? dec_cost : 0);
    for (int64_t j = 0; j < norder; ++j) {
      const int64_t e = dorder ? dorder[j].e : j;
      const int64_t n = est[e + 1] - est[e];
      if (n == 0 || !ffn_decode(&tn, n))
        continue;
      if (kbuf) {
        for (int64_t part = 0; part < MOERT_FFN_DEC_KPARTS; ++part) {
          FfnTask t = {type == TASK_DEC1 ? TASK_DEC1K : TASK_DEC2K, e, est[e], 1, part,
                       MOERT_FFN_DEC_KPARTS};
          tasks[na++] = t;
        }
        continue;
      }
      int64_t parts = split;
      if (guided) {
        const int64_t cost = weight * ffn_decode_cost(n);
        parts = ffn_decode_parts(cost, left, nthr);
        left -= cost;
      }
      const int64_t t0 = na;
      na = ffn_emit_decode(tasks, na, type, e, est[e], n, ffn_chunk(total, parts), total);
      if (pend && type == TASK_DEC1) {
        pend[e] = na - t0;
        p1[e] = t0;
        p1[E + e] = na;
      }
    }
  }
  free(dorder);
  FfnCtx ctx = {&P, &tn, ops, xr, orow, hrow, tasks, gofs, ngroups, NULL, NULL, NULL,
                NULL, 0, 0, 0, NULL, NULL, {NULL, NULL}, NULL, {ks1, ks2}, kleft};
  if (kbuf) { /* phase 1's parts, the bias scratch, phase 2's parts */
    ctx.kpart[0] = kbuf;
    ctx.kbias = kbuf + MOERT_FFN_DEC_KPARTS * ks1;
    ctx.kpart[1] = ctx.kbias + ks1;
  }
  /* Row stealing: a threaded call of GEMM groups only (the decode tasks of
   * a mixed call are handed out dynamically already). */
  FfnSteal *steal = NULL;
  int64_t steal_counters[2] = {0, 1};
  if (hook && ngroups > 1 && na == gofs[ngroups]) {
    steal = (FfnSteal *)moert_ffn_alloc(&P, (size_t)nthr * sizeof(FfnSteal));
    if (steal) {
      static int64_t calls;
      memset(steal, 0, (size_t)nthr * sizeof(FfnSteal));
      ctx.steal = steal;
      ctx.nsteal = nthr;
      ctx.call = __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
      ctx.nblocks = (P.F + tn.f_block - 1) / tn.f_block;
      ctx.nslot = &steal_counters[0];
      ctx.next_id = &steal_counters[1];
    }
  }
  if (pend) {
    memset(claimed, 0, (size_t)(na - gofs[ngroups]) * sizeof(int));
    ctx.claimed = claimed;
    ctx.pend = pend;
    ctx.p1 = p1;
    ffn_parallel(hook, ngroups + (na - gofs[ngroups]), &ctx);
  } else {
    ffn_parallel(hook, ngroups + (phase_a - gofs[ngroups]), &ctx);
    ctx.tasks = tasks + phase_a;
    ctx.gofs = NULL;
    ctx.ngroups = 0;
    ffn_parallel(hook, na - phase_a, &ctx);
  }
  free(pend);
  free(steal);

  free(gofs);
  free(tasks);
  free(hrow);
  free(xr);
  free(orow);
  free(est);
}

/*===----------------------------------------------------------------------===*
 * The combine fused in (moe.expert_ffn with combine operands)
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_FFN_ROWWISE_MAX_D
/* Widest output row the scratch-free combined path handles (on the stack). */
#define MOERT_FFN_ROWWISE_MAX_D 16384
#endif

/* Without scratch memory: token by token, each slot's row computed by the
 * scratch-free row path and added in slot order (not bit-identical to the
 * fast path; no importance statistics). */
static void ffn_combined_rowwise(const Ffn *P, const moert_memref_2d *x,
                                 const moert_memref_1d *row_token,
                                 const moert_memref_1d *counts,
                                 int64_t segment_stride,
                                 const moert_memref_2d *token_slot,
                                 const moert_memref_2d *weights,
                                 const moert_memref_2d *out) {
  float y[MOERT_FFN_ROWWISE_MAX_D];
  const MoertFfnOps *ops = moert_ffn_ops();
  const int64_t K = token_slot->sizes[1];
  for (int64_t t = 0; t < P->T; ++t) {
    float *o = (float *)out->aligned + out->offset + t * out->strides[0];
    memset(o, 0, (size_t)P->Dout * sizeof(float));
    for (int64_t j = 0; j < K; ++j) {
      const int64_t r = MOERT_I32_2D(token_slot, t, j);
      if (r < 0 || r >= P->R)
        continue;
      int64_t owner = -1, cursor = 0;
      for (int64_t e = 0; e < P->E && owner < 0; ++e) {
        int64_t s0, n;
        ffn_segment(P, counts, segment_stride, e, &cursor, &s0, &n);
        if (r >= s0 && r < s0 + n)
          owner = e;
      }
      const int64_t tok = MOERT_FFN_I32(row_token, r);
      if (owner < 0 || tok < 0 || tok >= P->T)
        continue; /* a zero row */
      /* With D = 0 the x row is the empty vector (as in ffn_compute). */
      static const float no_x = 0.0f;
      ffn_row_alone(P, ops, owner,
                    P->Din > 0 ? (const float *)ffn_base(x->aligned, x->offset, 4) +
                                     tok * x->strides[0]
                               : &no_x,
                    y);
      const float w = MOERT_F32_2D(weights, t, j);
      for (int64_t d = 0; d < P->Dout; ++d)
        o[d] += w * y[d];
    }
  }
}

void _mlir_ciface_moert_cpu_expert_ffn(
    moert_memref_2d *x, moert_memref_1d *row_token, moert_memref_1d *counts,
    moert_memref_3d *w1, moert_memref_3d *w3, moert_memref_3d *w2,
    moert_memref_2d *b1, moert_memref_2d *b2, moert_memref_3d *sw1,
    moert_memref_3d *sw3, moert_memref_3d *sw2, moert_memref_2d *token_slot,
    moert_memref_2d *combine_weights, moert_memref_2d *experts,
    moert_memref_2d *out, int64_t segment_stride, int64_t kind,
    int64_t activation, int64_t gate_up, int64_t layout, double alpha,
    double up_shift, double limit, int64_t weight_dtype, int64_t combine,
    int64_t shared_experts) {
  Ffn P;
  if (!combine) {
    if (ffn_setup(&P, x, row_token, counts, w1, w3, w2, b1, b2, sw1, sw3, sw2,
                  out, segment_stride, kind, activation, gate_up, layout,
                  alpha, up_shift, limit, weight_dtype))
      ffn_compute(&P, x, row_token, counts, out, segment_stride);
    return;
  }
  /* Combined: the rows go to a call-private [R, Dout] buffer (set up first
   * without memory, which checks every operand), then each token's rows
   * are summed gate-weighted in slot order into out [T, Dout]. */
  if (!ffn_ok2(x) || !ffn_ok1(row_token) || !ffn_ok2(token_slot) ||
      !ffn_ok2(combine_weights) || !ffn_ok2(out) || !ffn_ok3(w2) ||
      (layout != 0 && layout != 1))
    return;
  /* Until the buffer exists, the descriptor points at a dummy (setup only
   * checks that a non-empty descriptor has data). */
  static float no_rows;
  moert_memref_2d rows;
  memset(&rows, 0, sizeof rows);
  rows.allocated = rows.aligned = &no_rows;
  rows.sizes[0] = row_token->sizes[0];
  rows.sizes[1] = layout == 1 ? w2->sizes[1] : w2->sizes[2];
  rows.strides[0] = rows.sizes[1];
  rows.strides[1] = 1;
  if (!ffn_setup(&P, x, row_token, counts, w1, w3, w2, b1, b2, sw1, sw3, sw2,
                 &rows, segment_stride, kind, activation, gate_up, layout,
                 alpha, up_shift, limit, weight_dtype))
    return;
  const int64_t K = token_slot->sizes[1];
  if (token_slot->sizes[0] != P.T || combine_weights->sizes[0] != P.T ||
      combine_weights->sizes[1] != K || out->sizes[0] != P.T ||
      out->sizes[1] != P.Dout)
    return;
  if (P.T == 0 || P.Dout == 0)
    return;
  P.no_heap = tl_tuning_set && tl_tuning.no_heap;
  const size_t bytes = P.R > 0 && P.Dout <= (int64_t)(SIZE_MAX / sizeof(float)) / P.R
                           ? (size_t)P.R * (size_t)P.Dout * sizeof(float)
                           : 0;
  float *buf = bytes && !P.no_heap ? ffn_workspace(FFN_WS_ROWS, bytes) : NULL;
  if (!buf && P.R > 0) {
    if (P.Dout <= MOERT_FFN_ROWWISE_MAX_D)
      ffn_combined_rowwise(&P, x, row_token, counts, segment_stride, token_slot,
                           combine_weights, out);
    return;
  }
  if (buf)
    rows.allocated = rows.aligned = buf;
  ffn_compute(&P, x, row_token, counts, &rows, segment_stride);
  moert_memref_2d no_passthrough;
  memset(&no_passthrough, 0, sizeof no_passthrough);
  no_passthrough.sizes[1] = P.Dout;
  _mlir_ciface_moert_cpu_combine(&rows, token_slot, combine_weights,
                                 &no_passthrough, out, MOERT_F32);
  if (shared_experts >= 0)
    _mlir_ciface_moert_cpu_expert_importance(&rows, token_slot, combine_weights,
                                             counts, segment_stride, MOERT_F32,
                                             experts, shared_experts);
}
