/*===- tensor.h - libmoert: host tensors ----------------------------------===*
 *
 * Part of the libmoert C API; include "moert/api.h".
 *
 * moert_tensor_t is a dense, row-major host tensor: an element type
 * (moert_dtype), a rank in [0, MOERT_MAX_RANK], a shape of non-negative
 * dimensions, and a buffer of exactly element_count * dtype_size bytes whose
 * address is aligned to at least the element size (64 bytes for buffers that
 * libmoert allocates).
 *
 * Ownership: a tensor has exactly one owner. Functions that return a
 * `moert_tensor_t **out_*` hand ownership to the caller, who releases it with
 * moert_tensor_release. A `const moert_tensor_t *` returned by another object
 * (e.g. moert_weights_find) is borrowed: it is valid while that object lives
 * and must not be released.
 *
 * Thread safety: none internally. Concurrent reads of one tensor are safe;
 * writes (through moert_tensor_data) must not race with other accesses.
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_TENSOR_H
#define MOERT_TENSOR_H

#include "moert/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moert_tensor_s moert_tensor_t;

/* Called when a wrapped tensor is released, with the `user` pointer and the
 * `data` pointer given to moert_tensor_wrap. */
typedef void (*moert_tensor_release_fn)(void *user, void *data);

/* Allocates a zero-filled tensor. Errors: INVALID_ARGUMENT (unknown dtype,
 * rank outside [0, MOERT_MAX_RANK], negative dimension, NULL shape with
 * rank > 0), OUT_OF_RANGE (the size overflows), RESOURCE_EXHAUSTED. */
MOERT_API_EXPORT moert_status_t moert_tensor_create(int32_t dtype, int32_t rank,
                                                    const int64_t *shape,
                                                    moert_tensor_t **out_tensor);

/* Allocates a tensor and copies `data_size` bytes of `data` into it;
 * `data_size` must equal the tensor's byte size (INVALID_ARGUMENT
 * otherwise). */
MOERT_API_EXPORT moert_status_t moert_tensor_create_copy(
    int32_t dtype, int32_t rank, const int64_t *shape, const void *data,
    size_t data_size, moert_tensor_t **out_tensor);

/* Wraps caller memory without copying. `data_size` must equal the byte size
 * and `data` must be non-NULL and aligned to the element size. When the
 * tensor is released, `release_fn(user, data)` is called if `release_fn` is
 * not NULL; with a NULL release_fn the caller keeps ownership of `data` and
 * must keep it alive while the tensor is used. On error release_fn is NOT
 * called (the caller still owns `data`). */
MOERT_API_EXPORT moert_status_t moert_tensor_wrap(
    int32_t dtype, int32_t rank, const int64_t *shape, void *data,
    size_t data_size, moert_tensor_release_fn release_fn, void *user,
    moert_tensor_t **out_tensor);

/* A deep copy of `src` (owning its own buffer). */
MOERT_API_EXPORT moert_status_t moert_tensor_clone(const moert_tensor_t *src,
                                                   moert_tensor_t **out_tensor);

/* A new tensor with `src`'s shape and elements converted to `dtype`. Only
 * float <-> float conversions (f32, f16, bf16; see moert_convert_floats) and
 * same-dtype copies are supported (UNIMPLEMENTED otherwise). */
MOERT_API_EXPORT moert_status_t moert_tensor_convert(const moert_tensor_t *src,
                                                     int32_t dtype,
                                                     moert_tensor_t **out_tensor);

/* Releases a tensor the caller owns. NULL is a no-op. Releasing a borrowed
 * tensor (one owned by a moert_weights_t) is a no-op as well. */
MOERT_API_EXPORT void moert_tensor_release(moert_tensor_t *tensor);

/* Accessors. `tensor` must not be NULL. */
MOERT_API_EXPORT int32_t moert_tensor_dtype(const moert_tensor_t *tensor);
MOERT_API_EXPORT int32_t moert_tensor_rank(const moert_tensor_t *tensor);
/* `rank` entries (valid while the tensor lives). */
MOERT_API_EXPORT const int64_t *moert_tensor_shape(const moert_tensor_t *tensor);
/* Dimension `axis`, or -1 when axis is outside [0, rank). */
MOERT_API_EXPORT int64_t moert_tensor_dim(const moert_tensor_t *tensor,
                                          int32_t axis);
MOERT_API_EXPORT int64_t moert_tensor_element_count(const moert_tensor_t *tensor);
MOERT_API_EXPORT size_t moert_tensor_byte_size(const moert_tensor_t *tensor);
/* Mutable data; never NULL. Do not write through it for a borrowed
 * (const) tensor, which may be mapped read-only. */
MOERT_API_EXPORT void *moert_tensor_data(moert_tensor_t *tensor);
MOERT_API_EXPORT const void *moert_tensor_const_data(
    const moert_tensor_t *tensor);

#ifdef __cplusplus
}
#endif

#endif /* MOERT_TENSOR_H */
