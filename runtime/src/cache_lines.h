//===- cache_lines.h - sharing cache-line ranges between threads --------===//
//
// moert_session_evict_weights flushes every line of the session's weights
// on all of its threads: each thread takes an equal share of the lines of
// the weights' concatenated ranges.
//
//===----------------------------------------------------------------------===//

#ifndef MOERT_SRC_CACHE_LINES_H
#define MOERT_SRC_CACHE_LINES_H

#include <algorithm>
#include <cstdint>
#include <vector>

namespace moert {

constexpr uintptr_t kCacheLine = 64;

/// Whole cache lines [begin, end) (both multiples of kCacheLine).
struct LineRange {
  uintptr_t begin, end;
};

/// The lines holding bytes [data, data + bytes).
inline LineRange LinesOf(const void *data, size_t bytes) {
  const uintptr_t p = reinterpret_cast<uintptr_t>(data);
  return {p & ~(kCacheLine - 1), (p + bytes + kCacheLine - 1) & ~(kCacheLine - 1)};
}

/// Calls fn(line address) for every line of part `part` of `parts` equal
/// shares (whole lines) of the ranges' concatenation. The parts of
/// 0..parts-1 visit every line once, in order.
template <typename Fn>
void ForEachLineOfPart(const std::vector<LineRange> &ranges, int64_t part,
                       int64_t parts, Fn fn) {
  uintptr_t lines = 0;
  for (const LineRange &r : ranges)
    lines += (r.end - r.begin) / kCacheLine;
  const auto share = [&](int64_t p) {
    return lines / static_cast<uintptr_t>(parts) * static_cast<uintptr_t>(p) +
           lines % static_cast<uintptr_t>(parts) * static_cast<uintptr_t>(p) /
               static_cast<uintptr_t>(parts);
  };
  // Lines [lo, hi) of the concatenation; `at` is where a range starts.
  const uintptr_t lo = share(part), hi = share(part + 1);
  uintptr_t at = 0;
  for (const LineRange &r : ranges) {
    if (at >= hi)
      break;
    const uintptr_t n = (r.end - r.begin) / kCacheLine;
    for (uintptr_t i = std::max(lo, at) - at; i < n && at + i < hi; ++i)
      fn(r.begin + i * kCacheLine);
    at += n;
  }
}

} // namespace moert

#endif // MOERT_SRC_CACHE_LINES_H
