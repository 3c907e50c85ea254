//===- cpu_kernels_test.cc - Unit tests of the CPU MoE kernels -*- C++ -*-===//
//
// Small hand-built descriptors with expected outputs worked out by hand from
// docs/Semantics.md. Where an expected weight involves exp, the test spells
// out the same f32 operations the specification prescribes, so the
// comparison is exact (EXPECT_EQ) rather than approximate.
//
//===----------------------------------------------------------------------===//

#include "moert/cpu_kernels.h"

#include "../src/cpu/dtype.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kSentinelW = 777.0f;
constexpr int32_t kSentinelE = -7;

template <typename T>
moert_memref_2d desc2(T *data, int64_t rows, int64_t cols, int64_t ld = -1) {
  moert_memref_2d m;
  m.allocated = m.aligned = static_cast<void *>(data);
  m.offset = 0;
  m.sizes[0] = rows;
  m.sizes[1] = cols;
  m.strides[0] = ld < 0 ? cols : ld;
  m.strides[1] = 1;
  return m;
}

template <typename T> moert_memref_1d desc1(T *data, int64_t n) {
  moert_memref_1d m;
  m.allocated = m.aligned = static_cast<void *>(data);
  m.offset = 0;
  m.sizes[0] = n;
  m.strides[0] = 1;
  return m;
}

//===----------------------------------------------------------------------===//
// Route helpers
//===----------------------------------------------------------------------===//

struct RouteOpts {
  int64_t policy = MOERT_TOP_K, k = 2, score = MOERT_SOFTMAX, normalize = 0,
          tie = 0;
  double scaling = 1.0, top_p = 1.0, threshold = 0.0;
  int64_t num_groups = 1, top_groups = 1, group_score_k = 2, mask_zero = 0,
          null_experts = 0, sinkhorn_iters = 3;
  double capacity_factor = 1.0, jitter = 0.01, eps = 0.0;
};

struct RouteOut {
  int64_t K;
  std::vector<float> w;
  std::vector<int32_t> e;
  float W(int64_t t, int64_t j) const { return w[t * K + j]; }
  int32_t E(int64_t t, int64_t j) const { return e[t * K + j]; }
};

RouteOut route(std::vector<float> logits, int64_t T, int64_t Ep,
               const RouteOpts &o, std::vector<float> bias = {}) {
  RouteOut r{o.k, std::vector<float>(T * o.k, kSentinelW),
             std::vector<int32_t>(T * o.k, kSentinelE)};
  moert_memref_2d l = desc2(logits.data(), T, Ep);
  moert_memref_1d b = desc1(bias.data(), (int64_t)bias.size());
  moert_memref_2d w = desc2(r.w.data(), T, o.k);
  moert_memref_2d e = desc2(r.e.data(), T, o.k);
  _mlir_ciface_moert_cpu_route(
      &l, &b, &w, &e, o.policy, o.k, o.score, o.normalize, o.tie, o.scaling,
      o.top_p, o.threshold, o.num_groups, o.top_groups, o.group_score_k,
      o.mask_zero, o.null_experts, o.sinkhorn_iters, o.capacity_factor,
      o.jitter, o.eps);
  return r;
}

void expectExperts(const RouteOut &r, int64_t t,
                   std::vector<int32_t> expected) {
  for (int64_t j = 0; j < r.K; ++j)
    EXPECT_EQ(r.E(t, j), expected[j]) << "token " << t << " slot " << j;
}

void expectWeights(const RouteOut &r, int64_t t, std::vector<float> expected) {
  for (int64_t j = 0; j < r.K; ++j)
    EXPECT_EQ(r.W(t, j), expected[j]) << "token " << t << " slot " << j;
}

/// Softmax of `l` over all columns with the f32 operations of §1.1.
std::vector<float> refSoftmax(const std::vector<float> &l) {
  float m = -kInf;
  for (float v : l)
    m = v > m ? v : m;
  std::vector<float> e(l.size());
  float s = 0.0f;
  for (size_t i = 0; i < l.size(); ++i) {
    e[i] = std::exp(l[i] - m);
    s += e[i];
  }
  for (float &v : e)
    v = v / s;
  return e;
}

//===----------------------------------------------------------------------===//
// Route: ranking and ties
//===----------------------------------------------------------------------===//

TEST(Route, TopKTiesLowerIndex) {
  RouteOpts o;
  o.score = MOERT_IDENTITY;
  RouteOut r = route({0.1f, 0.3f, 0.3f, 0.2f, 0.3f}, 1, 5, o);
  expectExperts(r, 0, {1, 2});
  expectWeights(r, 0, {0.3f, 0.3f});
}

TEST(Route, TopKTiesHigherIndex) {
  RouteOpts o;
  o.score = MOERT_IDENTITY;
  o.tie = 1;
  RouteOut r = route({0.1f, 0.3f, 0.3f, 0.2f, 0.3f}, 1, 5, o);
  expectExperts(r, 0, {4, 2});
}

TEST(Route, SignedZerosTieAndNaNRanksLast) {
  RouteOpts o;
  o.score = MOERT_IDENTITY;
  o.k = 4;
  // -0.0 == +0.0: they tie and are ordered by index; NaN after -inf.
  RouteOut lo = route({kNaN, 0.0f, kNaN, -0.0f, -kInf}, 1, 5, o);
  expectExperts(lo, 0, {1, 3, 4, 0});
  o.tie = 1;
  RouteOut hi = route({kNaN, 0.0f, kNaN, -0.0f, -kInf}, 1, 5, o);
  expectExperts(hi, 0, {3, 1, 4, 2});
}

TEST(Route, LargeKFullSortAgreesWithPartialSelection) {
  // K > 16 takes the merge-sort path; its prefix must equal the insertion
  // path's answer, ties included.
  const int64_t Ep = 20;
  std::vector<float> l(Ep);
  for (int64_t e = 0; e < Ep; ++e)
    l[e] = float((e * 7) % 5); // values 0..4, four experts each
  for (int tie = 0; tie < 2; ++tie) {
    RouteOpts big;
    big.score = MOERT_IDENTITY;
    big.tie = tie;
    big.k = Ep;
    RouteOpts small = big;
    small.k = 4;
    RouteOut rb = route(l, 1, Ep, big), rs = route(l, 1, Ep, small);
    for (int64_t j = 0; j < 4; ++j)
      EXPECT_EQ(rb.E(0, j), rs.E(0, j));
    for (int64_t j = 1; j < Ep; ++j) {
      float a = l[rb.E(0, j - 1)], b = l[rb.E(0, j)];
      EXPECT_TRUE(a > b || (a == b && (tie ? rb.E(0, j - 1) > rb.E(0, j)
                                           : rb.E(0, j - 1) < rb.E(0, j))));
    }
  }
}

TEST(Route, KLargerThanColumnsLeavesUnusedSlots) {
  RouteOpts o;
  o.score = MOERT_IDENTITY;
  o.k = 3;
  RouteOut r = route({0.25f, 0.75f}, 1, 2, o);
  expectExperts(r, 0, {1, 0, -1});
  expectWeights(r, 0, {0.75f, 0.25f, 0.0f});
}

//===----------------------------------------------------------------------===//
// Route: score functions and weights
//===----------------------------------------------------------------------===//

TEST(Route, SoftmaxWeightsOverAllColumns) {
  RouteOpts o;
  RouteOut r = route({1.0f, 2.0f, 3.0f, 0.0f}, 1, 4, o);
  std::vector<float> p = refSoftmax({1.0f, 2.0f, 3.0f, 0.0f});
  expectExperts(r, 0, {2, 1});
  expectWeights(r, 0, {p[2], p[1]});
  // Sanity of the reference itself: p[2] = 1 / (1 + e^-1 + e^-2 + e^-3).
  EXPECT_NEAR(p[2], 1.0 / (1.0 + std::exp(-1.0) + std::exp(-2.0) +
                           std::exp(-3.0)),
              1e-6);
}

