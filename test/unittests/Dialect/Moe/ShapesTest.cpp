//===- ShapesTest.cpp - capacity and shape rules ---------------------------===//

#include "moe/Dialect/Moe/IR/MoeShapes.h"

#include <gtest/gtest.h>

using namespace mlir;
using namespace mlir::moe;

namespace {

CapacityRule gshard(double factor, int64_t minCapacity = 0, int64_t align = 1) {
  CapacityRule r;
  r.factor = factor;
  r.formula = CapacityFormula::GShard;
  r.minCapacity = minCapacity;
  r.align = align;
  return r;
}

TEST(CapacityTest, GShardRoundsUp) {
  // Switch: T=512, k=1, E=16, cf=1.25 -> ceil(40) = 40.
  EXPECT_EQ(computeCapacity(gshard(1.25), 512, 1, 16), 40);
  // T=7, k=2, E=8, cf=1.0 -> ceil(14/8) = 2.
  EXPECT_EQ(computeCapacity(gshard(1.0), 7, 2, 8), 2);
  // Non-integral: 1.25 * 10 * 1 / 4 = 3.125 -> 4.
  EXPECT_EQ(computeCapacity(gshard(1.25), 10, 1, 4), 4);
}

TEST(CapacityTest, MinimumAndAlignment) {
  EXPECT_EQ(computeCapacity(gshard(1.0, /*min=*/4), 1, 1, 8), 4);
  EXPECT_EQ(computeCapacity(gshard(1.0, 0, /*align=*/8), 100, 1, 8), 16);
  EXPECT_EQ(computeCapacity(gshard(1.0), 0, 1, 8), 0);
}

TEST(CapacityTest, Tutel) {
  CapacityRule r;
  r.formula = CapacityFormula::Tutel;
  r.factor = 1.5;
  // k * floor(1.5 * ceil(10 / 4)) = 2 * floor(4.5) = 8.
  EXPECT_EQ(computeCapacity(r, 10, 2, 4), 8);
}

TEST(CapacityTest, FixedIgnoresTokenCount) {
  CapacityRule r;
  r.formula = CapacityFormula::Fixed;
  r.fixed = 64;
  EXPECT_EQ(computeCapacity(r, 1, 1, 8), 64);
  EXPECT_EQ(computeCapacity(r, 100000, 1, 8), 64);
  r.fixed = 0;
  EXPECT_EQ(computeCapacity(r, 10, 1, 8), std::nullopt);
}

TEST(CapacityTest, RejectsNonsense) {
  EXPECT_EQ(computeCapacity(gshard(0.0), 10, 1, 8), std::nullopt);
  EXPECT_EQ(computeCapacity(gshard(-1.0), 10, 1, 8), std::nullopt);
  EXPECT_EQ(computeCapacity(gshard(1.0), 10, 0, 8), std::nullopt);
  EXPECT_EQ(computeCapacity(gshard(1.0), 10, 1, 0), std::nullopt);
  EXPECT_EQ(computeCapacity(gshard(1.0), -1, 1, 8), std::nullopt);
  // Overflow is reported, not wrapped.
  EXPECT_EQ(computeCapacity(gshard(1.0e30), 1000, 1, 1), std::nullopt);
}

TEST(ShapesTest, MulDims) {
  EXPECT_EQ(mulDims(3, 4), 12);
  EXPECT_TRUE(ShapedType::isDynamic(mulDims(ShapedType::kDynamic, 4)));
  EXPECT_TRUE(dimsCompatible(ShapedType::kDynamic, 5));
  EXPECT_FALSE(dimsCompatible(4, 5));
}

TEST(GroupedTopKTest, DeepSeekV3IsValid) {
  // 256 experts in 8 groups, keep 4 groups, score groups by top-2, k = 8.
  EXPECT_EQ(checkGroupedTopK(256, 8, 4, 2, 8), "");
}

TEST(GroupedTopKTest, Violations) {
  EXPECT_NE(checkGroupedTopK(64, 5, 1, 2, 2).find("must divide"),
            std::string::npos);
  EXPECT_NE(checkGroupedTopK(64, 8, 9, 2, 2).find("top_groups"),
            std::string::npos);
  EXPECT_NE(checkGroupedTopK(64, 8, 1, 2, 9).find("fewer than k"),
            std::string::npos);
  EXPECT_NE(checkGroupedTopK(8, 8, 2, 2, 2).find("group size"),
            std::string::npos);
}

} // namespace
