/*===- fake_cuda_driver.c - A CUDA driver stand-in for host-side tests ----===*
 *
 * Built as libcuda.so.1 in a test directory and put first on
 * LD_LIBRARY_PATH, it lets the host side of GPU model libraries run on a
 * machine without a GPU: libmoert's dlopen of the driver, the module loads
 * in the library's constructors, kernel lookup, every launch and every
 * managed allocation go through the real code paths. Nothing is executed on
 * a device (results are meaningless); instead the fake checks what a driver
 * would reject and, at exit, reports on stderr:
 *
 *   fake-cuda: modules=M kernels-found=K launches=L allocs=A frees=F
 *              live-bytes=B errors=E uploads=U
 *
 * Checks: a module image must be PTX text naming `.entry` kernels; a kernel
 * looked up must be one of them; a launch needs a known kernel, a grid of
 * at most 2^31-1 x 65535 x 65535 blocks and at most 1024 threads per block,
 * and a non-NULL parameter array; frees must match allocations. Each
 * violation increments `errors` and is printed.
 *
 *===----------------------------------------------------------------------===*/

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAKE_GPU_NAME "fake-cuda"
#include "fake_gpu_memory.h"

typedef int CUresult;
enum { OK = 0, ERR_INVALID_VALUE = 1, ERR_NOT_FOUND = 500, ERR_INVALID_IMAGE = 200 };

#define MAX_KERNELS 4096

typedef struct {
  char name[128];
} Kernel;

static Kernel kernels[MAX_KERNELS];
static int num_kernels;

CUresult cuInit(unsigned flags) { return flags == 0 ? OK : ERR_INVALID_VALUE; }
CUresult cuDeviceGetCount(int *n) { *n = 1; return OK; }
CUresult cuDeviceGet(int *d, int i) { *d = i; return i == 0 ? OK : ERR_INVALID_VALUE; }
CUresult cuDeviceGetName(char *name, int len, int d) {
  (void)d;
  snprintf(name, (size_t)len, "fake CUDA device");
  return OK;
}
CUresult cuDevicePrimaryCtxRetain(void **ctx, int d) {
  (void)d;
  *ctx = (void *)0x1;
  return OK;
}
CUresult cuCtxSetCurrent(void *ctx) { return ctx ? OK : ERR_INVALID_VALUE; }
CUresult cuCtxSynchronize(void) { return OK; }
CUresult cuStreamSynchronize(void *s) { (void)s; return OK; }

CUresult cuModuleLoadData(void **module, const void *image) {
  const char *text = (const char *)image;
  if (!text || !strstr(text, ".version") || !strstr(text, ".target")) {
    fail("module image is not PTX text", NULL);
    return ERR_INVALID_IMAGE;
  }
  ++modules;
  for (const char *p = strstr(text, ".entry "); p; p = strstr(p + 1, ".entry ")) {
    const char *b = p + 7, *e = b;
    while (*e && *e != '(' && *e != ' ' && *e != '\n')
      ++e;
    if (num_kernels < MAX_KERNELS && (size_t)(e - b) < sizeof kernels[0].name) {
      memcpy(kernels[num_kernels].name, b, (size_t)(e - b));
      kernels[num_kernels].name[e - b] = 0;
      ++num_kernels;
    }
  }
  *module = (void *)(uintptr_t)modules;
  return OK;
}

CUresult cuModuleUnload(void *module) { return module ? OK : ERR_INVALID_VALUE; }

CUresult cuModuleGetFunction(void **fn, void *module, const char *name) {
  (void)module;
  for (int i = 0; i < num_kernels; ++i)
    if (strcmp(kernels[i].name, name) == 0) {
      *fn = &kernels[i];
      ++found;
      return OK;
    }
  fail("kernel not in any loaded module", name);
  return ERR_NOT_FOUND;
}

CUresult cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz,
                        unsigned bx, unsigned by, unsigned bz, unsigned smem,
                        void *stream, void **params, void **extra) {
  (void)smem;
  (void)stream;
  (void)extra;
  Kernel *k = (Kernel *)fn;
  if (k < kernels || k >= kernels + num_kernels) {
    fail("launch of an unknown function", NULL);
    return ERR_INVALID_VALUE;
  }
  if (gx == 0 || gy == 0 || gz == 0 || gx > 0x7fffffffu || gy > 65535 ||
      gz > 65535 || bx == 0 || by == 0 || bz == 0 ||
      (unsigned long)bx * by * bz > 1024) {
    fail("launch configuration out of range", k->name);
    return ERR_INVALID_VALUE;
  }
  if (!params) {
    fail("launch without parameters", k->name);
    return ERR_INVALID_VALUE;
  }
  ++launches;
  return OK;
}

CUresult cuMemAllocManaged(uint64_t *ptr, size_t bytes, unsigned flags) {
  if (flags != 1 || bytes == 0) {
    fail("cuMemAllocManaged arguments", NULL);
    return ERR_INVALID_VALUE;
  }
  void *p = fake_alloc(bytes);
  if (!p)
    return 2; /* CUDA_ERROR_OUT_OF_MEMORY */
  *ptr = (uint64_t)(uintptr_t)p;
  return OK;
}

CUresult cuMemFree_v2(uint64_t ptr) {
  if (fake_free((void *)(uintptr_t)ptr))
    return OK;
  fail("cuMemFree of memory not allocated by cuMemAllocManaged", NULL);
  return ERR_INVALID_VALUE;
}

CUresult cuMemcpyHtoD_v2(uint64_t dst, const void *src, size_t bytes) {
  return fake_upload((void *)(uintptr_t)dst, src, bytes) ? OK
                                                         : ERR_INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult rc, const char **text) {
  *text = rc == OK ? "no error" : "fake driver error";
  return OK;
}
