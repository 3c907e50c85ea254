/*===- npy.h - libmoert: NumPy .npy files ---------------------------------===*
 *
 * Part of the libmoert C API; include "moert/api.h".
 *
 * Format versions 1.0 and 2.0, little-endian '<f4' (f32), '<f2' (f16), '<i4'
 * (i32), '<i8' (i64), C order ('fortran_order': False) only. NumPy has no
 * bfloat16: bf16 tensors cannot be written (convert them to f32 first with
 * moert_tensor_convert).
 *
 * Reading validates the magic, the version, the header dictionary (exactly
 * the keys 'descr', 'fortran_order' and 'shape'), the dtype, and that the
 * data size (element count * item size, overflow-checked) equals what remains
 * of the file: a truncated file or one with trailing bytes is DATA_LOSS.
 * Unsupported but well-formed files (big-endian, Fortran order, other dtypes,
 * version 3.0) are UNIMPLEMENTED. Messages name the file.
 *
 * Thread safety: the functions keep no state; distinct files may be read and
 * written concurrently.
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_NPY_H
#define MOERT_NPY_H

#include "moert/base.h"
#include "moert/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads `path` into a new tensor owned by the caller. */
MOERT_API_EXPORT moert_status_t moert_npy_read(const char *path,
                                               moert_tensor_t **out_tensor);

/* As moert_npy_read on an in-memory file image (not retained). */
MOERT_API_EXPORT moert_status_t moert_npy_parse(const void *data, size_t size,
                                                moert_tensor_t **out_tensor);

/* Writes `tensor` to `path` (version 1.0, or 2.0 when the header needs it),
 * replacing the file. UNIMPLEMENTED for bf16. */
MOERT_API_EXPORT moert_status_t moert_npy_write(const char *path,
                                                const moert_tensor_t *tensor);

#ifdef __cplusplus
}
#endif

#endif /* MOERT_NPY_H */