// Key-ranked routing splits its tokens over the runtime's threads (blocks
// handed out in reverse here, as a pool may): the serial result bit for
// bit, for policies that need the full scores and those that skip them.
TEST(Route, ThreadsGiveTheSerialBits) {
  struct ReversePool {
    static void ParallelFor(void *, int64_t n, moert_task_fn fn, void *arg) {
      for (int64_t i = n - 1; i >= 0; --i)
        fn(arg, i, i + 1);
    }
  };
  const int64_t T = 300, Ep = 64;
  std::vector<float> logits(T * Ep), bias(Ep);
  uint32_t seed = 7;
  auto next = [&seed] {
    seed = seed * 1664525u + 1013904223u;
    return static_cast<float>((seed >> 8) & 0xffff) / 8192.0f - 4.0f;
  };
  for (float &v : logits)
    v = next();
  for (float &v : bias)
    v = next() / 16.0f;
  std::vector<RouteOpts> cases(6);
  cases[0].k = 6;
  cases[0].normalize = 1; // renormalised softmax: no full softmax needed
  cases[1].k = 6;         // the full softmax is the weight
  cases[2].k = 4;
  cases[2].score = MOERT_SOFTMAX_SELECTED;
  cases[3].k = 6;
  cases[3].policy = MOERT_GROUPED_TOP_K;
  cases[3].score = MOERT_SIGMOID;
  cases[3].num_groups = 8;
  cases[3].top_groups = 4;
  cases[4].k = 8;
  cases[4].policy = MOERT_TOP_P;
  cases[4].top_p = 0.5;
  cases[5].k = 6;
  cases[5].threshold = 0.05;
  for (size_t c = 0; c < cases.size(); ++c) {
    std::vector<float> b = c == 3 ? bias : std::vector<float>{};
    RouteOut serial = route(logits, T, Ep, cases[c], b);
    moert_parallel_hook hook = {nullptr, 2, ReversePool::ParallelFor};
    moert_cpu_set_parallel_hook(&hook);
    RouteOut threaded = route(logits, T, Ep, cases[c], b);
    moert_cpu_set_parallel_hook(nullptr);
    EXPECT_EQ(serial.e, threaded.e) << "case " << c;
    EXPECT_EQ(0, std::memcmp(serial.w.data(), threaded.w.data(),
                             serial.w.size() * sizeof(float)))
        << "case " << c;
    // Every slot is filled (the kernel ran, and wrote every token).
    for (int32_t e : threaded.e)
      ASSERT_NE(e, kSentinelE) << "case " << c;
  }
}

TEST(Route, SigmoidWeights) {
  RouteOpts o;
  o.score = MOERT_SIGMOID;
  RouteOut r = route({0.0f, 2.0f, -1.0f}, 1, 3, o);
  expectExperts(r, 0, {1, 0});
  expectWeights(r, 0, {1.0f / (1.0f + std::exp(-2.0f)), 0.5f});
}

TEST(Route, SoftmaxSelectedIsSoftmaxOfTheKeptLogits) {
  RouteOpts o;
  o.score = MOERT_SOFTMAX_SELECTED;
  RouteOut r = route({1.0f, 2.0f, 3.0f, 0.0f}, 1, 4, o);
  // softmax([3, 2]): m = 3, sum = 1 + e^-1.
  float s = 1.0f + std::exp(-1.0f);
  expectExperts(r, 0, {2, 1});
  expectWeights(r, 0, {1.0f / s, std::exp(-1.0f) / s});
}

TEST(Route, ScoresDifferButSelectionAgreesWithoutBias) {
  // Without a bias every score selects by logit: same experts, different
  // weights.
  std::vector<float> l = {0.5f, -1.0f, 2.0f, 1.5f};
  RouteOpts o;
  o.k = 3;
  std::vector<int32_t> want = {2, 3, 0};
  for (int64_t score : {MOERT_SOFTMAX, MOERT_SIGMOID, MOERT_SOFTMAX_SELECTED,
                        MOERT_IDENTITY}) {
    o.score = score;
    expectExperts(route(l, 1, 4, o), 0, want);
  }
}

TEST(Route, NormalizeScalingEpsilon) {
  RouteOpts o;
  o.score = MOERT_IDENTITY;
  o.normalize = 1;
  // 0.5 / 0.75 and 0.25 / 0.75 in f32.
  RouteOut r = route({0.5f, 0.25f, 0.125f, 0.125f}, 1, 4, o);
  expectWeights(r, 0, {0.5f / 0.75f, 0.25f / 0.75f});
  // epsilon 0.25: denominators 1.0 -> 0.5, 0.25; scaling 2 -> 1.0, 0.5.
  o.eps = 0.25;
  o.scaling = 2.0;
  r = route({0.5f, 0.25f, 0.125f, 0.125f}, 1, 4, o);
  expectExperts(r, 0, {0, 1});
  expectWeights(r, 0, {1.0f, 0.5f});
  // Scaling without normalisation multiplies the raw scores.
  o.normalize = 0;
  o.scaling = 2.5;
  r = route({0.5f, 0.25f, 0.125f, 0.125f}, 1, 4, o);
  expectWeights(r, 0, {1.25f, 0.625f});
}

TEST(Route, DeepSeekEpsilonKeepsZeroWeightsFinite) {
  // Two sigmoid(-inf) = 0 weights: 0 / (0 + 1e-20) = 0, not NaN.
  RouteOpts o;
  o.score = MOERT_SIGMOID;
  o.normalize = 1;
  o.eps = 1.0e-20;
  RouteOut r = route({-kInf, -kInf, -kInf}, 1, 3, o);
  expectExperts(r, 0, {0, 1});
  expectWeights(r, 0, {0.0f, 0.0f});
}

//===----------------------------------------------------------------------===//
// Route: dynamic-count policies
//===----------------------------------------------------------------------===//

TEST(Route, TopPVariableCounts) {
  RouteOpts o;
  o.policy = MOERT_TOP_P;
  o.score = MOERT_IDENTITY;
  o.k = 3;
  o.top_p = 0.7;
  RouteOut r = route({0.5f, 0.3f, 0.2f,    // 0.5 + 0.3 reaches 0.7: 2
                      0.1f, 0.8f, 0.1f,    // 0.8 alone: 1
                      0.34f, 0.33f, 0.33f}, // needs all 3
                     3, 3, o);
  expectExperts(r, 0, {0, 1, -1});
  expectWeights(r, 0, {0.5f, 0.3f, 0.0f});
  expectExperts(r, 1, {1, -1, -1});
  expectWeights(r, 1, {0.8f, 0.0f, 0.0f});
  expectExperts(r, 2, {0, 1, 2});
}

TEST(Route, TopPReachIsInclusiveAndCappedAtK) {
  RouteOpts o;
  o.policy = MOERT_TOP_P;
  o.score = MOERT_IDENTITY;
  o.k = 3;
  o.top_p = 0.75; // 0.5 + 0.25 == 0.75 exactly: reached after 2
  RouteOut r = route({0.5f, 0.25f, 0.25f}, 1, 3, o);
  expectExperts(r, 0, {0, 1, -1});
  o.k = 2;
  o.top_p = 1.0; // never reached within K = 2: take K
  r = route({0.25f, 0.25f, 0.25f, 0.25f}, 1, 4, o);
  expectExperts(r, 0, {0, 1});
}

TEST(Route, TopPWithNormalizeRenormalisesTheKeptPrefix) {
  RouteOpts o;
  o.policy = MOERT_TOP_P;
  o.k = 3;
  o.top_p = 0.5;
  o.normalize = 1;
  // softmax(0, 0, -inf) = (0.5, 0.5, 0): the first expert reaches 0.5.
  RouteOut r = route({0.0f, 0.0f, -kInf}, 1, 3, o);
  expectExperts(r, 0, {0, -1, -1});
  expectWeights(r, 0, {1.0f, 0.0f, 0.0f});
}

