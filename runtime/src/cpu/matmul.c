/*===- matmul.c - Dense f32 products (linalg.matmul) on the CPU -----------===*
 *
 * out = init + a x b for the dense products a model has besides its experts
 * (the router of every layer, and whatever ordinary linalg.matmul the model
 * holds). The generated scalar loops reload and store the accumulator for
 * every k; here blocks of 4 output rows x 64 columns are summed over all k
 * in vector registers, each row of b read once per block, vectorised
 * (AVX-512 or AVX2 picked at load time by target_clones).
 * Every element is still init + sum over k in order of a*b with one
 * rounding per operation (no FMA contraction: -ffp-contract=off), so the
 * results equal the loops' bit for bit.
 *
 *===----------------------------------------------------------------------===*/

#include "expert_ffn_internal.h"
#include "kernel_util.h"

#define MOERT_MM_ROWS 4 /* output rows per block */

typedef struct {
  const moert_memref_2d *a, *b, *init, *out;
  int64_t M, N, K;
} Matmul;

static float *row_f32(const moert_memref_2d *m, int64_t i) {
  return (float *)m->aligned + m->offset + i * m->strides[0];
}

/* 16 floats as one value: a full block's sums are 4 x 4 of them, which the
 * compiler keeps in vector registers (AVX-512: one each). */
typedef float mm_v16 __attribute__((vector_size(64)));

/* out[i0 + r][j0 + j] for r < rows (<= MOERT_MM_ROWS), j < nc (<=
 * MOERT_MM_COLS): init plus the products in k order, summed in registers
 * (a full block) or in a local block; one call per block instead of one
 * axpy call per row and k (the router's N = 64 columns are 4 AVX-512
 * vectors: the calls cost more than the arithmetic). */
#define MOERT_MM_COLS 64
MOERT_VEC_CLONES
static void mm_block(const Matmul *p, int64_t i0, int rows, int64_t j0,
                     int64_t nc) {
  const float *arow[MOERT_MM_ROWS];
  for (int r = 0; r < rows; ++r)
    arow[r] = row_f32(p->a, i0 + r);
  const int64_t as = p->a->strides[1];
  if (rows == MOERT_MM_ROWS && nc == MOERT_MM_COLS) {
    mm_v16 acc[MOERT_MM_ROWS][MOERT_MM_COLS / 16];
    for (int r = 0; r < MOERT_MM_ROWS; ++r)
      for (int v = 0; v < MOERT_MM_COLS / 16; ++v)
        memcpy(&acc[r][v], row_f32(p->init, i0 + r) + j0 + 16 * v, sizeof(mm_v16));
    for (int64_t k = 0; k < p->K; ++k) {
      const float *b = row_f32(p->b, k) + j0;
      mm_v16 bv[MOERT_MM_COLS / 16];
      for (int v = 0; v < MOERT_MM_COLS / 16; ++v)
        memcpy(&bv[v], b + 16 * v, sizeof(mm_v16));
      for (int r = 0; r < MOERT_MM_ROWS; ++r) {
        const float s = arow[r][k * as];
        for (int v = 0; v < MOERT_MM_COLS / 16; ++v)
          acc[r][v] = acc[r][v] + s * bv[v];
      }
    }
    for (int r = 0; r < MOERT_MM_ROWS; ++r)
      for (int v = 0; v < MOERT_MM_COLS / 16; ++v)
        memcpy(row_f32(p->out, i0 + r) + j0 + 16 * v, &acc[r][v], sizeof(mm_v16));
    return;
  }
  float acc[MOERT_MM_ROWS][MOERT_MM_COLS];
  for (int r = 0; r < rows; ++r)
    memcpy(acc[r], row_f32(p->init, i0 + r) + j0, (size_t)nc * sizeof(float));
  for (int64_t k = 0; k < p->K; ++k) {
    const float *b = row_f32(p->b, k) + j0;
    for (int r = 0; r < rows; ++r) {
      const float s = arow[r][k * as];
      for (int64_t j = 0; j < nc; ++j)
        acc[r][j] = acc[r][j] + s * b[j];
    }
  }
  for (int r = 0; r < rows; ++r)
    memcpy(row_f32(p->out, i0 + r) + j0, acc[r], (size_t)nc * sizeof(float));
}

/* Rows [r0, r1) of the output, unit column strides. */
static void rows_contiguous(const Matmul *p, int64_t r0, int64_t r1) {
  for (int64_t i0 = r0; i0 < r1; i0 += MOERT_MM_ROWS) {
    const int rows = (int)(r1 - i0 < MOERT_MM_ROWS ? r1 - i0 : MOERT_MM_ROWS);
    for (int64_t j0 = 0; j0 < p->N; j0 += MOERT_MM_COLS)
      mm_block(p, i0, rows, j0, p->N - j0 < MOERT_MM_COLS ? p->N - j0 : MOERT_MM_COLS);
  }
}

/* Any strides: the same order of operations, element by element. */
static void rows_strided(const Matmul *p, int64_t r0, int64_t r1) {
  for (int64_t i = r0; i < r1; ++i)
    for (int64_t j = 0; j < p->N; ++j) {
      float acc = MOERT_F32_2D(p->init, i, j);
      for (int64_t k = 0; k < p->K; ++k)
        acc = acc + MOERT_F32_2D(p->a, i, k) * MOERT_F32_2D(p->b, k, j);
      MOERT_F32_2D(p->out, i, j) = acc;
    }
}

static int contiguous(const Matmul *p) {
  return p->b->strides[1] == 1 && p->init->strides[1] == 1 &&
         p->out->strides[1] == 1;
}

static void run_blocks(void *arg, int64_t begin, int64_t end) {
  const Matmul *p = (const Matmul *)arg;
  int64_t r0 = begin * MOERT_MM_ROWS;
  int64_t r1 = end * MOERT_MM_ROWS < p->M ? end * MOERT_MM_ROWS : p->M;
  if (contiguous(p))
    rows_contiguous(p, r0, r1);
  else
    rows_strided(p, r0, r1);
}

void _mlir_ciface_moert_cpu_matmul(moert_memref_2d *a, moert_memref_2d *b,
                                   moert_memref_2d *init, moert_memref_2d *out) {
  if (!a || !b || !init || !out)
    return;
  Matmul p = {a, b, init, out, a->sizes[0], b->sizes[1], a->sizes[1]};
  if (p.M < 0 || p.N < 0 || p.K < 0 || b->sizes[0] != p.K ||
      init->sizes[0] != p.M || init->sizes[1] != p.N ||
      out->sizes[0] != p.M || out->sizes[1] != p.N)
    return;
  int64_t blocks = (p.M + MOERT_MM_ROWS - 1) / MOERT_MM_ROWS;
  if (blocks == 0)
    return;
  const moert_parallel_hook *hook = moert_cpu_parallel_hook();
  /* Threads only pay off for products of some size. */
  if (hook && blocks > 1 && p.M * p.N * p.K >= MOERT_CPU_PARALLEL_MIN_WORK)
    hook->parallel_for(hook->user, blocks, run_blocks, &p);
  else
    run_blocks(&p, 0, blocks);
}
