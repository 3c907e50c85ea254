/*===- base.h - libmoert: export macro, status, element types -------------===*
 *
 * Part of the libmoert C API; include "moert/api.h".
 *
 * Errors: every fallible function returns a moert_status_t. NULL means
 * success (test with moert_status_is_ok); anything else is an error object
 * that carries a code and a message and is owned by the caller, who must
 * release it with moert_status_free (moert_status_free(NULL) is a no-op).
 * On error, out-parameters are set to NULL/0 unless documented otherwise, and
 * nothing has been allocated on the caller's behalf.
 *
 * Thread safety: a status object is owned by one caller; the functions here
 * keep no shared state.
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_BASE_H
#define MOERT_BASE_H

#include <stddef.h>
#include <stdint.h>

#include "moert/model_abi.h"

#if defined(_WIN32)
#if defined(MOERT_BUILDING_LIBRARY)
#define MOERT_API_EXPORT __declspec(dllexport)
#else
#define MOERT_API_EXPORT __declspec(dllimport)
#endif
#else
#define MOERT_API_EXPORT __attribute__((visibility("default")))
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MOERT_MUST_USE_RESULT __attribute__((warn_unused_result))
#define MOERT_PRINTF_LIKE(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define MOERT_MUST_USE_RESULT
#define MOERT_PRINTF_LIKE(fmt, args)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/*===----------------------------------------------------------------------===*
 * Status
 *===----------------------------------------------------------------------===*/

typedef enum moert_status_code_e {
  MOERT_STATUS_OK = 0,
  /* The caller passed something invalid: a NULL pointer, an argument of the
   * wrong shape or dtype, a malformed option. */
  MOERT_STATUS_INVALID_ARGUMENT = 1,
  /* A named thing does not exist: a file, an entry point, a tensor, an
   * argument that is neither an input nor a weight. */
  MOERT_STATUS_NOT_FOUND = 2,
  /* An index or size is outside its valid range (also: size overflow). */
  MOERT_STATUS_OUT_OF_RANGE = 3,
  /* Memory (or another resource) could not be allocated. */
  MOERT_STATUS_RESOURCE_EXHAUSTED = 4,
  /* A file is malformed or truncated (safetensors, .npy). */
  MOERT_STATUS_DATA_LOSS = 5,
  /* Valid input that this runtime does not support (a dtype, a version). */
  MOERT_STATUS_UNIMPLEMENTED = 6,
  /* The object is not in a state that allows the operation, or a model
   * library does not match this runtime (ABI version, bad description). */
  MOERT_STATUS_FAILED_PRECONDITION = 7,
  /* An operating-system call failed (open, mmap, dlopen, write). */
  MOERT_STATUS_UNAVAILABLE = 8,
  /* A model library broke its own contract (e.g. returned a malformed
   * result); a bug in the model or the compiler. */
  MOERT_STATUS_INTERNAL = 9
} moert_status_code_t;

/* Opaque; NULL is OK. */
typedef struct moert_status_s *moert_status_t;

#define moert_status_is_ok(status) ((status) == NULL)
#define moert_ok_status() ((moert_status_t)NULL)

/* Creates an error status with a printf-style message. `code` must not be
 * MOERT_STATUS_OK (that returns NULL). Never fails: if memory runs out, a
 * static "out of memory" status is returned (moert_status_free accepts it). */
MOERT_API_EXPORT moert_status_t moert_status_make(moert_status_code_t code,
                                                  const char *format, ...)
    MOERT_PRINTF_LIKE(2, 3);

/* The code of `status`; MOERT_STATUS_OK for NULL. */
MOERT_API_EXPORT moert_status_code_t moert_status_code(moert_status_t status);

/* The message of `status` ("OK" for NULL). Valid until the status is freed. */
MOERT_API_EXPORT const char *moert_status_message(moert_status_t status);

/* "OK", "INVALID_ARGUMENT", ... ("UNKNOWN" for other values). Static. */
MOERT_API_EXPORT const char *moert_status_code_string(moert_status_code_t code);

/* Releases `status`. NULL is a no-op. */
MOERT_API_EXPORT void moert_status_free(moert_status_t status);

/* Releases memory that libmoert allocated for the caller (for example the
 * text of moert_session_stats_json). NULL is a no-op. */
MOERT_API_EXPORT void moert_free(void *ptr);

/*===----------------------------------------------------------------------===*
 * Element types (moert_dtype is defined in model_abi.h)
 *===----------------------------------------------------------------------===*/

/* Bytes per element: 4, 2, 2, 4, 8; 0 for a value that is not a moert_dtype. */
MOERT_API_EXPORT size_t moert_dtype_size(int32_t dtype);

/* "f32", "f16", "bf16", "i32", "i64"; "unknown" otherwise. Static. */
MOERT_API_EXPORT const char *moert_dtype_name(int32_t dtype);

/* Parses "f32" / "f16" / "bf16" / "i32" / "i64" into *out_dtype; returns 0
 * on success, -1 for any other string. */
MOERT_API_EXPORT int moert_dtype_from_name(const char *name, int32_t *out_dtype);

/* 1 for f32, f16 and bf16; 0 otherwise. */
MOERT_API_EXPORT int moert_dtype_is_float(int32_t dtype);

/* Converts `count` elements between float dtypes (f32, f16, bf16, in any
 * direction, including same-to-same copies). Narrowing rounds to nearest,
 * ties to even; NaN stays NaN (quietened, sign kept), infinities and signed
 * zeros are kept, f16 subnormals are exact. `src` and `dst` must not overlap
 * and must be aligned to their element sizes. */
MOERT_API_EXPORT moert_status_t moert_convert_floats(int32_t src_dtype,
                                                     const void *src,
                                                     int32_t dst_dtype,
                                                     void *dst, size_t count);

/* The element count of a shape: the product of `rank` non-negative
 * dimensions (1 for rank 0), checked for overflow of int64_t. Errors:
 * INVALID_ARGUMENT for a negative dimension or rank outside
 * [0, MOERT_MAX_RANK], OUT_OF_RANGE on overflow. */
MOERT_API_EXPORT moert_status_t moert_shape_element_count(
    int32_t rank, const int64_t *shape, int64_t *out_count);

/* As above, times moert_dtype_size(dtype), checked against overflow of both
 * int64_t and size_t. */
MOERT_API_EXPORT moert_status_t moert_shape_byte_size(int32_t dtype,
                                                      int32_t rank,
                                                      const int64_t *shape,
                                                      size_t *out_bytes);

#ifdef __cplusplus
}
#endif

#endif /* MOERT_BASE_H */
