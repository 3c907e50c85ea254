//===- device.cc - CUDA / HIP devices and the mgpu* host ABI --------------===//
//
// Implements moert/device.h and the host functions GPU model libraries call:
// the `mgpu*` ABI of MLIR's gpu-to-llvm (module load, kernel lookup and
// launch, streams) and the generic allocation functions of
// finalize-memref-to-llvm{use-generic-functions} (every buffer of a GPU
// model is managed memory). Both vendors' APIs are loaded with dlopen, so
// libmoert builds, loads and runs its CPU paths on machines with neither;
// their declarations are written out here (the few types are opaque
// handles and ints), so no vendor header is needed either.
//
// Buffers freed by a model's host code are kept for reuse by size (a
// model's calls allocate the same intermediates every time; a fresh managed
// block would cost the allocation, a synchronising free and the GPU page
// faults that populate it) until moert_device_trim, which sessions call when
// they are destroyed. MOERT_DEVICE_POOL=0 turns the reuse off;
// MOERT_DEVICE_POOL_MB caps the bytes kept (default 4096).
//
// MOERT_DEVICE_PROFILE=1 times every kernel from its launch to the
// synchronisation that follows it (the lowering synchronises after each
// launch) and prints a per-kernel table to stderr at exit.
//
// Failure policy: nothing aborts. The first error is recorded, every later
// launch is skipped, allocation falls back to zeroed host memory (so
// host-side code the model runs stays well defined), and the session turns
// the recorded error into its status.
//
//===----------------------------------------------------------------------===//

#include "moert/device.h"

#include "base/internal.h"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

//===----------------------------------------------------------------------===//
// Vendor APIs (the subset used), resolved with dlsym
//===----------------------------------------------------------------------===//

using Handle = void *;

/// One vendor's entry points, normalised: every function returns 0 on
/// success and a vendor error code otherwise.
struct Api {
  moert_device_kind_t kind = MOERT_DEVICE_CPU;
  const char *vendor = "";
  void *lib = nullptr;
  // CUDA driver API
  int (*cuInit)(unsigned) = nullptr;
  int (*cuDeviceGetCount)(int *) = nullptr;
  int (*cuDeviceGet)(int *, int) = nullptr;
  int (*cuDeviceGetName)(char *, int, int) = nullptr;
  int (*cuDevicePrimaryCtxRetain)(Handle *, int) = nullptr;
  int (*cuCtxSetCurrent)(Handle) = nullptr;
  int (*cuCtxSynchronize)() = nullptr;
  int (*cuModuleLoadData)(Handle *, const void *) = nullptr;
  int (*cuModuleUnload)(Handle) = nullptr;
  int (*cuModuleGetFunction)(Handle *, Handle, const char *) = nullptr;
  int (*cuLaunchKernel)(Handle, unsigned, unsigned, unsigned, unsigned,
                        unsigned, unsigned, unsigned, Handle, void **,
                        void **) = nullptr;
  int (*cuStreamSynchronize)(Handle) = nullptr;
  int (*cuMemAllocManaged)(uint64_t *, size_t, unsigned) = nullptr;
  int (*cuMemFree)(uint64_t) = nullptr;
  // Optional (without them, uploads are host copies into managed memory).
  int (*cuMemcpyHtoD)(uint64_t, const void *, size_t) = nullptr;
  int (*cuMemPrefetchAsync)(uint64_t, size_t, int, Handle) = nullptr;
  int device = 0; // the CUdevice / HIP device of device 0
  int (*cuGetErrorString)(int, const char **) = nullptr;
  // HIP runtime API
  int (*hipInit)(unsigned) = nullptr;
  int (*hipGetDeviceCount)(int *) = nullptr;
  int (*hipSetDevice)(int) = nullptr;
  int (*hipDeviceSynchronize)() = nullptr;
  int (*hipModuleLoadData)(Handle *, const void *) = nullptr;
  int (*hipModuleUnload)(Handle) = nullptr;
  int (*hipModuleGetFunction)(Handle *, Handle, const char *) = nullptr;
  int (*hipModuleLaunchKernel)(Handle, unsigned, unsigned, unsigned, unsigned,
                               unsigned, unsigned, unsigned, Handle, void **,
                               void **) = nullptr;
  int (*hipStreamSynchronize)(Handle) = nullptr;
  int (*hipMallocManaged)(void **, size_t, unsigned) = nullptr;
  int (*hipFree)(void *) = nullptr;
  int (*hipMemcpyHtoD)(void *, void *, size_t) = nullptr;
  int (*hipMemPrefetchAsync)(const void *, size_t, int, Handle) = nullptr;
  const char *(*hipGetErrorString)(int) = nullptr;
};

