/*===- fake_hip_runtime.c - A HIP runtime stand-in for host-side tests ----===*
 *
 * Built as libamdhip64.so in a test directory and put first on
 * LD_LIBRARY_PATH, it lets the host side of ROCm model libraries run on a
 * machine without an AMD GPU, like fake_cuda_driver.c does for CUDA:
 * module images must be AMDGPU code objects (ELF, EM_AMDGPU) and a kernel
 * looked up must be named in one; launches are checked (grid, at most 1024
 * threads per block, parameters) but run nothing; managed allocations are
 * tracked. At exit it reports on stderr:
 *
 *   fake-hip: modules=M kernels-found=K launches=L allocs=A frees=F
 *             live-bytes=B errors=E
 *
 *===----------------------------------------------------------------------===*/

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAKE_GPU_NAME "fake-hip"
#include "fake_gpu_memory.h"

typedef int hipError_t;
enum { OK = 0, ERR_INVALID_VALUE = 1, ERR_INVALID_IMAGE = 200, ERR_NOT_FOUND = 500 };

#define MAX_MODULES 1024

typedef struct {
  const unsigned char *image;
  size_t size;
} Module;

static Module mods[MAX_MODULES];
static int num_mods;
static char found_names[MAX_MODULES][128];

hipError_t hipInit(unsigned flags) { return flags == 0 ? OK : ERR_INVALID_VALUE; }
hipError_t hipGetDeviceCount(int *n) { *n = 1; return OK; }
hipError_t hipSetDevice(int d) { return d == 0 ? OK : ERR_INVALID_VALUE; }
hipError_t hipDeviceSynchronize(void) { return OK; }
hipError_t hipStreamSynchronize(void *s) { (void)s; return OK; }
const char *hipGetErrorString(hipError_t e) { return e ? "fake HIP error" : "no error"; }

hipError_t hipModuleLoadData(void **module, const void *image) {
  const unsigned char *p = (const unsigned char *)image;
  if (!p || memcmp(p, "\x7f" "ELF", 4) != 0 || (p[18] | (p[19] << 8)) != 224) {
    fail("module image is not an AMDGPU code object", NULL);
    return ERR_INVALID_IMAGE;
  }
  if (num_mods == MAX_MODULES)
    return ERR_INVALID_VALUE;
  /* The ELF's size: section headers end the file (e_shoff + e_shnum *
   * e_shentsize), enough to search the symbol names. */
  uint64_t shoff;
  uint16_t shentsize, shnum;
  memcpy(&shoff, p + 0x28, 8);
  memcpy(&shentsize, p + 0x3a, 2);
  memcpy(&shnum, p + 0x3c, 2);
  mods[num_mods].image = p;
  mods[num_mods].size = (size_t)(shoff + (uint64_t)shnum * shentsize);
  *module = &mods[num_mods++];
  ++modules;
  return OK;
}

hipError_t hipModuleUnload(void *module) { return module ? OK : ERR_INVALID_VALUE; }

hipError_t hipModuleGetFunction(void **fn, void *module, const char *name) {
  Module *m = (Module *)module;
  if (!m || !memmem(m->image, m->size, name, strlen(name) + 1)) {
    fail("kernel not in the module's symbols", name);
    return ERR_NOT_FOUND;
  }
  snprintf(found_names[found % MAX_MODULES], sizeof found_names[0], "%s", name);
  *fn = found_names[found % MAX_MODULES];
  ++found;
  return OK;
}

hipError_t hipModuleLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz,
                                 unsigned bx, unsigned by, unsigned bz,
                                 unsigned smem, void *stream, void **params,
                                 void **extra) {
  (void)smem;
  (void)stream;
  (void)extra;
  if (!fn) {
    fail("launch of a NULL function", NULL);
    return ERR_INVALID_VALUE;
  }
  if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0 ||
      (unsigned long)bx * by * bz > 1024) {
    fail("launch configuration out of range", (const char *)fn);
    return ERR_INVALID_VALUE;
  }
  if (!params) {
    fail("launch without parameters", (const char *)fn);
    return ERR_INVALID_VALUE;
  }
  ++launches;
  return OK;
}

hipError_t hipMallocManaged(void **ptr, size_t bytes, unsigned flags) {
  if (flags != 1 || bytes == 0) {
    fail("hipMallocManaged arguments", NULL);
    return ERR_INVALID_VALUE;
  }
  *ptr = fake_alloc(bytes);
  return *ptr ? OK : 2; /* hipErrorOutOfMemory */
}

hipError_t hipMemcpyHtoD(void *dst, void *src, size_t bytes) {
  return fake_upload(dst, src, bytes) ? OK : ERR_INVALID_VALUE;
}

hipError_t hipFree(void *p) {
  if (fake_free(p))
    return OK;
  fail("hipFree of memory not allocated by hipMallocManaged", NULL);
  return ERR_INVALID_VALUE;
}