TEST(Route, ThresholdDropsLowScores) {
  RouteOpts o;
  o.policy = MOERT_THRESHOLD;
  o.score = MOERT_IDENTITY;
  o.k = 3;
  o.threshold = 0.1; // p >= 0.1 (f32): 0.1f itself is kept
  RouteOut r = route({0.1f, 0.4f, 0.05f, 0.45f}, 1, 4, o);
  expectExperts(r, 0, {3, 1, 0});
  o.threshold = 0.2;
  r = route({0.1f, 0.4f, 0.05f, 0.45f}, 1, 4, o);
  expectExperts(r, 0, {3, 1, -1});
  expectWeights(r, 0, {0.45f, 0.4f, 0.0f});
}

TEST(Route, TopKWithPositiveThresholdSkips) {
  // moe-skip-experts: top-k keeps its K best, then skips p < threshold;
  // normalisation runs over the kept slots only.
  RouteOpts o;
  o.policy = MOERT_TOP_K;
  o.score = MOERT_IDENTITY;
  o.k = 3;
  o.threshold = 0.2;
  o.normalize = 1;
  RouteOut r = route({0.1f, 0.4f, 0.05f, 0.45f}, 1, 4, o);
  expectExperts(r, 0, {3, 1, -1});
  expectWeights(r, 0, {0.45f / 0.85f, 0.4f / 0.85f, 0.0f});
  o.threshold = 0.0; // no skipping
  r = route({0.1f, 0.4f, 0.05f, 0.45f}, 1, 4, o);
  expectExperts(r, 0, {3, 1, 0});
}

TEST(Route, ThresholdWithBiasMovesKeptSlotsToTheFront) {
  // The bias ranks expert 0 first, but its p = 0.1 fails the threshold; the
  // kept slots close up in rank order.
  RouteOpts o;
  o.policy = MOERT_THRESHOLD;
  o.score = MOERT_IDENTITY;
  o.k = 3;
  o.threshold = 0.3;
  RouteOut r = route({0.1f, 0.4f, 0.5f}, 1, 3, o, {1.0f, 0.0f, 0.0f});
  expectExperts(r, 0, {2, 1, -1});
  expectWeights(r, 0, {0.5f, 0.4f, 0.0f});
}

TEST(Route, ThresholdWithSoftmaxSelected) {
  // Candidates are the K = 3 best logits {2, 1, 0}; the test uses their
  // softmax (0.665, 0.245, 0.090); the kept {2, 1} get softmax([2, 1]).
  RouteOpts o;
  o.policy = MOERT_THRESHOLD;
  o.score = MOERT_SOFTMAX_SELECTED;
  o.k = 3;
  o.threshold = 0.2;
  RouteOut r = route({2.0f, 1.0f, 0.0f, -5.0f}, 1, 4, o);
  float s = 1.0f + std::exp(-1.0f);
  expectExperts(r, 0, {0, 1, -1});
  expectWeights(r, 0, {1.0f / s, std::exp(-1.0f) / s, 0.0f});
}

//===----------------------------------------------------------------------===//
// Route: null experts, bias, grouped top-k
//===----------------------------------------------------------------------===//

TEST(Route, NullExpertsRenormaliseThenBecomeMinusOne) {
  // AdaMoE: E' = 4, the last column is a null expert (E = 3).
  RouteOpts o;
  o.score = MOERT_IDENTITY;
  o.normalize = 1;
  o.null_experts = 1;
  RouteOut r = route({0.5f, 0.125f, 0.125f, 0.25f, // null second
                      0.1f, 0.2f, 0.3f, 0.4f},    // null first
                     2, 4, o);
  // The null pick counts in the sum, then is -1/0 in place.
  expectExperts(r, 0, {0, -1});
  expectWeights(r, 0, {0.5f / 0.75f, 0.0f});
  expectExperts(r, 1, {-1, 2});
  expectWeights(r, 1, {0.0f, 0.3f / (0.4f + 0.3f)});
}

TEST(Route, NullExpertsTakePartInTheSoftmax) {
  RouteOpts o;
  o.k = 1;
  o.null_experts = 1;
  RouteOut r = route({1.0f, 0.0f, 1.0f}, 1, 3, o);
  std::vector<float> p = refSoftmax({1.0f, 0.0f, 1.0f});
  expectExperts(r, 0, {0});
  expectWeights(r, 0, {p[0]}); // e / (2e + 1), not e / (e + 1)
}

TEST(Route, SelectionBiasChoosesButDoesNotWeigh) {
  // DeepSeek-V3 style: sigmoid scores, key = p + b, weights from p.
  RouteOpts o;
  o.score = MOERT_SIGMOID;
  o.normalize = 1;
  o.eps = 1.0e-20;
  o.scaling = 2.5;
  RouteOut r = route({2.0f, 0.0f, 1.0f}, 1, 3, o, {0.0f, 1.0f, 0.0f});
  float p0 = 1.0f / (1.0f + std::exp(-2.0f)), p1 = 0.5f;
  // Keys: p0, 1.5, p2: expert 1 first.
  expectExperts(r, 0, {1, 0});
  float d = (p1 + p0) + 1.0e-20f;
  expectWeights(r, 0, {p1 / d * 2.5f, p0 / d * 2.5f});
}

TEST(Route, TopPWithBiasRanksByKeyAccumulatesP) {
  RouteOpts o;
  o.policy = MOERT_TOP_P;
  o.score = MOERT_IDENTITY;
  o.k = 3;
  o.top_p = 0.5;
  // Keys 0.1+0.6, 0.6, 0.3: expert 0 first though its p is lowest; mass
  // 0.1, then expert 1: 0.7 >= 0.5.
  RouteOut r = route({0.1f, 0.6f, 0.3f}, 1, 3, o, {0.6f, 0.0f, 0.0f});
  expectExperts(r, 0, {0, 1, -1});
  expectWeights(r, 0, {0.1f, 0.6f, 0.0f});
}

TEST(Route, GroupedTopKGroupMaskMatters) {
  // 8 experts in 4 groups of 2, keep 2 groups scored by their top-2 sum.
  // Group sums: 0.9, 1.0, 0.9, 0.7. Groups 1 and 0 are kept (0 beats 2 on
  // the tie), so expert 6 (0.7), second best overall, is masked out.
  std::vector<float> l = {0.9f, 0.0f, 0.5f, 0.5f, 0.45f, 0.45f, 0.7f, 0.0f};
  RouteOpts o;
  o.score = MOERT_IDENTITY;
  RouteOut plain = route(l, 1, 8, o);
  expectExperts(plain, 0, {0, 6});
  o.policy = MOERT_GROUPED_TOP_K;
  o.num_groups = 4;
  o.top_groups = 2;
  o.group_score_k = 2;
  RouteOut grouped = route(l, 1, 8, o);
  expectExperts(grouped, 0, {0, 2});
  expectWeights(grouped, 0, {0.9f, 0.5f});
  // top_groups = 1: only group 1 survives.
  o.top_groups = 1;
  expectExperts(route(l, 1, 8, o), 0, {2, 3});
}

TEST(Route, GroupedTopKBiasSelectsNotWeighs) {
  std::vector<float> l = {0.9f, 0.0f, 0.5f, 0.5f, 0.45f, 0.45f, 0.7f, 0.0f};
  std::vector<float> b = {0.0f, 0.0f, 0.0f, 0.1f, 0.0f, 0.0f, 0.0f, 0.0f};
  RouteOpts o;
  o.policy = MOERT_GROUPED_TOP_K;
  o.score = MOERT_IDENTITY;
  o.num_groups = 4;
  o.top_groups = 2;
  o.normalize = 1;
  o.eps = 1.0e-20;
  o.scaling = 2.5;
  RouteOut r = route(l, 1, 8, o, b);
  // Key of expert 3 is 0.6 > expert 2's 0.5; the weight is still p = 0.5.
  expectExperts(r, 0, {0, 3});
  float d = (0.9f + 0.5f) + 1.0e-20f;
  expectWeights(r, 0, {0.9f / d * 2.5f, 0.5f / d * 2.5f});
}