/// Process-wide device state.
struct State {
  std::mutex mu;
  Api api;                  // the active vendor (kind CPU: none)
  bool ready = false;       // api loaded and device 0 opened
  Handle context = nullptr; // CUDA primary context
  std::string name;
  std::string error;        // first recorded error ("" = none)
  std::string init_error[3];
  // Live managed allocations and their sizes.
  std::unordered_map<void *, size_t> device_blocks;
  // Freed blocks kept for reuse, by size.
  std::unordered_multimap<size_t, void *> pool;
  size_t pool_bytes = 0;
  bool pool_enabled = true;
  size_t pool_limit = size_t{4096} << 20;
  // MOERT_DEVICE_PROFILE: kernel names, the launch awaiting its
  // synchronisation, and per-kernel totals.
  bool profile = false;
  std::unordered_map<Handle, std::string> kernel_names;
  std::unordered_map<Handle, int> module_numbers; // in load order
  Handle pending_kernel = nullptr;
  std::chrono::steady_clock::time_point pending_start;
  struct KernelTime {
    int64_t launches = 0;
    double seconds = 0;
    double fastest = 0; // the shortest launch (steady state, no first-touch)
  };
  std::map<std::string, KernelTime> kernel_times;
  int64_t allocations = 0, pool_hits = 0;
};

bool EnvFlag(const char *name, bool otherwise) {
  const char *v = std::getenv(name);
  if (!v || !*v)
    return otherwise;
  return std::strcmp(v, "0") != 0;
}

void PrintProfile();

State &S() {
  static State *state = [] {
    auto *st = new State(); // never destroyed: used from atexit paths
    st->pool_enabled = EnvFlag("MOERT_DEVICE_POOL", true);
    if (const char *mb = std::getenv("MOERT_DEVICE_POOL_MB")) {
      char *end = nullptr;
      unsigned long long v = std::strtoull(mb, &end, 10);
      if (*mb && end && *end == '\0' && v <= (1ull << 30))
        st->pool_limit = static_cast<size_t>(v) << 20;
      else
        std::fprintf(stderr,
                     "moert: ignoring MOERT_DEVICE_POOL_MB='%s' (expected a "
                     "number of MiB up to 2^30)\n",
                     mb);
    }
    st->profile = EnvFlag("MOERT_DEVICE_PROFILE", false);
    if (st->profile)
      std::atexit(PrintProfile);
    return st;
  }();
  return *state;
}

/// The per-kernel table of MOERT_DEVICE_PROFILE, longest total first.
void PrintProfile() {
  State &s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  std::vector<std::pair<std::string, State::KernelTime>> rows(
      s.kernel_times.begin(), s.kernel_times.end());
  std::sort(rows.begin(), rows.end(), [](const auto &a, const auto &b) {
    return a.second.seconds > b.second.seconds;
  });
  double total = 0;
  for (const auto &r : rows)
    total += r.second.seconds;
  std::fprintf(stderr,
               "moert device profile (host clock, launch to "
               "synchronisation):\n  %-40s %9s %11s %10s %10s\n",
               "kernel", "launches", "total ms", "mean us", "min us");
  for (const auto &r : rows)
    std::fprintf(stderr, "  %-40s %9lld %11.3f %10.1f %10.1f\n",
                 r.first.c_str(), static_cast<long long>(r.second.launches),
                 r.second.seconds * 1e3,
                 r.second.seconds * 1e6 / double(r.second.launches),
                 r.second.fastest * 1e6);
  std::fprintf(stderr,
               "  all kernels: %.3f ms; buffers: %lld requests, %lld reused\n",
               total * 1e3, static_cast<long long>(s.allocations),
               static_cast<long long>(s.pool_hits));
}

void RecordLocked(State &s, const std::string &message) {
  if (s.error.empty())
    s.error = message;
}

void Record(const std::string &message) {
  State &s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  RecordLocked(s, message);
}

