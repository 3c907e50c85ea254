//===- fake_model_util.h - access to the fake model libraries ---*- C++ -*-===//

#ifndef MOERT_TEST_FAKE_MODEL_UTIL_H
#define MOERT_TEST_FAKE_MODEL_UTIL_H

#include <dlfcn.h>

#include "test_util.h"

#ifndef MOERT_FAKE_MODEL_PATH
#error "MOERT_FAKE_MODEL_PATH must name the fake model library"
#endif
#ifndef MOERT_FAKE_MODEL_NOSTATS_PATH
#error "MOERT_FAKE_MODEL_NOSTATS_PATH must name the fake model library"
#endif
#ifndef MOERT_FAKE_MODEL_NOSYM_PATH
#error "MOERT_FAKE_MODEL_NOSYM_PATH must name the fake model library"
#endif

namespace moert_test {

// Mirrors the FAKE_* variants of fake_model.c.
enum FakeVariant {
  kFakeOk = 0,
  kFakeBadAbiVersion = 1,
  kFakeNullModelName = 2,
  kFakeRankZero = 3,
  kFakeUnknownDtype = 4,
  kFakeDuplicateArg = 5,
  kFakeNullInvoke = 6,
  kFakeDescribeNull = 7,
  kFakeDynamicResultOnly = 8,
  kFakeDuplicateEntry = 9,
  kFakeNoEntries = 10,
  kFakeNullArgName = 11,
  kFakeRankTooBig = 12,
  kFakeWrongResultShape = 20,
  kFakeInvokeFails = 21,
  kFakeNegativeStat = 22,
  kFakeMisalignedResult = 23,
  kFakeGateMass = 24,
};

/// Sets the misbehaviour of the fake model (the library libmoert loads is
/// the same object: dlopen returns the already-loaded copy).
inline void SetFakeVariant(int variant) {
  static void *handle = dlopen(MOERT_FAKE_MODEL_PATH, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(handle, nullptr) << dlerror();
  auto set = reinterpret_cast<void (*)(int)>(
      dlsym(handle, "fake_model_set_variant"));
  ASSERT_NE(set, nullptr);
  set(variant);
}

/// The fake model's weight cache counts since the last look: {copies made,
/// copies reused, calls whose x the cache called constant}.
inline std::vector<int64_t> TakeFakeCacheCounts() {
  static void *handle = dlopen(MOERT_FAKE_MODEL_PATH, RTLD_NOW | RTLD_LOCAL);
  std::vector<int64_t> counts(3, -1);
  EXPECT_NE(handle, nullptr) << dlerror();
  auto take = reinterpret_cast<void (*)(int64_t *)>(
      dlsym(handle, "fake_model_take_cache_counts"));
  EXPECT_NE(take, nullptr);
  if (take)
    take(counts.data());
  return counts;
}

/// Owns a model.
struct ModelPtr {
  moert_model_t *m = nullptr;
  ~ModelPtr() { moert_model_release(m); }
};

/// Resets the fake variant around each test.
class FakeModelTest : public ::testing::Test {
protected:
  void SetUp() override { SetFakeVariant(kFakeOk); }
  void TearDown() override { SetFakeVariant(kFakeOk); }
};

} // namespace moert_test

#endif // MOERT_TEST_FAKE_MODEL_UTIL_H
