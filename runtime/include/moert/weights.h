/*===- weights.h - libmoert: named weights (safetensors) ------------------===*
 *
 * Part of the libmoert C API; include "moert/api.h".
 *
 * moert_weights_t is an immutable set of named tensors, loaded from a
 * safetensors file (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...,
 *    "__metadata__": {...}}
 * and the data section, to which data_offsets are relative.
 *
 * Everything is validated before any tensor is used: the header length
 * (<= file size - 8 and <= 100,000,000), well-formed JSON, for every tensor a
 * supported dtype (F32, F16, BF16, I32, I64; others are UNIMPLEMENTED and the
 * message names the tensor and the dtype), a shape of at most MOERT_MAX_RANK
 * non-negative integers, data_offsets [begin, end] with begin <= end <= data
 * size and end - begin == element count * dtype size (overflow-checked), and
 * no duplicate names. Malformed files give DATA_LOSS with a message naming the
 * file and the problem. `__metadata__` is allowed and ignored, as are unknown
 * keys inside a tensor's entry.
 *
 * Ownership: reference counted. The loader returns one reference; release it
 * with moert_weights_release. Sessions retain the weights they are bound to.
 * Tensors returned by moert_weights_tensor / moert_weights_find are borrowed
 * from the weights object: valid while it lives, read-only (the file is
 * mapped read-only), never to be released by the caller. Mapped tensors are
 * aligned to the element size only if the file's offsets are (sessions copy
 * misaligned weights once at bind time); copies (MOERT_WEIGHTS_HUGE_PAGES,
 * moert_weights_parse_safetensors) align every tensor to 64 bytes.
 *
 * Thread safety: immutable after loading; every function may be called from
 * any number of threads concurrently (retain/release are atomic).
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_WEIGHTS_H
#define MOERT_WEIGHTS_H

#include "moert/base.h"
#include "moert/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moert_weights_s moert_weights_t;

/* Maps `path` read-only and validates it (see above). Errors: NOT_FOUND or
 * UNAVAILABLE (cannot open / map), DATA_LOSS (malformed), UNIMPLEMENTED
 * (unsupported dtype). */
MOERT_API_EXPORT moert_status_t moert_weights_load_safetensors(
    const char *path, moert_weights_t **out_weights);

/* Where moert_weights_load_safetensors_ex puts the file's bytes. */
typedef enum moert_weights_placement {
  /* Mapped read-only: no copy, pages shared with the page cache (and with
   * other processes mapping the file). What moert_weights_load_safetensors
   * does. */
  MOERT_WEIGHTS_MAP = 0,
  /* Read into process memory that is advised to be backed by transparent
   * huge pages (madvise(MADV_HUGEPAGE); ordinary pages where the system has
   * them disabled). Costs a copy of the file, and memory for it, at load
   * time; in return the kernels streaming the expert weights (decode steps,
   * weight packing) take far fewer TLB misses (a few percent faster CPU
   * calls, docs/performance.md). Every tensor of the copy starts on a
   * 64-byte boundary (files align them to 8 bytes at most, and a weight
   * matrix off a cache-line boundary splits every vector load in two). */
  MOERT_WEIGHTS_HUGE_PAGES = 1,
  /* Not a placement: makes every int a value of the type, so that an
   * unknown placement passed in is an INVALID_ARGUMENT error, not undefined
   * behaviour. */
  MOERT_WEIGHTS_PLACEMENT_MAX_ENUM = 0x7fffffff
} moert_weights_placement;

/* As moert_weights_load_safetensors, with the bytes placed as `placement`
 * says. INVALID_ARGUMENT for an unknown placement. */
MOERT_API_EXPORT moert_status_t moert_weights_load_safetensors_ex(
    const char *path, moert_weights_placement placement,
    moert_weights_t **out_weights);

/* As moert_weights_load_safetensors on an in-memory file image; the bytes are
 * copied (into memory placed as MOERT_WEIGHTS_HUGE_PAGES), `data` need not
 * outlive the call. `data` may be NULL when `size` is
 * 0 (which is an error: too short). */
MOERT_API_EXPORT moert_status_t moert_weights_parse_safetensors(
    const void *data, size_t size, moert_weights_t **out_weights);

/* An empty set (useful as a default). */
MOERT_API_EXPORT moert_status_t moert_weights_create_empty(
    moert_weights_t **out_weights);

MOERT_API_EXPORT void moert_weights_retain(moert_weights_t *weights);
/* Drops one reference; the last one unmaps the file. NULL is a no-op. */
MOERT_API_EXPORT void moert_weights_release(moert_weights_t *weights);

/* Number of tensors (in file header order). */
MOERT_API_EXPORT int64_t moert_weights_count(const moert_weights_t *weights);

/* The name of tensor `index` (NULL when out of range). Borrowed. */
MOERT_API_EXPORT const char *moert_weights_name(const moert_weights_t *weights,
                                                int64_t index);

/* Tensor `index` (NULL when out of range). Borrowed, read-only. */
MOERT_API_EXPORT const moert_tensor_t *moert_weights_tensor(
    const moert_weights_t *weights, int64_t index);

/* The tensor named `name`, or NULL. Borrowed, read-only. O(log n). */
MOERT_API_EXPORT const moert_tensor_t *moert_weights_find(
    const moert_weights_t *weights, const char *name);

#ifdef __cplusplus
}
#endif

#endif /* MOERT_WEIGHTS_H */
