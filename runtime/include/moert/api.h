/*===- api.h - libmoert, the moe-mlir runtime C API (umbrella) ------------===*
 *
 * libmoert loads model libraries built by moe-compile and runs them on the
 * host. It is plain C/C++17 with no LLVM/MLIR dependency and links only libc,
 * libm, libdl and libstdc++. docs/Runtime.md is the reference; in short:
 *
 *   moert_model_t    a loaded, validated model library   (model.h)
 *   moert_weights_t  named tensors from a safetensors file (weights.h)
 *   moert_tensor_t   an owning, dense host tensor        (tensor.h)
 *   moert_session_t  model + entry + weights bound once, called many times,
 *                    with routing statistics             (session.h)
 *   moert_npy_*      NumPy .npy input/output             (npy.h)
 *   moert_status_t   errors: NULL = OK, else code + message (base.h)
 *
 * Conventions (IREE style):
 *  - Fallible functions return moert_status_t and produce values through
 *    `out_*` parameters; the caller frees a non-NULL status.
 *  - Ownership is explicit: `create`/`load` return an owned object; `retain`
 *    and `release` manage reference-counted ones (model, weights); pointers
 *    returned by accessors are borrowed from their object.
 *  - There is no global mutable state: everything lives in the objects the
 *    caller creates, so independent objects can be used from independent
 *    threads. Each header documents the thread safety of its type.
 *  - A session lends its own worker threads (all cores by default) to the
 *    model's kernels during a call; see session.h. moert_call runs on the
 *    calling thread only.
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_API_H
#define MOERT_API_H

#include "moert/base.h"       /* IWYU pragma: export */
#include "moert/device.h"     /* IWYU pragma: export */
#include "moert/model.h"      /* IWYU pragma: export */
#include "moert/model_abi.h"  /* IWYU pragma: export */
#include "moert/npy.h"        /* IWYU pragma: export */
#include "moert/session.h"    /* IWYU pragma: export */
#include "moert/tensor.h"     /* IWYU pragma: export */
#include "moert/weights.h"    /* IWYU pragma: export */

#endif /* MOERT_API_H */