std::string VendorError(const Api &api, int code) {
  const char *text = nullptr;
  if (api.kind == MOERT_DEVICE_CUDA && api.cuGetErrorString)
    api.cuGetErrorString(code, &text);
  else if (api.kind == MOERT_DEVICE_ROCM && api.hipGetErrorString)
    text = api.hipGetErrorString(code);
  return moert::StrFormat("%s error %d%s%s", api.vendor, code,
                          text ? ": " : "", text ? text : "");
}

template <typename Fn> bool Resolve(void *lib, const char *name, Fn *out) {
  *out = reinterpret_cast<Fn>(dlsym(lib, name));
  return *out != nullptr;
}

/// Loads and initialises `kind`'s API and device 0; "" or the reason.
std::string LoadLocked(State &s, moert_device_kind_t kind) {
  Api api;
  api.kind = kind;
  const char *lib_name =
      kind == MOERT_DEVICE_CUDA ? "libcuda.so.1" : "libamdhip64.so";
  api.vendor = kind == MOERT_DEVICE_CUDA ? "CUDA" : "HIP";
  dlerror();
  api.lib = dlopen(lib_name, RTLD_NOW | RTLD_LOCAL);
  if (!api.lib) {
    const char *err = dlerror();
    return moert::StrFormat(
        "the %s %s is not available (%s): this machine has no %s GPU "
        "software; run the model on a machine with the %s or compile it "
        "with --target=cpu",
        api.vendor, kind == MOERT_DEVICE_CUDA ? "driver" : "runtime",
        err ? err : lib_name, kind == MOERT_DEVICE_CUDA ? "NVIDIA" : "AMD",
        kind == MOERT_DEVICE_CUDA ? "NVIDIA driver" : "ROCm runtime");
  }
  bool ok = true;
  int count = 0, rc = 0;
  if (kind == MOERT_DEVICE_CUDA) {
    ok &= Resolve(api.lib, "cuInit", &api.cuInit);
    ok &= Resolve(api.lib, "cuDeviceGetCount", &api.cuDeviceGetCount);
    ok &= Resolve(api.lib, "cuDeviceGet", &api.cuDeviceGet);
    ok &= Resolve(api.lib, "cuDeviceGetName", &api.cuDeviceGetName);
    ok &= Resolve(api.lib, "cuDevicePrimaryCtxRetain",
                  &api.cuDevicePrimaryCtxRetain);
    ok &= Resolve(api.lib, "cuCtxSetCurrent", &api.cuCtxSetCurrent);
    ok &= Resolve(api.lib, "cuCtxSynchronize", &api.cuCtxSynchronize);
    ok &= Resolve(api.lib, "cuModuleLoadData", &api.cuModuleLoadData);
    ok &= Resolve(api.lib, "cuModuleUnload", &api.cuModuleUnload);
    ok &= Resolve(api.lib, "cuModuleGetFunction", &api.cuModuleGetFunction);
    ok &= Resolve(api.lib, "cuLaunchKernel", &api.cuLaunchKernel);
    ok &= Resolve(api.lib, "cuStreamSynchronize", &api.cuStreamSynchronize);
    ok &= Resolve(api.lib, "cuMemAllocManaged", &api.cuMemAllocManaged);
    ok &= Resolve(api.lib, "cuMemFree_v2", &api.cuMemFree);
    ok &= Resolve(api.lib, "cuGetErrorString", &api.cuGetErrorString);
    Resolve(api.lib, "cuMemcpyHtoD_v2", &api.cuMemcpyHtoD);
    Resolve(api.lib, "cuMemPrefetchAsync", &api.cuMemPrefetchAsync);
    if (!ok)
      return "the CUDA driver library lacks a required function (driver too "
             "old?)";
    if ((rc = api.cuInit(0)) != 0)
      return "cuInit failed: " + VendorError(api, rc);
    if ((rc = api.cuDeviceGetCount(&count)) != 0 || count <= 0)
      return "no CUDA device is visible" +
             (rc ? " (" + VendorError(api, rc) + ")" : std::string());
    int device = 0;
    if ((rc = api.cuDeviceGet(&device, 0)) != 0)
      return "cuDeviceGet failed: " + VendorError(api, rc);
    api.device = device;
    char name[256] = {0};
    api.cuDeviceGetName(name, sizeof name - 1, device);
    s.name = name;
    if ((rc = api.cuDevicePrimaryCtxRetain(&s.context, device)) != 0)
      return "cuDevicePrimaryCtxRetain failed: " + VendorError(api, rc);
  } else {
    ok &= Resolve(api.lib, "hipInit", &api.hipInit);
    ok &= Resolve(api.lib, "hipGetDeviceCount", &api.hipGetDeviceCount);
    ok &= Resolve(api.lib, "hipSetDevice", &api.hipSetDevice);
    ok &= Resolve(api.lib, "hipDeviceSynchronize", &api.hipDeviceSynchronize);
    ok &= Resolve(api.lib, "hipModuleLoadData", &api.hipModuleLoadData);
    ok &= Resolve(api.lib, "hipModuleUnload", &api.hipModuleUnload);
    ok &= Resolve(api.lib, "hipModuleGetFunction", &api.hipModuleGetFunction);
    ok &= Resolve(api.lib, "hipModuleLaunchKernel", &api.hipModuleLaunchKernel);
    ok &= Resolve(api.lib, "hipStreamSynchronize", &api.hipStreamSynchronize);
    ok &= Resolve(api.lib, "hipMallocManaged", &api.hipMallocManaged);
    ok &= Resolve(api.lib, "hipFree", &api.hipFree);
    ok &= Resolve(api.lib, "hipGetErrorString", &api.hipGetErrorString);
    Resolve(api.lib, "hipMemcpyHtoD", &api.hipMemcpyHtoD);
    Resolve(api.lib, "hipMemPrefetchAsync", &api.hipMemPrefetchAsync);
    if (!ok)
      return "the HIP runtime library lacks a required function";
    if ((rc = api.hipInit(0)) != 0)
      return "hipInit failed: " + VendorError(api, rc);
    if ((rc = api.hipGetDeviceCount(&count)) != 0 || count <= 0)
      return "no ROCm device is visible" +
             (rc ? " (" + VendorError(api, rc) + ")" : std::string());
    if ((rc = api.hipSetDevice(0)) != 0)
      return "hipSetDevice failed: " + VendorError(api, rc);
    s.name = "AMD GPU 0";
  }
  s.api = api;
  s.ready = true;
  return "";
}

