/*===- model.h - libmoert: model libraries --------------------------------===*
 *
 * Part of the libmoert C API; include "moert/api.h".
 *
 * moert_model_t is a loaded model library (a shared library built by
 * moe-compile that exports moert_model_describe, see model_abi.h and
 * docs/ModelLibraryABI.md). Loading dlopens the file with RTLD_NOW |
 * RTLD_LOCAL, calls moert_model_describe once, checks abi_version and then
 * validates the whole description before it is used:
 *   - model_name, target, every entry, argument and result name non-NULL;
 *   - at least one entry point; entry names unique; invoke non-NULL;
 *   - argument names unique within an entry, and likewise result names;
 *   - every tensor: a known dtype, 0 < rank <= MOERT_MAX_RANK, a non-NULL
 *     shape; if a result has a dynamic dimension, some argument has one;
 *   - free_result non-NULL.
 * Failures name the file and the problem (NOT_FOUND for a missing file,
 * UNAVAILABLE when dlopen fails otherwise, NOT_FOUND for a library without
 * the symbol, FAILED_PRECONDITION for an ABI version mismatch or a bad
 * description).
 *
 * Ownership: reference counted. moert_model_load returns one reference;
 * sessions and result tensors that still hold model-allocated memory retain
 * the model, so the library stays loaded until the last of them is released.
 * Descriptions returned by the accessors point into the library and are valid
 * while the model lives.
 *
 * Thread safety: immutable after loading; all functions here may be called
 * from any thread concurrently (retain/release are atomic).
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_MODEL_H
#define MOERT_MODEL_H

#include "moert/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moert_model_s moert_model_t;

/* Loads the model library at `path`. A path without '/' is taken relative to
 * the current directory (it is never searched for in the system library
 * path). */
MOERT_API_EXPORT moert_status_t moert_model_load(const char *path,
                                                 moert_model_t **out_model);

MOERT_API_EXPORT void moert_model_retain(moert_model_t *model);
/* Drops one reference; the last one dlcloses the library. NULL: no-op. */
MOERT_API_EXPORT void moert_model_release(moert_model_t *model);

/* Accessors: `model` must not be NULL. */

/* The validated description (never NULL). */
MOERT_API_EXPORT const moert_model_desc *moert_model_description(
    const moert_model_t *model);
MOERT_API_EXPORT const char *moert_model_name(const moert_model_t *model);
MOERT_API_EXPORT const char *moert_model_target(const moert_model_t *model);
/* The path given to moert_model_load. */
MOERT_API_EXPORT const char *moert_model_path(const moert_model_t *model);

/* 1 if the library exports moert_model_set_stats_sink, else 0. */
MOERT_API_EXPORT int moert_model_has_stats(const moert_model_t *model);

MOERT_API_EXPORT int32_t moert_model_entry_count(const moert_model_t *model);
/* Entry `index`, or NULL when out of range. */
MOERT_API_EXPORT const moert_entry_desc *moert_model_entry(
    const moert_model_t *model, int32_t index);
/* The index of the entry named `name`; NOT_FOUND (listing the entries) when
 * there is none, with *out_index = -1. */
MOERT_API_EXPORT moert_status_t moert_model_find_entry(
    const moert_model_t *model, const char *name, int32_t *out_index);

/* Index of the argument / result named `name` in `entry`, or -1. */
MOERT_API_EXPORT int32_t moert_entry_find_arg(const moert_entry_desc *entry,
                                              const char *name);
MOERT_API_EXPORT int32_t moert_entry_find_result(const moert_entry_desc *entry,
                                                 const char *name);

#ifdef __cplusplus
}
#endif

#endif /* MOERT_MODEL_H */