TEST(Route, GroupedTopKKeysAreScoresNotLogits) {
  // Without a bias grouped_top_k still ranks by p (§1.2). Logit sums prefer
  // group 1 (30 - 5 = 25 > 20); sigmoid sums prefer group 0 (~2.0 vs
  // ~1.007).
  std::vector<float> l = {10.0f, 10.0f, 30.0f, -5.0f};
  RouteOpts o;
  o.policy = MOERT_GROUPED_TOP_K;
  o.score = MOERT_SIGMOID;
  o.num_groups = 2;
  o.top_groups = 1;
  RouteOut r = route(l, 1, 4, o);
  expectExperts(r, 0, {0, 1});
  float p = 1.0f / (1.0f + std::exp(-10.0f));
  expectWeights(r, 0, {p, p});
  // With identity scores the keys are the logits themselves: group 1.
  o.score = MOERT_IDENTITY;
  expectExperts(route(l, 1, 4, o), 0, {2, 3});
}

TEST(Route, SoftmaxSelectedBiasedKeyUsesFullSoftmax) {
  // Full softmax of (0, 1, 2) is about (0.090, 0.245, 0.665); the key
  // p + b = (0.590, 0.245, 0.665) ranks expert 0 second (l + b would have
  // ranked expert 1 second). Weights: softmax of the kept logits (2, 0).
  RouteOpts o;
  o.score = MOERT_SOFTMAX_SELECTED;
  RouteOut r = route({0.0f, 1.0f, 2.0f}, 1, 3, o, {0.5f, 0.0f, 0.0f});
  expectExperts(r, 0, {2, 0});
  float s = 1.0f + std::exp(-2.0f);
  expectWeights(r, 0, {1.0f / s, std::exp(-2.0f) / s});
}

TEST(Route, GroupedTopKMaskWithZero) {
  // Negative keys: with -inf masking the best group's experts win; with
  // 0.0 masking the masked experts (key 0) outrank them.
  std::vector<float> l = {-1.0f, -2.0f, -0.5f, -3.0f,
                          -4.0f, -5.0f, -6.0f, -7.0f};
  RouteOpts o;
  o.policy = MOERT_GROUPED_TOP_K;
  o.score = MOERT_IDENTITY;
  o.num_groups = 4;
  o.top_groups = 1;
  o.group_score_k = 1;
  RouteOut inf = route(l, 1, 8, o);
  expectExperts(inf, 0, {2, 3});
  expectWeights(inf, 0, {-0.5f, -3.0f});
  o.mask_zero = 1;
  RouteOut zero = route(l, 1, 8, o);
  expectExperts(zero, 0, {0, 1});
  expectWeights(zero, 0, {-1.0f, -2.0f}); // weights are p, not the key
}

//===----------------------------------------------------------------------===//
// Route: sinkhorn, expert choice, sparse mixer
//===----------------------------------------------------------------------===//

TEST(Route, SinkhornHandCase) {
  // M = exp(l - 0) = [[1, 0], [1, 1]]. Columns to T/E' = 1: [[.5, 0],
  // [.5, 1]]; rows to 1: [[1, 0], [1/3, 2/3]].
  RouteOpts o;
  o.policy = MOERT_SINKHORN;
  o.sinkhorn_iters = 1;
  o.k = 2;
  RouteOut r = route({0.0f, -kInf, 0.0f, 0.0f}, 2, 2, o);
  expectExperts(r, 0, {0, 1});
  expectWeights(r, 0, {1.0f, 0.0f});
  expectExperts(r, 1, {1, 0});
  expectWeights(r, 1, {1.0f / 1.5f, 0.5f / 1.5f});
}

TEST(Route, SinkhornPlanIsDoublyNormalised) {
  // With K = E' the weights are the whole plan: rows sum to 1 after every
  // round and columns converge to T/E'.
  const int64_t T = 6, Ep = 3;
  std::vector<float> l(T * Ep);
  for (int64_t i = 0; i < T * Ep; ++i)
    l[i] = float((i * 5) % 7) * 0.5f - 1.0f;
  RouteOpts o;
  o.policy = MOERT_SINKHORN;
  o.k = Ep;
  o.sinkhorn_iters = 200;
  RouteOut r = route(l, T, Ep, o);
  std::vector<double> col(Ep, 0.0);
  for (int64_t t = 0; t < T; ++t) {
    double row = 0.0;
    for (int64_t j = 0; j < Ep; ++j) {
      ASSERT_GE(r.E(t, j), 0);
      row += r.W(t, j);
      col[r.E(t, j)] += r.W(t, j);
      if (j > 0) {
        EXPECT_GE(r.W(t, j - 1), r.W(t, j));
      }
    }
    EXPECT_NEAR(row, 1.0, 1e-5);
  }
  for (double c : col)
    EXPECT_NEAR(c, double(T) / double(Ep), 1e-4);
}

TEST(Route, ExpertChoiceEachExpertPicksItsBestTokens) {
  // T = 4, E' = 2, K = 1, capacity_factor 1: Ce = ceil(4 * 1 / 2) = 2.
  RouteOpts o;
  o.policy = MOERT_EXPERT_CHOICE;
  o.score = MOERT_IDENTITY;
  o.k = 1;
  RouteOut r = route({0.9f, 0.1f, 0.8f, 0.2f, 0.7f, 0.3f, 0.6f, 0.4f}, 4, 2, o);
  expectExperts(r, 0, {0});
  expectWeights(r, 0, {0.9f});
  expectExperts(r, 1, {0});
  expectExperts(r, 2, {1});
  expectWeights(r, 2, {0.3f});
  expectExperts(r, 3, {1});
  expectWeights(r, 3, {0.4f});
}

TEST(Route, ExpertChoiceUnpickedTokensAndTieBreak) {
  // Both experts pick tokens 0 and 1; tokens 2 and 3 get nothing. Token 0
  // has p 0.5 from both: tie_break decides; K = 1 keeps one.
  std::vector<float> l = {0.5f, 0.5f, 0.4f, 0.6f, 0.1f, 0.1f, 0.2f, 0.2f};
  RouteOpts o;
  o.policy = MOERT_EXPERT_CHOICE;
  o.score = MOERT_IDENTITY;
  o.k = 1;
  RouteOut lo = route(l, 4, 2, o);
  expectExperts(lo, 0, {0});
  expectExperts(lo, 1, {1});
  expectExperts(lo, 2, {-1});
  expectWeights(lo, 2, {0.0f});
  expectExperts(lo, 3, {-1});
  o.tie = 1;
  RouteOut hi = route(l, 4, 2, o);
  expectExperts(hi, 0, {1});
  // Capacity factor 2: Ce = T, everyone picks everything; K = 2 orders a
  // token's experts by p.
  o.tie = 0;
  o.k = 2;
  o.capacity_factor = 2.0;
  RouteOut all = route(l, 4, 2, o);
  expectExperts(all, 1, {1, 0});
  expectWeights(all, 1, {0.6f, 0.4f});
  expectExperts(all, 2, {0, 1});
}

TEST(Route, ExpertChoiceTokenTiesGoToLowerToken) {
  // Ce = ceil(3 * 1 / 3) = 1: each expert takes one token; all p tie per
  // column, so each takes token 0, which keeps the best K = 1 of them.
  RouteOpts o;
  o.policy = MOERT_EXPERT_CHOICE;
  o.score = MOERT_IDENTITY;
  o.k = 1;
  RouteOut r = route({0.2f, 0.3f, 0.5f, 0.2f, 0.3f, 0.5f, 0.2f, 0.3f, 0.5f},
                     3, 3, o);
  expectExperts(r, 0, {2});
  expectExperts(r, 1, {-1});
  expectExperts(r, 2, {-1});
}