/// Makes `kind` the active device; "" or the reason it cannot be.
std::string EnsureLocked(State &s, moert_device_kind_t kind) {
  if (s.ready)
    return s.api.kind == kind
               ? ""
               : moert::StrFormat("a %s device is already active in this "
                                  "process; CUDA and ROCm model libraries "
                                  "cannot be mixed",
                                  s.api.vendor);
  std::string &cached = s.init_error[kind];
  if (!cached.empty())
    return cached;
  cached = LoadLocked(s, kind);
  return cached;
}

/// Binds the CUDA context to the calling thread (cheap, idempotent).
void BindThread(State &s) {
  if (s.ready && s.api.kind == MOERT_DEVICE_CUDA)
    s.api.cuCtxSetCurrent(s.context);
}

/// Which vendor a device image is for: PTX text, CUDA ELF (EM_CUDA = 190),
/// CUDA fatbinary, AMDGPU ELF (EM_AMDGPU = 224) or a clang offload bundle.
moert_device_kind_t ImageKind(const void *data, size_t size) {
  const auto *p = static_cast<const unsigned char *>(data);
  if (size >= 20 && std::memcmp(p, "\x7f" "ELF", 4) == 0) {
    unsigned machine = p[18] | (p[19] << 8);
    return machine == 224 ? MOERT_DEVICE_ROCM : MOERT_DEVICE_CUDA;
  }
  if (size >= 24 && std::memcmp(p, "__CLANG_OFFLOAD_BUNDLE__", 24) == 0)
    return MOERT_DEVICE_ROCM;
  return MOERT_DEVICE_CUDA; // PTX text or fatbinary
}

Handle LoadModule(const void *data, size_t size) {
  State &s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  moert_device_kind_t kind = ImageKind(data, size);
  std::string err = EnsureLocked(s, kind);
  if (!err.empty()) {
    RecordLocked(s, err);
    return nullptr;
  }
  BindThread(s);
  Handle module = nullptr;
  int rc = kind == MOERT_DEVICE_CUDA ? s.api.cuModuleLoadData(&module, data)
                                     : s.api.hipModuleLoadData(&module, data);
  if (rc != 0) {
    RecordLocked(s, "loading the model's device code failed: " +
                        VendorError(s.api, rc) +
                        (kind == MOERT_DEVICE_CUDA
                             ? " (is the GPU older than the compiled chip?)"
                             : ""));
    return nullptr;
  }
  if (s.profile)
    s.module_numbers.emplace(module, static_cast<int>(s.module_numbers.size()));
  return module;
}

} // namespace

