//===- cache_lines_test.cc - sharing cache-line ranges between threads ---===//
//
// The parts of ForEachLineOfPart visit every line of every range once, in
// order, and differ in size by at most one line; LinesOf covers partial
// lines at both ends.
//
//===----------------------------------------------------------------------===//

#include "cache_lines.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace {

using moert::kCacheLine;
using moert::LineRange;

TEST(CacheLinesTest, LinesOfCoverPartialLines) {
  const auto at = [](uintptr_t p) { return reinterpret_cast<const void *>(p); };
  LineRange r = moert::LinesOf(at(0x1000), 64);
  EXPECT_EQ(r.begin, 0x1000u);
  EXPECT_EQ(r.end, 0x1040u);
  r = moert::LinesOf(at(0x1030), 0x20); // the last 16 bytes spill over
  EXPECT_EQ(r.begin, 0x1000u);
  EXPECT_EQ(r.end, 0x1080u);
  r = moert::LinesOf(at(0x103f), 1);
  EXPECT_EQ(r.begin, 0x1000u);
  EXPECT_EQ(r.end, 0x1040u);
}

TEST(CacheLinesTest, PartsVisitEveryLineOnceInOrder) {
  // Line counts 3, 1, 5, 0, 2 at scattered addresses.
  const std::vector<LineRange> ranges = {
      {0x10000, 0x10000 + 3 * kCacheLine}, {0x40000, 0x40000 + kCacheLine},
      {0x20000, 0x20000 + 5 * kCacheLine}, {0x30000, 0x30000},
      {0x50000, 0x50000 + 2 * kCacheLine}};
  std::vector<uintptr_t> all;
  for (const LineRange &r : ranges)
    for (uintptr_t p = r.begin; p < r.end; p += kCacheLine)
      all.push_back(p);
  ASSERT_EQ(all.size(), 11u);
  for (int64_t parts : {1, 2, 3, 4, 5, 11, 12, 16}) {
    std::vector<uintptr_t> seen;
    size_t smallest = all.size(), largest = 0;
    for (int64_t part = 0; part < parts; ++part) {
      const size_t before = seen.size();
      moert::ForEachLineOfPart(ranges, part, parts,
                               [&](uintptr_t line) { seen.push_back(line); });
      smallest = std::min(smallest, seen.size() - before);
      largest = std::max(largest, seen.size() - before);
    }
    EXPECT_EQ(seen, all) << parts << " parts";
    EXPECT_LE(largest - smallest, 1u) << parts << " parts";
  }
  // No ranges, or only empty ones: nothing to visit.
  int calls = 0;
  moert::ForEachLineOfPart({}, 0, 2, [&](uintptr_t) { ++calls; });
  moert::ForEachLineOfPart({{0x100, 0x100}}, 1, 2, [&](uintptr_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

} // namespace