TEST(Route, SparseMixerMasksFarLogits) {
  // e1 = 0 (2.0). Kept for w1: itself and expert 2, (2 - 1.99) / 2 <= 0.02;
  // expert 1: 1/2 and expert 3: 3/2 are masked. e2 = 2; alone after
  // masking, so w2 = 1.
  RouteOpts o;
  o.policy = MOERT_SPARSE_MIXER;
  RouteOut r = route({2.0f, 1.0f, 1.99f, -1.0f}, 1, 4, o);
  expectExperts(r, 0, {0, 2});
  float s = std::exp(0.0f) + std::exp(1.99f - 2.0f);
  expectWeights(r, 0, {std::exp(0.0f) / s, 1.0f});
}

TEST(Route, SparseMixerSecondChoiceTies) {
  // e1 = 0 alone (w1 = 1). Experts 1 and 2 tie for e2; both stay in its
  // softmax, so w2 = 1/2 whichever tie_break picks.
  RouteOpts o;
  o.policy = MOERT_SPARSE_MIXER;
  RouteOut lo = route({3.0f, 1.0f, 1.0f, 0.0f}, 1, 4, o);
  expectExperts(lo, 0, {0, 1});
  expectWeights(lo, 0, {1.0f, 0.5f});
  o.tie = 1;
  RouteOut hi = route({3.0f, 1.0f, 1.0f, 0.0f}, 1, 4, o);
  expectExperts(hi, 0, {0, 2});
  expectWeights(hi, 0, {1.0f, 0.5f});
}

//===----------------------------------------------------------------------===//
// Route: descriptors
//===----------------------------------------------------------------------===//

TEST(Route, StridedDescriptors) {
  // Logits rows padded to 6 floats (padding NaN, never read); outputs with
  // an outer stride of 3 for K = 2.
  std::vector<float> l = {0.1f, 0.4f, 0.2f, 0.3f, kNaN, kNaN,
                          0.4f, 0.1f, 0.3f, 0.2f, kNaN, kNaN};
  std::vector<float> w(6, kSentinelW);
  std::vector<int32_t> e(6, kSentinelE);
  moert_memref_2d ld = desc2(l.data(), 2, 4, 6);
  moert_memref_1d bd = desc1<float>(nullptr, 0);
  moert_memref_2d wd = desc2(w.data(), 2, 2, 3);
  moert_memref_2d ed = desc2(e.data(), 2, 2, 3);
  _mlir_ciface_moert_cpu_route(&ld, &bd, &wd, &ed, MOERT_TOP_K, 2,
                               MOERT_IDENTITY, 0, 0, 1.0, 1.0, 0.0, 1, 1, 2, 0,
                               0, 3, 1.0, 0.01, 0.0);
  EXPECT_EQ(e, (std::vector<int32_t>{1, 3, kSentinelE, 0, 2, kSentinelE}));
  EXPECT_EQ(w, (std::vector<float>{0.4f, 0.3f, kSentinelW, 0.4f, 0.3f,
                                   kSentinelW}));
}

TEST(Route, MismatchedDescriptorsWriteNothing) {
  RouteOpts o;
  o.k = 2;
  std::vector<float> l = {0.1f, 0.2f, 0.3f};
  // A bias of the wrong length.
  RouteOut r = route(l, 1, 3, o, {0.0f, 0.0f});
  EXPECT_EQ(r.E(0, 0), kSentinelE);
  EXPECT_EQ(r.W(0, 1), kSentinelW);
  // k disagrees with the output width.
  std::vector<float> w(2, kSentinelW);
  std::vector<int32_t> e(2, kSentinelE);
  moert_memref_2d ld = desc2(l.data(), 1, 3);
  moert_memref_1d bd = desc1<float>(nullptr, 0);
  moert_memref_2d wd = desc2(w.data(), 1, 2);
  moert_memref_2d ed = desc2(e.data(), 1, 2);
  _mlir_ciface_moert_cpu_route(&ld, &bd, &wd, &ed, MOERT_TOP_K, 3,
                               MOERT_SOFTMAX, 0, 0, 1.0, 1.0, 0.0, 1, 1, 2, 0,
                               0, 3, 1.0, 0.01, 0.0);
  EXPECT_EQ(e[0], kSentinelE);
  // experts_out with another row count.
  moert_memref_2d ed3 = desc2(e.data(), 2, 1);
  _mlir_ciface_moert_cpu_route(&ld, &bd, &wd, &ed3, MOERT_TOP_K, 2,
                               MOERT_SOFTMAX, 0, 0, 1.0, 1.0, 0.0, 1, 1, 2, 0,
                               0, 3, 1.0, 0.01, 0.0);
  EXPECT_EQ(e[0], kSentinelE);
  // grouped_top_k with num_groups not dividing E'.
  o.policy = MOERT_GROUPED_TOP_K;
  o.num_groups = 2;
  r = route(l, 1, 3, o);
  EXPECT_EQ(r.E(0, 0), kSentinelE);
}

//===----------------------------------------------------------------------===//
// Dispatch helpers
//===----------------------------------------------------------------------===//

struct DispatchOut {
  std::vector<float> rows; // [R, D]
  std::vector<int32_t> rowToken, counts, tokenSlot;
  std::vector<float> cw;
};

DispatchOut dispatch(std::vector<float> x, int64_t T, int64_t D,
                     std::vector<float> weights, std::vector<int32_t> experts,
                     int64_t K, int64_t E, int64_t capacity,
                     int64_t order = MOERT_POSITION,
                     int64_t onDrop = MOERT_DROP_ZERO, int64_t renorm = 0) {
  int64_t R = capacity < 0 ? T * K : E * capacity;
  DispatchOut o{std::vector<float>(R * D, kSentinelW),
                std::vector<int32_t>(R, kSentinelE),
                std::vector<int32_t>(E, kSentinelE),
                std::vector<int32_t>(T * K, kSentinelE),
                std::vector<float>(T * K, kSentinelW)};
  moert_memref_2d xd = desc2(x.data(), T, D), wd = desc2(weights.data(), T, K),
                  ed = desc2(experts.data(), T, K),
                  dd = desc2(o.rows.data(), R, D),
                  sd = desc2(o.tokenSlot.data(), T, K),
                  cd = desc2(o.cw.data(), T, K);
  moert_memref_1d rd = desc1(o.rowToken.data(), R),
                  nd = desc1(o.counts.data(), E);
  _mlir_ciface_moert_cpu_dispatch(&xd, &wd, &ed, &dd, &rd, &nd, &sd, &cd,
                                  capacity, order, onDrop, renorm, MOERT_F32, 0);
  return o;
}

// Token t's row is {10t, 10t + 1}: row contents identify the token.
std::vector<float> tokenRows(int64_t T) {
  std::vector<float> x;
  for (int64_t t = 0; t < T; ++t) {
    x.push_back(10.0f * float(t));
    x.push_back(10.0f * float(t) + 1.0f);
  }
  return x;
}

void expectRowIs(const DispatchOut &o, int64_t r, int32_t token) {
  EXPECT_EQ(o.rowToken[r], token) << "row " << r;
  float a = token < 0 ? 0.0f : 10.0f * float(token);
  float b = token < 0 ? 0.0f : a + 1.0f;
  EXPECT_EQ(o.rows[2 * r], a) << "row " << r;
  EXPECT_EQ(o.rows[2 * r + 1], b) << "row " << r;
}

//===----------------------------------------------------------------------===//
// Dispatch: ragged
//===----------------------------------------------------------------------===//

