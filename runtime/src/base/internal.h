//===- internal.h - libmoert internals shared by the source files -*- C++ -*-===//
//
// Not installed and not part of the API. Everything here has hidden
// visibility (the library is built with -fvisibility=hidden; only
// MOERT_API_EXPORT functions are exported).
//
//===----------------------------------------------------------------------===//

#ifndef MOERT_SRC_BASE_INTERNAL_H
#define MOERT_SRC_BASE_INTERNAL_H

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "moert/api.h"

namespace moert {

/// printf into a std::string.
std::string StrFormat(const char *format, ...) MOERT_PRINTF_LIKE(1, 2);

/// An error status with `message` (never NULL for code != OK).
moert_status_t MakeStatus(moert_status_code_t code, std::string_view message);

/// A status equal to `status` with "prefix: " prepended; takes ownership of
/// `status` (returns NULL for NULL).
moert_status_t Annotate(moert_status_t status, std::string_view prefix);

#define MOERT_RETURN_IF_ERROR(expr)                                           \
  do {                                                                        \
    moert_status_t moert_status_tmp_ = (expr);                                \
    if (moert_status_tmp_ != nullptr)                                         \
      return moert_status_tmp_;                                               \
  } while (0)

/// Owns a moert_status_t (frees it unless released).
class StatusPtr {
public:
  explicit StatusPtr(moert_status_t s = nullptr) : s_(s) {}
  ~StatusPtr() { moert_status_free(s_); }
  StatusPtr(const StatusPtr &) = delete;
  StatusPtr &operator=(const StatusPtr &) = delete;
  moert_status_t release() {
    moert_status_t s = s_;
    s_ = nullptr;
    return s;
  }
  moert_status_t get() const { return s_; }
  explicit operator bool() const { return s_ != nullptr; }

private:
  moert_status_t s_;
};

/// 64-byte aligned heap memory (at least one byte is allocated, so the
/// pointer is never NULL on success).
void *AlignedAlloc(size_t bytes);
/// As AlignedAlloc; buffers of 2 MiB or more are 2 MiB aligned and advised
/// to be backed by transparent huge pages (madvise(MADV_HUGEPAGE)), where
/// the system allows it. Kernels that stream weights (decode steps, weight
/// packing) otherwise miss the TLB on every 4 KiB page. Freed by
/// AlignedFree.
void *LargeAlloc(size_t bytes);
void AlignedFree(void *ptr);

struct AlignedDeleter {
  void operator()(void *p) const { AlignedFree(p); }
};
using AlignedBuffer = std::unique_ptr<void, AlignedDeleter>;

/// Checks dtype, rank, shape and computes the element count and byte size.
moert_status_t CheckShape(int32_t dtype, int32_t rank, const int64_t *shape,
                          int64_t *numel, size_t *bytes);

/// "[2, ?, 4]" for descriptions (negative = "?"), "[2, 3]" for shapes.
std::string ShapeString(int32_t rank, const int64_t *shape);

/// A quoted, escaped JSON string.
std::string JsonQuote(std::string_view s);

/// f16/bf16 <-> f32 (round to nearest even, NaN preserved and quietened).
float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);
float BF16ToF32(uint16_t b);
uint16_t F32ToBF16(float f);

//===----------------------------------------------------------------------===//
// Tensors
//===----------------------------------------------------------------------===//

/// Creates a tensor over `data` (not copied). `borrowed` tensors belong to
/// another object (weights) and ignore moert_tensor_release; `release_fn`
/// (if any) is called with (user, release_arg) when an owned tensor is
/// released. The shape must have been checked.
moert_status_t NewTensorOver(int32_t dtype, int32_t rank, const int64_t *shape,
                             void *data, bool borrowed,
                             moert_tensor_release_fn release_fn, void *user,
                             void *release_arg, moert_tensor_t **out);

/// Destroys any tensor, borrowed or not.
void DestroyTensor(moert_tensor_t *tensor);

//===----------------------------------------------------------------------===//
// Files
//===----------------------------------------------------------------------===//

/// A read-only view of a whole file: mmap'd (or empty).
class MappedFile {
public:
  /// Errors name `path`: NOT_FOUND (missing), UNAVAILABLE (other open, stat
  /// or mmap failures), INVALID_ARGUMENT (not a regular file).
  static moert_status_t Open(const char *path, std::unique_ptr<MappedFile> *out);
  ~MappedFile();
  MappedFile(const MappedFile &) = delete;
  MappedFile &operator=(const MappedFile &) = delete;

  const uint8_t *data() const { return data_; }
  size_t size() const { return size_; }

private:
  MappedFile() = default;
  const uint8_t *data_ = nullptr;
  size_t size_ = 0;
  void *map_ = nullptr;
};

} // namespace moert

#endif // MOERT_SRC_BASE_INTERNAL_H
