/*===- fake_gpu_memory.h - Allocation tracking of the stand-in drivers ----===*
 *
 * What fake_cuda_driver.c and fake_hip_runtime.c share: the managed-memory
 * bookkeeping (every block is host memory, recorded so frees can be matched
 * and the bytes still live reported at exit), the counters, error reporting
 * and the report printed at exit. The includer defines FAKE_GPU_NAME (e.g.
 * "fake-cuda"), which prefixes every line printed.
 *
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_TEST_FAKE_GPU_MEMORY_H
#define MOERT_TEST_FAKE_GPU_MEMORY_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FAKE_GPU_NAME
#error "define FAKE_GPU_NAME before including fake_gpu_memory.h"
#endif

#define FAKE_MAX_BLOCKS 65536

static void *fake_blocks[FAKE_MAX_BLOCKS];
static size_t fake_block_bytes[FAKE_MAX_BLOCKS];
static size_t fake_live_bytes;
static long fake_allocs, fake_frees;
static long modules, found, launches, errors, uploads;

/* Counts and prints an API misuse. */
static void fail(const char *what, const char *detail) {
  ++errors;
  fprintf(stderr, FAKE_GPU_NAME ": error: %s%s%s\n", what, detail ? ": " : "",
          detail ? detail : "");
}

__attribute__((destructor)) static void report(void) {
  fprintf(stderr,
          FAKE_GPU_NAME ": modules=%ld kernels-found=%ld launches=%ld allocs=%ld "
                        "frees=%ld live-bytes=%zu errors=%ld uploads=%ld\n",
          modules, found, launches, fake_allocs, fake_frees, fake_live_bytes,
          errors, uploads);
}

/* A host-to-device copy: `dst` .. `dst + bytes` must lie in one block. */
static int fake_upload(void *dst, const void *src, size_t bytes) {
  char *d = (char *)dst;
  for (int i = 0; i < FAKE_MAX_BLOCKS; ++i) {
    char *b = (char *)fake_blocks[i];
    if (b && d >= b && bytes <= fake_block_bytes[i] &&
        (size_t)(d - b) <= fake_block_bytes[i] - bytes) {
      memcpy(dst, src, bytes);
      ++uploads;
      return 1;
    }
  }
  fail("host-to-device copy outside any allocation", NULL);
  return 0;
}

/* A zeroed block of `bytes`, recorded; NULL when the table is full. */
static void *fake_alloc(size_t bytes) {
  for (int i = 0; i < FAKE_MAX_BLOCKS; ++i)
    if (!fake_blocks[i]) {
      void *p = calloc(1, bytes);
      if (!p)
        return NULL;
      fake_blocks[i] = p;
      fake_block_bytes[i] = bytes;
      fake_live_bytes += bytes;
      ++fake_allocs;
      return p;
    }
  return NULL;
}

/* Frees a recorded block; 0 if `p` is not one. */
static int fake_free(void *p) {
  for (int i = 0; i < FAKE_MAX_BLOCKS; ++i)
    if (fake_blocks[i] == p) {
      free(p);
      fake_blocks[i] = NULL;
      fake_live_bytes -= fake_block_bytes[i];
      ++fake_frees;
      return 1;
    }
  return 0;
}

#endif /* MOERT_TEST_FAKE_GPU_MEMORY_H */