TEST(Dispatch, RaggedOrderingAndCounts) {
  // Pairs sorted by (expert, t, j): e0: (0,1) (1,0); e1: (2,1);
  // e2: (0,0) (2,0). Row 5 is unused.
  DispatchOut o = dispatch(tokenRows(3), 3, 2,
                           {0.6f, 0.4f, 1.0f, 0.5f, 0.7f, 0.3f},
                           {2, 0, 0, -1, 2, 1}, 2, 3, -1);
  EXPECT_EQ(o.counts, (std::vector<int32_t>{2, 1, 2}));
  EXPECT_EQ(o.tokenSlot, (std::vector<int32_t>{3, 0, 1, -1, 4, 2}));
  for (auto [r, t] : std::vector<std::pair<int, int>>{
           {0, 0}, {1, 1}, {2, 2}, {3, 0}, {4, 2}, {5, -1}})
    expectRowIs(o, r, t);
  EXPECT_EQ(o.cw, (std::vector<float>{0.6f, 0.4f, 1.0f, 0.0f, 0.7f, 0.3f}));
}

TEST(Dispatch, RaggedOutOfRangeExpertsAreNonPairs) {
  DispatchOut o = dispatch(tokenRows(2), 2, 2, {0.5f, 0.5f, 0.25f, 0.75f},
                           {3, 1, -5, INT32_MAX}, 2, 2, -1);
  EXPECT_EQ(o.counts, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(o.tokenSlot, (std::vector<int32_t>{-1, 0, -1, -1}));
  EXPECT_EQ(o.cw, (std::vector<float>{0.0f, 0.5f, 0.0f, 0.0f}));
  expectRowIs(o, 0, 0);
  for (int r = 1; r < 4; ++r)
    expectRowIs(o, r, -1);
}

//===----------------------------------------------------------------------===//
// Dispatch: padded capacity
//===----------------------------------------------------------------------===//

// T = 3, K = 2, E = 2, C = 1; each token picks both experts, in different
// orders, so the three queue orders keep different pairs.
const std::vector<int32_t> kQueueExperts = {0, 1, 1, 0, 0, 1};
const std::vector<float> kQueueWeights = {0.6f, 0.4f, 0.7f, 0.3f, 0.9f, 0.1f};

TEST(Dispatch, PaddedPositionOrder) {
  // (0,0) e0, (0,1) e1; everything after finds its expert full.
  DispatchOut o = dispatch(tokenRows(3), 3, 2, kQueueWeights, kQueueExperts,
                           2, 2, 1, MOERT_POSITION);
  EXPECT_EQ(o.counts, (std::vector<int32_t>{1, 1}));
  EXPECT_EQ(o.tokenSlot, (std::vector<int32_t>{0, 1, -1, -1, -1, -1}));
  expectRowIs(o, 0, 0);
  expectRowIs(o, 1, 0);
  EXPECT_EQ(o.cw, (std::vector<float>{0.6f, 0.4f, 0, 0, 0, 0}));
}

TEST(Dispatch, PaddedChoiceMajorOrder) {
  // First choices: (0,0) e0, (1,0) e1, (2,0) e0 full; second choices all
  // find their expert full.
  DispatchOut o = dispatch(tokenRows(3), 3, 2, kQueueWeights, kQueueExperts,
                           2, 2, 1, MOERT_CHOICE_MAJOR);
  EXPECT_EQ(o.tokenSlot, (std::vector<int32_t>{0, -1, 1, -1, -1, -1}));
  expectRowIs(o, 0, 0);
  expectRowIs(o, 1, 1);
}

TEST(Dispatch, PaddedScoreOrder) {
  // By weight: (2,0) 0.9 e0, (1,0) 0.7 e1, the rest dropped.
  DispatchOut o = dispatch(tokenRows(3), 3, 2, kQueueWeights, kQueueExperts,
                           2, 2, 1, MOERT_SCORE);
  EXPECT_EQ(o.tokenSlot, (std::vector<int32_t>{-1, -1, 1, -1, 0, -1}));
  expectRowIs(o, 0, 2);
  expectRowIs(o, 1, 1);
  EXPECT_EQ(o.cw, (std::vector<float>{0, 0, 0.7f, 0, 0.9f, 0}));
}

TEST(Dispatch, PaddedScoreOrderTiesByPosition) {
  // Equal weights claim in (t, j) order; a NaN weight queues last.
  DispatchOut o = dispatch(tokenRows(4), 4, 2, {0.5f, 0.5f, kNaN, 0.5f},
                           {0, 0, 0, 0}, 1, 1, 3, MOERT_SCORE);
  EXPECT_EQ(o.tokenSlot, (std::vector<int32_t>{0, 1, -1, 2}));
  expectRowIs(o, 2, 3);
}

TEST(Dispatch, PaddedUnfilledSlotsAreZero) {
  // C = 3, two experts; expert 0 gets one token, expert 1 none.
  DispatchOut o = dispatch(tokenRows(2), 2, 2, {1.0f, 1.0f}, {0, -1}, 1, 2, 3);
  EXPECT_EQ(o.counts, (std::vector<int32_t>{1, 0}));
  EXPECT_EQ(o.tokenSlot, (std::vector<int32_t>{0, -1}));
  expectRowIs(o, 0, 0);
  for (int r = 1; r < 6; ++r)
    expectRowIs(o, r, -1);
}

TEST(Dispatch, PaddedCorruptExpertIdsAreNonPairs) {
  DispatchOut o = dispatch(tokenRows(2), 2, 2, {0.5f, 0.5f, 0.5f, 0.5f},
                           {7, 1, -2, 0}, 2, 2, 2, MOERT_POSITION,
                           MOERT_DROP_PASS_THROUGH);
  EXPECT_EQ(o.counts, (std::vector<int32_t>{1, 1}));
  EXPECT_EQ(o.tokenSlot, (std::vector<int32_t>{-1, 2, -1, 0}));
  // A non-pair keeps weight 0 even with pass_through.
  EXPECT_EQ(o.cw, (std::vector<float>{0.0f, 0.5f, 0.0f, 0.5f}));
}

TEST(Dispatch, DropPassThroughKeepsTheWeight) {
  DispatchOut zero = dispatch(tokenRows(3), 3, 2, kQueueWeights,
                              kQueueExperts, 2, 2, 1, MOERT_POSITION,
                              MOERT_DROP_ZERO);
  DispatchOut pass = dispatch(tokenRows(3), 3, 2, kQueueWeights,
                              kQueueExperts, 2, 2, 1, MOERT_POSITION,
                              MOERT_DROP_PASS_THROUGH);
  EXPECT_EQ(zero.cw, (std::vector<float>{0.6f, 0.4f, 0, 0, 0, 0}));
  EXPECT_EQ(pass.cw, kQueueWeights);
  EXPECT_EQ(pass.tokenSlot, zero.tokenSlot);
}

TEST(Dispatch, RenormalizeAfterDrop) {
  // T = 1, K = 3, C = 1: (0,2) finds expert 1 full. Kept 0.5 and 0.25 are
  // divided by 0.75.
  DispatchOut o = dispatch(tokenRows(1), 1, 2, {0.5f, 0.25f, 0.25f},
                           {0, 1, 1}, 3, 2, 1, MOERT_POSITION, MOERT_DROP_ZERO,
                           1);
  EXPECT_EQ(o.cw, (std::vector<float>{0.5f / 0.75f, 0.25f / 0.75f, 0.0f}));
  // Without renormalize the kept weights stay.
  o = dispatch(tokenRows(1), 1, 2, {0.5f, 0.25f, 0.25f}, {0, 1, 1}, 3, 2, 1);
  EXPECT_EQ(o.cw, (std::vector<float>{0.5f, 0.25f, 0.0f}));
}

TEST(Dispatch, RenormalizeClampsTinySumsAtFltEpsilon) {
  DispatchOut o = dispatch(tokenRows(2), 2, 2, {1.0e-10f, 0.0f}, {0, 0}, 1, 1,
                           2, MOERT_POSITION, MOERT_DROP_ZERO, 1);
  EXPECT_EQ(o.cw, (std::vector<float>{1.0e-10f / FLT_EPSILON, 0.0f}));
}

TEST(Dispatch, Bf16RowsAreCopiedBitForBitWithStridedInput) {
  // x has an outer stride of 3 (one padding element per row).
  std::vector<uint16_t> x = {0x3F80, 0x4000, 0xFFFF, 0x7FC1, 0x8001, 0xFFFF};
  std::vector<float> w = {1.0f, 1.0f};
  std::vector<int32_t> e = {1, 0};
  std::vector<uint16_t> rows(4, 0xAAAA);
  std::vector<int32_t> rowToken(2), counts(2), slot(2);
  std::vector<float> cw(2);
  moert_memref_2d xd = desc2(x.data(), 2, 2, 3), wd = desc2(w.data(), 2, 1),
                  ed = desc2(e.data(), 2, 1), dd = desc2(rows.data(), 2, 2),
                  sd = desc2(slot.data(), 2, 1), cd = desc2(cw.data(), 2, 1);
  moert_memref_1d rd = desc1(rowToken.data(), 2), nd = desc1(counts.data(), 2);
  _mlir_ciface_moert_cpu_dispatch(&xd, &wd, &ed, &dd, &rd, &nd, &sd, &cd, -1,
                                  0, 0, 0, MOERT_BF16, 0);
  EXPECT_EQ(rows, (std::vector<uint16_t>{0x7FC1, 0x8001, 0x3F80, 0x4000}));
  EXPECT_EQ(slot, (std::vector<int32_t>{1, 0}));
}

TEST(Dispatch, MismatchedDescriptorsWriteNothing) {
  std::vector<float> x = tokenRows(2), w = {1.0f, 1.0f};
  std::vector<int32_t> e = {0, 1};
  std::vector<float> rows(6, kSentinelW), cw(2, kSentinelW);
  std::vector<int32_t> rowToken(3, kSentinelE), counts(2, kSentinelE),
      slot(2, kSentinelE);
  moert_memref_2d xd = desc2(x.data(), 2, 2), wd = desc2(w.data(), 2, 1),
                  ed = desc2(e.data(), 2, 1), sd = desc2(slot.data(), 2, 1),
                  cd = desc2(cw.data(), 2, 1);
  moert_memref_1d nd = desc1(counts.data(), 2);
  // Ragged needs R = T*K = 2 rows, not 3.
  moert_memref_2d dd = desc2(rows.data(), 3, 2);
  moert_memref_1d rd = desc1(rowToken.data(), 3);
  _mlir_ciface_moert_cpu_dispatch(&xd, &wd, &ed, &dd, &rd, &nd, &sd, &cd, -1,
                                  0, 0, 0, MOERT_F32, 0);
  // Padded with C = 2 needs E*C = 4 rows, not 3.
  _mlir_ciface_moert_cpu_dispatch(&xd, &wd, &ed, &dd, &rd, &nd, &sd, &cd, 2, 0,
                                  0, 0, MOERT_F32, 0);
  // Unknown element type.
  moert_memref_2d dd2 = desc2(rows.data(), 2, 2);
  moert_memref_1d rd2 = desc1(rowToken.data(), 2);
  _mlir_ciface_moert_cpu_dispatch(&xd, &wd, &ed, &dd2, &rd2, &nd, &sd, &cd, -1,
                                  0, 0, 0, 9, 0);
  EXPECT_EQ(rows, std::vector<float>(6, kSentinelW));
  EXPECT_EQ(rowToken, std::vector<int32_t>(3, kSentinelE));
  EXPECT_EQ(counts, std::vector<int32_t>(2, kSentinelE));
  EXPECT_EQ(slot, std::vector<int32_t>(2, kSentinelE));
  EXPECT_EQ(cw, std::vector<float>(2, kSentinelW));
}

//===----------------------------------------------------------------------===//
// Combine
//===----------------------------------------------------------------------===//

TEST(Combine, WeightedSumInSlotOrder) {
  // Rows: r0 = (1, 2), r1 = (4, 8), r2 = (100, 100).
  std::vector<float> rows = {1, 2, 4, 8, 100, 100};
  std::vector<int32_t> slot = {1, 0, -1, 0};
  std::vector<float> w = {0.5f, 0.25f, 0.75f, 2.0f};
  std::vector<float> out(4, kSentinelW);
  moert_memref_2d rd = desc2(rows.data(), 3, 2), sd = desc2(slot.data(), 2, 2),
                  wd = desc2(w.data(), 2, 2), od = desc2(out.data(), 2, 2);
  moert_memref_2d pd = desc2<float>(nullptr, 0, 2);
  _mlir_ciface_moert_cpu_combine(&rd, &sd, &wd, &pd, &od, MOERT_F32);
  // t0 = 0.5 r1 + 0.25 r0; t1: slot -1 without passthrough adds nothing.
  EXPECT_EQ(out, (std::vector<float>{2.25f, 4.5f, 2.0f, 4.0f}));
}

TEST(Combine, PassthroughForDroppedSlots) {
  std::vector<float> rows = {1, 2};
  std::vector<int32_t> slot = {-1, 0, -1, -1};
  std::vector<float> w = {0.5f, 1.0f, 0.0f, 0.25f};
  std::vector<float> x = {8, 16, 32, 64};
  std::vector<float> out(4, kSentinelW);
  moert_memref_2d rd = desc2(rows.data(), 1, 2), sd = desc2(slot.data(), 2, 2),
                  wd = desc2(w.data(), 2, 2), pd = desc2(x.data(), 2, 2),
                  od = desc2(out.data(), 2, 2);
  _mlir_ciface_moert_cpu_combine(&rd, &sd, &wd, &pd, &od, MOERT_F32);
  // t0 = 0.5 x0 + 1.0 r0; t1: first slot w = 0 adds nothing, then 0.25 x1.
  EXPECT_EQ(out, (std::vector<float>{5.0f, 10.0f, 8.0f, 16.0f}));
}

TEST(Combine, OutOfRangeSlotIsTreatedAsDropped) {
  std::vector<float> rows = {1, 2};
  std::vector<int32_t> slot = {5, -9};
  std::vector<float> w = {1.0f, 0.5f};
  std::vector<float> x = {4, 4};
  std::vector<float> out(2, kSentinelW);
  moert_memref_2d rd = desc2(rows.data(), 1, 2), sd = desc2(slot.data(), 1, 2),
                  wd = desc2(w.data(), 1, 2), pd = desc2<float>(nullptr, 0, 2),
                  od = desc2(out.data(), 1, 2);
  _mlir_ciface_moert_cpu_combine(&rd, &sd, &wd, &pd, &od, MOERT_F32);
  EXPECT_EQ(out, (std::vector<float>{0.0f, 0.0f}));
  pd = desc2(x.data(), 1, 2);
  _mlir_ciface_moert_cpu_combine(&rd, &sd, &wd, &pd, &od, MOERT_F32);
  EXPECT_EQ(out, (std::vector<float>{6.0f, 6.0f}));
}

TEST(Combine, F16AccumulatesInF32AndRoundsOnce) {
  // 1 + 2^-11 is not an f16, and neither is 2^-11 * ... : each product is
  // exact in f32, the sum 1 + 2^-11 + 2^-11 = 1 + 2^-10 is an f16. Rounding
  // every partial sum to f16 would have lost both halves (ties to even).
  const uint16_t one = 0x3C00, tiny = 0x1000; // 1.0, 2^-11
  std::vector<uint16_t> rows = {one, tiny, tiny};
  std::vector<int32_t> slot = {0, 1, 2};
  std::vector<float> w = {1.0f, 1.0f, 1.0f};
  std::vector<uint16_t> out(1, 0);
  moert_memref_2d rd = desc2(rows.data(), 3, 1), sd = desc2(slot.data(), 1, 3),
                  wd = desc2(w.data(), 1, 3),
                  pd = desc2<uint16_t>(nullptr, 0, 1),
                  od = desc2(out.data(), 1, 1);
  _mlir_ciface_moert_cpu_combine(&rd, &sd, &wd, &pd, &od, MOERT_F16);
  EXPECT_EQ(out[0], 0x3C01); // 1 + 2^-10
}

TEST(Combine, Bf16OutputRoundsToNearestEven) {
  // 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties to even (1.0).
  std::vector<uint16_t> rows = {moert_f32_to_bf16(1.0f),
                                moert_f32_to_bf16(0x1p-8f)};
  std::vector<int32_t> slot = {0, 1};
  std::vector<float> w = {1.0f, 1.0f};
  std::vector<uint16_t> out(1, 0);
  moert_memref_2d rd = desc2(rows.data(), 2, 1), sd = desc2(slot.data(), 1, 2),
                  wd = desc2(w.data(), 1, 2),
                  pd = desc2<uint16_t>(nullptr, 0, 1),
                  od = desc2(out.data(), 1, 1);
  _mlir_ciface_moert_cpu_combine(&rd, &sd, &wd, &pd, &od, MOERT_BF16);
  EXPECT_EQ(out[0], 0x3F80);
  w[1] = 3.0f; // 1 + 3 * 2^-8: halfway between 1 + 2^-7 and 1 + 2^-6 -> even
  _mlir_ciface_moert_cpu_combine(&rd, &sd, &wd, &pd, &od, MOERT_BF16);
  EXPECT_EQ(out[0], 0x3F82);
}

TEST(Combine, RouteDispatchCombineRoundTrip) {
  // Identity experts: combine(dispatch(x)) = x * (sum of kept weights).
  const int64_t T = 3, Ep = 4, K = 2, D = 2;
  RouteOpts o;
  o.k = K;
  o.normalize = 1;
  std::vector<float> logits = {0.0f, 1.0f, 2.0f, 3.0f, 3.0f, 3.0f,
                               0.0f, 0.0f, -1.0f, 5.0f, 2.0f, 0.5f};
  RouteOut r = route(logits, T, Ep, o);
  std::vector<float> x = tokenRows(T);
  DispatchOut d = dispatch(x, T, D, r.w, r.e, K, Ep, -1);
  std::vector<float> out(T * D);
  moert_memref_2d rd = desc2(d.rows.data(), T * K, D),
                  sd = desc2(d.tokenSlot.data(), T, K),
                  wd = desc2(d.cw.data(), T, K),
                  pd = desc2<float>(nullptr, 0, D),
                  od = desc2(out.data(), T, D);
  _mlir_ciface_moert_cpu_combine(&rd, &sd, &wd, &pd, &od, MOERT_F32);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < D; ++c) {
      float v = x[t * D + c];
      EXPECT_EQ(out[t * D + c], 0.0f + r.W(t, 0) * v + r.W(t, 1) * v);
      EXPECT_NEAR(out[t * D + c], v, 1e-5f * (1.0f + std::fabs(v)));
    }
}

