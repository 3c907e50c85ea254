/*===- expert_ffn_internal.h - Expert FFN test/bench knobs ------*- C -*-===*
 *
 * Internal to the CPU kernels, their unit test and benchmark: overrides of
 * the expert FFN kernel's instruction set, path choice and blocking. Not
 * part of the model ABI; the symbols are hidden in the shared library.
 *
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_SRC_CPU_EXPERT_FFN_INTERNAL_H
#define MOERT_SRC_CPU_EXPERT_FFN_INTERNAL_H

#include <stdint.h>

#include "dtype.h" /* MOERT_INTERNAL */
#include "moert/cpu_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
  MOERT_FFN_ISA_AUTO = -1,
  MOERT_FFN_ISA_SCALAR = 0,
  MOERT_FFN_ISA_AVX2 = 1,
  MOERT_FFN_ISA_AVX512 = 2
};
enum {
  MOERT_FFN_PATH_AUTO = 0,   /* decode below decode_rows rows, else GEMM */
  MOERT_FFN_PATH_DECODE = 1, /* every expert on the decode path */
  MOERT_FFN_PATH_GEMM = 2    /* every expert on the GEMM path */
};

/* Zero / negative fields mean "default". */
typedef struct moert_expert_ffn_tuning {
  int32_t isa;  /* MOERT_FFN_ISA_*: the best the CPU has at or below this */
  int32_t path; /* MOERT_FFN_PATH_* */
  int64_t row_block;   /* GEMM path: most rows per task */
  int64_t f_block;     /* GEMM path: F columns per fused block (rounded up to 32) */
  int64_t k_block;     /* GEMM path: depth of a packed W1/W3 panel */
  int64_t decode_rows; /* experts with fewer rows take the decode path */
  int32_t no_heap;     /* nonzero: act as if every allocation failed */
  /* Decode path: most bytes of sums (rows x columns, <= 4 rows) of an
   * in_out product that streams the weight rows in stored order; negative:
   * never. */
  int64_t decode_stream_bytes;
} moert_expert_ffn_tuning;

/* Thread-local, like the parallel hook; NULL restores the defaults. */
MOERT_INTERNAL void moert_expert_ffn_set_tuning(const moert_expert_ffn_tuning *t);

/* The MOERT_FFN_ISA_* the kernel would use on this thread now. */
MOERT_INTERNAL int moert_expert_ffn_isa(void);

/* Rows taken by idle threads from busy ones since the process started
 * (GEMM path; see ffn_steal_loop in expert_ffn.c). */
MOERT_INTERNAL int64_t moert_expert_ffn_steals(void);

/* The GEMM-path work plan the kernel would make on nthr threads for experts
 * with counts[e] rows (e < E), under this thread's tuning: the experts'
 * row blocks dealt out as one group per thread (expert_ffn.c). Writes the
 * rows of each group to rows[g] and its estimated cost (in rows, packing
 * included) to cost[g] (nthr entries each), and, when groups_of is not
 * NULL, the number of groups expert e's rows went to in groups_of[e] (E
 * entries: 2 or more for an expert split between threads); returns the
 * number of groups, or -1 when the plan cannot be made (no memory,
 * nthr < 1). */
MOERT_INTERNAL int64_t moert_expert_ffn_plan(const int64_t *counts, int64_t E,
                                             int64_t nthr, int64_t *rows,
                                             int64_t *cost, int64_t *groups_of);

/* The parallel hook installed on this thread (moert_cpu_set_parallel_hook)
 * when it offers more than one thread, else NULL: the other kernels share
 * it. */
MOERT_INTERNAL const moert_parallel_hook *moert_cpu_parallel_hook(void);

/* The least work (multiply-adds) for which the dense matmul and combine
 * hand their blocks to the hook's threads: below it, waking them costs more
 * than it saves. */
#define MOERT_CPU_PARALLEL_MIN_WORK ((int64_t)1 << 18)

#ifdef __cplusplus
}
#endif

#endif /* MOERT_SRC_CPU_EXPERT_FFN_INTERNAL_H */
