/*===- moert/device.h - GPU devices for model libraries ----------*- C -*-===*
 *
 * GPU model libraries (moe-compile --target=cuda / rocm) embed their device
 * code and call the `mgpu*` host ABI that MLIR's gpu-to-llvm emits, plus
 * `_mlir_memref_to_llvm_alloc` / `_free` for every buffer. libmoert
 * provides both (so no MLIR runtime library is needed): it loads the CUDA
 * driver (libcuda.so.1) or the HIP runtime (libamdhip64.so) with dlopen the
 * first time a model library loads device code, picking the vendor from
 * the code's format (PTX, CUDA ELF or fatbinary; AMDGPU ELF). Buffers are
 * managed (unified) memory, so the host can fill inputs and read results
 * directly.
 *
 * Failures never abort: the first one is recorded (moert_device_status),
 * later launches are skipped, and the session reports the error instead of
 * results. A machine without the driver or a device gets a clear message
 * when the model library is loaded.
 *
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_DEVICE_H
#define MOERT_DEVICE_H

#include "moert/base.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Device targets of model libraries. */
typedef enum moert_device_kind {
  MOERT_DEVICE_CPU = 0,
  MOERT_DEVICE_CUDA = 1,
  MOERT_DEVICE_ROCM = 2,
  /* Not a kind: makes every int a value of the type, so that an unknown
   * kind passed in is an INVALID_ARGUMENT error, not undefined behaviour. */
  MOERT_DEVICE_KIND_MAX_ENUM = 0x7fffffff
} moert_device_kind_t;

/* The kind of a target name ("cpu", "cuda", "rocm"); -1 if unknown. */
MOERT_API_EXPORT int moert_device_kind_from_name(const char *name);

/* Loads the driver of `kind` and opens device 0 (idempotent). Returns NULL
 * or the reason it is unavailable (no driver library, no device, ...). */
MOERT_API_EXPORT moert_status_t moert_device_init(moert_device_kind_t kind);

/* The first device error since the last moert_device_clear_error (a copy
 * the caller owns), or NULL. */
MOERT_API_EXPORT moert_status_t moert_device_status(void);
MOERT_API_EXPORT void moert_device_clear_error(void);

/* Managed memory of the active device (at least 1 byte, 256-byte aligned);
 * NULL if no device is active or it is exhausted. Freed blocks are kept for
 * reuse by allocations of the same size (MOERT_DEVICE_POOL=0: never;
 * MOERT_DEVICE_POOL_MB: at most this many MiB, default 4096) until
 * moert_device_trim gives them back to the driver. */
MOERT_API_EXPORT void *moert_device_alloc(size_t bytes);
MOERT_API_EXPORT void moert_device_free(void *ptr);
MOERT_API_EXPORT void moert_device_trim(void);

/* Copies `bytes` of host memory into `dst`, a block from moert_device_alloc:
 * by DMA where the driver offers it (the pages stay on the device), else a
 * host copy followed by a prefetch to the device. */
MOERT_API_EXPORT void moert_device_upload(void *dst, const void *src,
                                          size_t bytes);

/* Waits for all work of the active device. */
MOERT_API_EXPORT moert_status_t moert_device_synchronize(void);

/* Name of the active device ("NVIDIA H100 80GB HBM3"), or "" if none. */
MOERT_API_EXPORT const char *moert_device_name(void);

#ifdef __cplusplus
}
#endif

#endif /* MOERT_DEVICE_H */