//===----------------------------------------------------------------------===//
// Expert statistics
//===----------------------------------------------------------------------===//

TEST(ExpertStats, CountsAndGateMass) {
  std::vector<int32_t> e = {0, 2, 2, -1, 9, 0};
  std::vector<float> w = {0.5f, 0.25f, 0.125f, 7.0f, 7.0f, 0.25f};
  std::vector<int64_t> counts(3, -7);
  std::vector<float> mass(3, kSentinelW);
  moert_memref_2d ed = desc2(e.data(), 3, 2), wd = desc2(w.data(), 3, 2);
  moert_memref_1d cd = desc1(counts.data(), 3), md = desc1(mass.data(), 3);
  _mlir_ciface_moert_cpu_expert_stats(&ed, &wd, &cd, &md);
  EXPECT_EQ(counts, (std::vector<int64_t>{2, 0, 2}));
  EXPECT_EQ(mass, (std::vector<float>{0.75f, 0.0f, 0.375f}));
  // gate_mass of another length: nothing written.
  std::vector<float> mass2(2, kSentinelW);
  moert_memref_1d md2 = desc1(mass2.data(), 2);
  counts.assign(3, -7);
  _mlir_ciface_moert_cpu_expert_stats(&ed, &wd, &cd, &md2);
  EXPECT_EQ(counts, std::vector<int64_t>(3, -7));
}