//===----------------------------------------------------------------------===//
// moert/device.h
//===----------------------------------------------------------------------===//

extern "C" {

MOERT_API_EXPORT int moert_device_kind_from_name(const char *name) {
  if (!name)
    return -1;
  if (std::strcmp(name, "cpu") == 0)
    return MOERT_DEVICE_CPU;
  if (std::strcmp(name, "cuda") == 0)
    return MOERT_DEVICE_CUDA;
  if (std::strcmp(name, "rocm") == 0)
    return MOERT_DEVICE_ROCM;
  return -1;
}

MOERT_API_EXPORT moert_status_t moert_device_init(moert_device_kind_t kind) {
  if (kind == MOERT_DEVICE_CPU)
    return nullptr;
  if (kind != MOERT_DEVICE_CUDA && kind != MOERT_DEVICE_ROCM)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "unknown device kind %d", static_cast<int>(kind));
  State &s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  std::string err = EnsureLocked(s, kind);
  if (!err.empty())
    return moert::MakeStatus(MOERT_STATUS_UNAVAILABLE, err);
  return nullptr;
}

MOERT_API_EXPORT moert_status_t moert_device_status(void) {
  State &s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.error.empty())
    return nullptr;
  return moert::MakeStatus(MOERT_STATUS_UNAVAILABLE, s.error);
}

MOERT_API_EXPORT void moert_device_clear_error(void) {
  State &s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  s.error.clear();
}

namespace {

/// Returns `ptr` (a managed block) to the vendor.
void FreeBlockLocked(State &s, void *ptr) {
  if (s.api.kind == MOERT_DEVICE_CUDA)
    s.api.cuMemFree(static_cast<uint64_t>(reinterpret_cast<uintptr_t>(ptr)));
  else
    s.api.hipFree(ptr);
}

void TrimLocked(State &s) {
  if (s.pool.empty())
    return;
  BindThread(s);
  for (auto &entry : s.pool)
    FreeBlockLocked(s, entry.second);
  s.pool.clear();
  s.pool_bytes = 0;
}

} // namespace

MOERT_API_EXPORT void *moert_device_alloc(size_t bytes) {
  State &s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.ready)
    return nullptr;
  size_t n = bytes ? bytes : 1;
  ++s.allocations;
  auto cached = s.pool.find(n);
  if (cached != s.pool.end()) {
    void *p = cached->second;
    s.pool.erase(cached);
    s.pool_bytes -= n;
    s.device_blocks.emplace(p, n);
    ++s.pool_hits;
    return p;
  }
  BindThread(s);
  auto allocate = [&](void **p) {
    if (s.api.kind == MOERT_DEVICE_CUDA) {
      uint64_t ptr = 0;
      int rc = s.api.cuMemAllocManaged(&ptr, n, /*CU_MEM_ATTACH_GLOBAL=*/1);
      *p = reinterpret_cast<void *>(static_cast<uintptr_t>(ptr));
      return rc;
    }
    return s.api.hipMallocManaged(p, n, /*hipMemAttachGlobal=*/1);
  };
  void *p = nullptr;
  int rc = allocate(&p);
  if ((rc != 0 || !p) && !s.pool.empty()) {
    // Out of memory with blocks kept for reuse: give them back, try again.
    TrimLocked(s);
    p = nullptr;
    rc = allocate(&p);
  }
  if (rc != 0 || !p) {
    RecordLocked(s, moert::StrFormat("allocating %zu bytes of device memory "
                                     "failed: ",
                                     n) +
                        VendorError(s.api, rc));
    return nullptr;
  }
  s.device_blocks.emplace(p, n);
  return p;
}

MOERT_API_EXPORT void moert_device_free(void *ptr) {
  if (!ptr)
    return;
  State &s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.device_blocks.find(ptr);
  if (it == s.device_blocks.end()) {
    std::free(ptr); // host fallback of _mlir_memref_to_llvm_alloc
    return;
  }
  size_t n = it->second;
  s.device_blocks.erase(it);
  if (s.pool_enabled && s.pool_bytes + n <= s.pool_limit) {
    s.pool.emplace(n, ptr);
    s.pool_bytes += n;
    return;
  }
  BindThread(s);
  FreeBlockLocked(s, ptr);
}

