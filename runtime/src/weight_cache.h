//===- weight_cache.h - kernel-owned copies of a session's weights -------===//
//
// The memory behind the model ABI's moert_weight_cache (model_abi.h): the
// CPU expert kernel keeps the packed panels of its GEMM path here, so that a
// prefill call reads them instead of packing every expert's weights again.
// A session owns one cache. Its constant memory is the session's bound
// weights (immutable: moert_weights_t never changes, converted copies are
// session-owned), so an entry stays valid for the session's lifetime;
// entries are only added, up to a byte budget, and freed with the cache.
//
//===----------------------------------------------------------------------===//

#ifndef MOERT_SRC_WEIGHT_CACHE_H
#define MOERT_SRC_WEIGHT_CACHE_H

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/internal.h"
#include "moert/model_abi.h"

namespace moert {

class WeightCache {
public:
  explicit WeightCache(int64_t budget_bytes) : budget_(budget_bytes) {}
  WeightCache(const WeightCache &) = delete;
  WeightCache &operator=(const WeightCache &) = delete;

  /// Declares [p, p + bytes) constant for the cache's lifetime.
  void AddConstant(const void *p, size_t bytes);

  /// The most bytes the entries may take; entries already made stay.
  void set_budget(int64_t bytes) { budget_.store(bytes); }
  int64_t budget() const { return budget_.load(); }
  /// Bytes held by entries (ready or being written).
  int64_t bytes() const;
  /// Number of ready entries.
  int64_t ready_entries() const;

  /// Calls fn(data, bytes) for every ready entry.
  template <typename Fn> void ForEachReady(Fn fn) const {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto &kv : entries_)
      if (kv.second.ready)
        fn(kv.second.data.get(), kv.second.bytes);
  }

  /// The ABI view handed to the model (valid while the cache lives).
  const moert_weight_cache *abi() const { return &abi_; }

  bool IsConstant(const void *p, size_t bytes) const;
  void *Acquire(const void *key, size_t key_bytes, size_t bytes, int *fill);
  void Publish(void *data);

private:
  struct Entry {
    AlignedBuffer data;
    size_t bytes = 0;
    bool ready = false;
  };

  mutable std::mutex mutex_;
  std::atomic<int64_t> budget_;
  int64_t used_ = 0; // under mutex_
  std::vector<std::pair<uintptr_t, uintptr_t>> constant_; // sorted [begin, end)
  std::unordered_map<std::string, Entry> entries_;
  moert_weight_cache abi_ = {this, &CIsConstant, &CAcquire, &CPublish};

  static int CIsConstant(void *user, const void *p, size_t bytes);
  static void *CAcquire(void *user, const void *key, size_t key_bytes,
                        size_t bytes, int *fill);
  static void CPublish(void *user, void *data);
};

} // namespace moert

#endif // MOERT_SRC_WEIGHT_CACHE_H
