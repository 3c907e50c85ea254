/*===- dtype.h - f16 / bf16 <-> f32 conversions -----------------*- C -*-===*
 *
 * Internal to the CPU kernels (and their unit test): activations may be
 * stored as f16 or bf16 while all arithmetic is f32 (docs/Semantics.md).
 * Narrowing rounds to nearest, ties to even; NaN stays NaN (quietened, sign
 * and leading payload bits kept), infinities and signed zeros are kept, f16
 * subnormals are produced and read exactly. The symbols are hidden so the
 * shared kernel library exports only the _mlir_ciface_* entry points.
 *
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_SRC_CPU_DTYPE_H
#define MOERT_SRC_CPU_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define MOERT_INTERNAL
#else
#define MOERT_INTERNAL __attribute__((visibility("hidden")))
#endif

MOERT_INTERNAL float moert_f16_to_f32(uint16_t h);
MOERT_INTERNAL uint16_t moert_f32_to_f16(float f);
MOERT_INTERNAL float moert_bf16_to_f32(uint16_t b);
MOERT_INTERNAL uint16_t moert_f32_to_bf16(float f);

/* Bytes per element of a moert_elem_type, or 0 for an unknown code. */
MOERT_INTERNAL size_t moert_elem_size(int64_t elem_type);

/* Reads / writes one element of type `elem_type` (a valid code) at `p`,
 * converting from / to f32. */
MOERT_INTERNAL float moert_load_elem(const void *p, int64_t elem_type);
MOERT_INTERNAL void moert_store_elem(void *p, int64_t elem_type, float v);

#ifdef __cplusplus
}
#endif

#endif /* MOERT_SRC_CPU_DTYPE_H */