MOERT_API_EXPORT void moert_device_upload(void *dst, const void *src,
                                          size_t bytes) {
  if (!bytes)
    return;
  State &s = S();
  std::unique_lock<std::mutex> lock(s.mu);
  if (!s.ready || !s.device_blocks.count(dst)) {
    lock.unlock();
    std::memcpy(dst, src, bytes); // host fallback memory
    return;
  }
  BindThread(s);
  // A DMA copy writes device-resident pages where they are; a host copy
  // would first fault every page over to the host (a block reused from the
  // pool lives on the GPU), and the kernels would fault them back.
  int rc = -1;
  if (s.api.kind == MOERT_DEVICE_CUDA && s.api.cuMemcpyHtoD)
    rc = s.api.cuMemcpyHtoD(
        static_cast<uint64_t>(reinterpret_cast<uintptr_t>(dst)), src, bytes);
  else if (s.api.kind == MOERT_DEVICE_ROCM && s.api.hipMemcpyHtoD)
    rc = s.api.hipMemcpyHtoD(dst, const_cast<void *>(src), bytes);
  if (rc == 0)
    return;
  lock.unlock();
  std::memcpy(dst, src, bytes);
  lock.lock();
  // Best effort: move the pages in bulk ahead of the kernels instead of
  // page by page on their first touch.
  if (s.api.kind == MOERT_DEVICE_CUDA && s.api.cuMemPrefetchAsync)
    s.api.cuMemPrefetchAsync(
        static_cast<uint64_t>(reinterpret_cast<uintptr_t>(dst)), bytes,
        s.api.device, nullptr);
  else if (s.api.kind == MOERT_DEVICE_ROCM && s.api.hipMemPrefetchAsync)
    s.api.hipMemPrefetchAsync(dst, bytes, s.api.device, nullptr);
}

MOERT_API_EXPORT void moert_device_trim(void) {
  State &s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  TrimLocked(s);
}

MOERT_API_EXPORT moert_status_t moert_device_synchronize(void) {
  State &s = S();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.ready) {
      BindThread(s);
      int rc = s.api.kind == MOERT_DEVICE_CUDA ? s.api.cuCtxSynchronize()
                                               : s.api.hipDeviceSynchronize();
      if (rc != 0)
        RecordLocked(s, "device synchronisation failed: " +
                            VendorError(s.api, rc));
    }
  }
  return moert_device_status();
}

MOERT_API_EXPORT const char *moert_device_name(void) {
  State &s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.ready ? s.name.c_str() : "";
}

//===----------------------------------------------------------------------===//
// The host ABI of MLIR's gpu-to-llvm and finalize-memref-to-llvm
//===----------------------------------------------------------------------===//

MOERT_API_EXPORT void *mgpuModuleLoad(void *data, size_t size) {
  return LoadModule(data, size);
}

/// PTX (or GCN assembly) text; the CUDA driver JIT-compiles PTX for the
/// device at hand, which is what lets sm_80 PTX run on sm_90.
MOERT_API_EXPORT void *mgpuModuleLoadJIT(void *data, int optLevel) {
  (void)optLevel; // the driver's default JIT level is already -O3
  const char *text = static_cast<const char *>(data);
  size_t size = std::strlen(text);
  if (std::strstr(text, ".amdgcn_target") || std::strstr(text, "amdhsa")) {
    Record("GCN assembly cannot be loaded; compile ROCm models with "
           "format=bin (HSACO)");
    return nullptr;
  }
  return LoadModule(data, size + 1);
}

MOERT_API_EXPORT void mgpuModuleUnload(void *module) {
  State &s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!module || !s.ready)
    return;
  BindThread(s);
  if (s.api.kind == MOERT_DEVICE_CUDA)
    s.api.cuModuleUnload(module);
  else
    s.api.hipModuleUnload(module);
}