//===----------------------------------------------------------------------===//
// Element-type conversions
//===----------------------------------------------------------------------===//

TEST(Dtype, Bf16RoundTripsEveryValue) {
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    float f = moert_bf16_to_f32(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(moert_bf16_to_f32(moert_f32_to_bf16(f))));
      continue;
    }
    ASSERT_EQ(moert_f32_to_bf16(f), h) << std::hex << h;
  }
}

TEST(Dtype, Bf16RoundingAndSpecials) {
  EXPECT_EQ(moert_f32_to_bf16(1.0f + 0x1p-8f), 0x3F80);            // tie, even
  EXPECT_EQ(moert_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3F82);        // tie, even
  EXPECT_EQ(moert_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3F81); // above
  EXPECT_EQ(moert_f32_to_bf16(FLT_MAX), 0x7F80);                   // to inf
  EXPECT_EQ(moert_f32_to_bf16(-kInf), 0xFF80);
  EXPECT_EQ(moert_f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(moert_f32_to_bf16(0x1p-130f), 0x0008); // subnormal kept
  // A NaN whose payload lives only in the low bits must not become inf.
  uint32_t snan = 0x7F800001u;
  float f;
  std::memcpy(&f, &snan, 4);
  EXPECT_TRUE(std::isnan(moert_bf16_to_f32(moert_f32_to_bf16(f))));
}

TEST(Dtype, F16RoundTripsEveryValue) {
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    float f = moert_f16_to_f32(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(moert_f16_to_f32(moert_f32_to_f16(f))));
      continue;
    }
    ASSERT_EQ(moert_f32_to_f16(f), h) << std::hex << h;
  }
}

TEST(Dtype, F16RoundingSubnormalsAndOverflow) {
  EXPECT_EQ(moert_f16_to_f32(0x0001), 0x1p-24f);
  EXPECT_EQ(moert_f16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(moert_f32_to_f16(1.0f + 0x1p-11f), 0x3C00);     // tie, even
  EXPECT_EQ(moert_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02); // tie, even
  EXPECT_EQ(moert_f32_to_f16(65519.0f), 0x7BFF);
  EXPECT_EQ(moert_f32_to_f16(65520.0f), 0x7C00); // tie with 2^16 -> inf
  EXPECT_EQ(moert_f32_to_f16(-1.0e9f), 0xFC00);
  EXPECT_EQ(moert_f32_to_f16(0x1p-25f), 0x0000);            // tie, even 0
  EXPECT_EQ(moert_f32_to_f16(0x1p-25f + 0x1p-40f), 0x0001); // above half
  EXPECT_EQ(moert_f32_to_f16(3 * 0x1p-25f), 0x0002);        // 1.5 ulp, even
  EXPECT_EQ(moert_f32_to_f16(0x1p-14f - 0x1p-26f), 0x0400); // carry: normal
  EXPECT_EQ(moert_f32_to_f16(-0x1p-30f), 0x8000);
  EXPECT_EQ(moert_f32_to_f16(1.0e-45f), 0x0000); // f32 subnormal
  EXPECT_EQ(moert_f32_to_f16(kInf), 0x7C00);
  EXPECT_TRUE(std::isnan(moert_f16_to_f32(moert_f32_to_f16(kNaN))));
}

} // namespace
