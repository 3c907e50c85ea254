//===- weight_cache.cc - kernel-owned copies of a session's weights ------===//

#include "weight_cache.h"

#include <algorithm>
#include <new>

namespace moert {

void WeightCache::AddConstant(const void *p, size_t bytes) {
  if (!p || bytes == 0)
    return;
  const auto begin = reinterpret_cast<uintptr_t>(p);
  if (begin + bytes < begin) // wraps: not a real buffer
    return;
  std::lock_guard<std::mutex> lock(mutex_);
  constant_.emplace_back(begin, begin + bytes);
  // Sorted and coalesced, so that one range holds any span inside the
  // union of overlapping or touching ones.
  std::sort(constant_.begin(), constant_.end());
  size_t n = 0;
  for (size_t i = 1; i < constant_.size(); ++i) {
    if (constant_[i].first <= constant_[n].second)
      constant_[n].second = std::max(constant_[n].second, constant_[i].second);
    else
      constant_[++n] = constant_[i];
  }
  constant_.resize(n + 1);
}

int64_t WeightCache::bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return used_;
}

int64_t WeightCache::ready_entries() const {
  std::lock_guard<std::mutex> lock(mutex_);
  int64_t n = 0;
  for (const auto &kv : entries_)
    n += kv.second.ready;
  return n;
}

bool WeightCache::IsConstant(const void *p, size_t bytes) const {
  if (!p || bytes == 0)
    return false;
  const auto begin = reinterpret_cast<uintptr_t>(p);
  const uintptr_t end = begin + bytes;
  if (end < begin)
    return false;
  std::lock_guard<std::mutex> lock(mutex_);
  // The (coalesced) range starting at or before p must hold [p, end).
  auto it = std::upper_bound(
      constant_.begin(), constant_.end(), std::make_pair(begin, UINTPTR_MAX));
  if (it == constant_.begin())
    return false;
  --it;
  return it->first <= begin && end <= it->second;
}

void *WeightCache::Acquire(const void *key, size_t key_bytes, size_t bytes,
                           int *fill) {
  *fill = 0;
  if (!key || key_bytes == 0)
    return nullptr;
  std::string k(static_cast<const char *>(key), key_bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(k);
  if (it != entries_.end())
    return it->second.ready ? it->second.data.get() : nullptr;
  if (bytes == 0 || bytes > static_cast<size_t>(INT64_MAX) ||
      static_cast<int64_t>(bytes) > budget_.load() - used_)
    return nullptr;
  // Allocated under the lock: entries are made once per expert and session,
  // and a second thread asking for the same key must see this one.
  void *data = LargeAlloc(bytes);
  if (!data)
    return nullptr;
  Entry e;
  e.data.reset(data);
  e.bytes = bytes;
  try {
    entries_.emplace(std::move(k), std::move(e));
  } catch (const std::bad_alloc &) {
    return nullptr; // e frees the data
  }
  used_ += static_cast<int64_t>(bytes);
  *fill = 1;
  return data;
}

void WeightCache::Publish(void *data) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto &kv : entries_)
    if (kv.second.data.get() == data) {
      kv.second.ready = true;
      return;
    }
}

int WeightCache::CIsConstant(void *user, const void *p, size_t bytes) {
  return static_cast<const WeightCache *>(user)->IsConstant(p, bytes) ? 1 : 0;
}

void *WeightCache::CAcquire(void *user, const void *key, size_t key_bytes,
                            size_t bytes, int *fill) {
  // Called from C kernels: nothing may escape.
  try {
    return static_cast<WeightCache *>(user)->Acquire(key, key_bytes, bytes, fill);
  } catch (...) {
    *fill = 0;
    return nullptr;
  }
}

void WeightCache::CPublish(void *user, void *data) {
  static_cast<WeightCache *>(user)->Publish(data);
}

} // namespace moert