MOERT_API_EXPORT void *mgpuModuleGetFunction(void *module, const char *name) {
  State &s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!module || !s.ready)
    return nullptr;
  BindThread(s);
  Handle fn = nullptr;
  int rc = s.api.kind == MOERT_DEVICE_CUDA
               ? s.api.cuModuleGetFunction(&fn, module, name)
               : s.api.hipModuleGetFunction(&fn, module, name);
  if (rc != 0) {
    RecordLocked(s, moert::StrFormat("kernel '%s' not found: ", name) +
                        VendorError(s.api, rc));
    return nullptr;
  }
  if (s.profile) {
    // Outlined kernels often share a name across modules: add the module.
    auto number = s.module_numbers.find(module);
    s.kernel_names.emplace(
        fn, moert::StrFormat("%s (module %d)", name,
                             number == s.module_numbers.end() ? -1
                                                              : number->second));
  }
  return fn;
}

/// Launches go to the device's default stream: a model's kernels run in
/// order and the host waits for each (the lowering synchronises).
MOERT_API_EXPORT void *mgpuStreamCreate(void) { return nullptr; }
MOERT_API_EXPORT void mgpuStreamDestroy(void *stream) { (void)stream; }

MOERT_API_EXPORT void mgpuStreamSynchronize(void *stream) {
  State &s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.ready || !s.error.empty())
    return;
  BindThread(s);
  int rc = s.api.kind == MOERT_DEVICE_CUDA
               ? s.api.cuStreamSynchronize(stream)
               : s.api.hipStreamSynchronize(stream);
  if (rc != 0)
    RecordLocked(s, "a model kernel failed: " + VendorError(s.api, rc));
  if (s.profile && s.pending_kernel) {
    std::chrono::duration<double> d =
        std::chrono::steady_clock::now() - s.pending_start;
    auto name = s.kernel_names.find(s.pending_kernel);
    auto &t = s.kernel_times[name == s.kernel_names.end() ? std::string("?")
                                                          : name->second];
    if (t.launches == 0 || d.count() < t.fastest)
      t.fastest = d.count();
    ++t.launches;
    t.seconds += d.count();
    s.pending_kernel = nullptr;
  }
}

MOERT_API_EXPORT void mgpuLaunchKernel(void *function, intptr_t gridX,
                                       intptr_t gridY, intptr_t gridZ,
                                       intptr_t blockX, intptr_t blockY,
                                       intptr_t blockZ, int32_t smem,
                                       void *stream, void **params,
                                       void **extra, size_t paramsCount) {
  (void)paramsCount;
  State &s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  // After an error (or without a device) nothing runs: the session reports
  // the recorded error instead of results.
  if (!s.ready || !s.error.empty() || !function)
    return;
  // An empty grid (zero tokens) is no work, not an error.
  if (gridX <= 0 || gridY <= 0 || gridZ <= 0)
    return;
  BindThread(s);
  if (s.profile) {
    s.pending_kernel = function;
    s.pending_start = std::chrono::steady_clock::now();
  }
  auto u = [](intptr_t v) { return static_cast<unsigned>(v); };
  int rc = s.api.kind == MOERT_DEVICE_CUDA
               ? s.api.cuLaunchKernel(function, u(gridX), u(gridY), u(gridZ),
                                      u(blockX), u(blockY), u(blockZ),
                                      static_cast<unsigned>(smem), stream,
                                      params, extra)
               : s.api.hipModuleLaunchKernel(
                     function, u(gridX), u(gridY), u(gridZ), u(blockX),
                     u(blockY), u(blockZ), static_cast<unsigned>(smem), stream,
                     params, extra);
  if (rc != 0)
    RecordLocked(s, "launching a model kernel failed: " +
                        VendorError(s.api, rc));
}

MOERT_API_EXPORT void *_mlir_memref_to_llvm_alloc(size_t bytes) {
  if (void *p = moert_device_alloc(bytes))
    return p;
  // No device (already recorded) or exhausted: zeroed host memory keeps
  // the model's host code defined; its launches are skipped.
  Record("device memory is unavailable");
  return std::calloc(bytes ? bytes : 1, 1);
}

MOERT_API_EXPORT void *_mlir_memref_to_llvm_aligned_alloc(size_t alignment,
                                                         size_t bytes) {
  // Managed allocations are at least 256-byte aligned.
  if (alignment <= 256)
    return _mlir_memref_to_llvm_alloc(bytes);
  Record(moert::StrFormat("unsupported buffer alignment %zu", alignment));
  return std::calloc(bytes ? bytes : 1, 1);
}

MOERT_API_EXPORT void _mlir_memref_to_llvm_free(void *ptr) {
  moert_device_free(ptr);
}

} // extern "C"
