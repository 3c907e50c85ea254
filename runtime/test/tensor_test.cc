//===- tensor_test.cc - tensors, shapes, dtypes, float conversions --------===//

#include <cmath>
#include <limits>

#include "test_util.h"

using namespace moert_test;

TEST(Dtype, SizesAndNames) {
  EXPECT_EQ(moert_dtype_size(MOERT_DTYPE_F32), 4u);
  EXPECT_EQ(moert_dtype_size(MOERT_DTYPE_F16), 2u);
  EXPECT_EQ(moert_dtype_size(MOERT_DTYPE_BF16), 2u);
  EXPECT_EQ(moert_dtype_size(MOERT_DTYPE_I32), 4u);
  EXPECT_EQ(moert_dtype_size(MOERT_DTYPE_I64), 8u);
  EXPECT_EQ(moert_dtype_size(5), 0u);
  EXPECT_EQ(moert_dtype_size(-1), 0u);
  EXPECT_STREQ(moert_dtype_name(MOERT_DTYPE_BF16), "bf16");
  EXPECT_STREQ(moert_dtype_name(42), "unknown");
  int32_t d = -1;
  EXPECT_EQ(moert_dtype_from_name("i64", &d), 0);
  EXPECT_EQ(d, MOERT_DTYPE_I64);
  EXPECT_EQ(moert_dtype_from_name("f64", &d), -1);
  EXPECT_TRUE(moert_dtype_is_float(MOERT_DTYPE_BF16));
  EXPECT_FALSE(moert_dtype_is_float(MOERT_DTYPE_I32));
}

TEST(Shape, ElementCount) {
  int64_t n = -1;
  const int64_t s[] = {2, 3, 4};
  EXPECT_TRUE(IsOk(moert_shape_element_count(3, s, &n)));
  EXPECT_EQ(n, 24);
  EXPECT_TRUE(IsOk(moert_shape_element_count(0, nullptr, &n)));
  EXPECT_EQ(n, 1);
  const int64_t z[] = {5, 0, 7};
  EXPECT_TRUE(IsOk(moert_shape_element_count(3, z, &n)));
  EXPECT_EQ(n, 0);
}

TEST(Shape, ElementCountOverflow) {
  int64_t n = -1;
  const int64_t big[] = {int64_t(1) << 32, int64_t(1) << 32};
  EXPECT_TRUE(IsError(moert_shape_element_count(2, big, &n),
                      MOERT_STATUS_OUT_OF_RANGE, {"overflows"}));
  EXPECT_EQ(n, 0);
  // A zero dimension does not hide an overflow elsewhere being checked:
  // 0 * anything is 0, which is representable.
  const int64_t zero_big[] = {0, INT64_MAX, INT64_MAX};
  EXPECT_TRUE(IsOk(moert_shape_element_count(3, zero_big, &n)));
  EXPECT_EQ(n, 0);
}

TEST(Shape, NegativeDimensionAndBadRank) {
  int64_t n;
  const int64_t neg[] = {2, -1};
  EXPECT_TRUE(IsError(moert_shape_element_count(2, neg, &n),
                      MOERT_STATUS_INVALID_ARGUMENT, {"negative"}));
  const int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  EXPECT_TRUE(IsError(moert_shape_element_count(9, nine, &n),
                      MOERT_STATUS_INVALID_ARGUMENT, {"rank 9"}));
  EXPECT_TRUE(IsError(moert_shape_element_count(2, nullptr, &n),
                      MOERT_STATUS_INVALID_ARGUMENT, {"NULL"}));
}

TEST(Shape, ByteSizeOverflow) {
  size_t bytes = 1;
  // 2^62 elements fit int64, 2^62 * 4 bytes do not.
  const int64_t s[] = {int64_t(1) << 62};
  int64_t n;
  EXPECT_TRUE(IsOk(moert_shape_element_count(1, s, &n)));
  EXPECT_TRUE(IsError(moert_shape_byte_size(MOERT_DTYPE_F32, 1, s, &bytes),
                      MOERT_STATUS_OUT_OF_RANGE, {"overflows"}));
  EXPECT_EQ(bytes, 0u);
  const int64_t ok[] = {3, 5};
  EXPECT_TRUE(IsOk(moert_shape_byte_size(MOERT_DTYPE_I64, 2, ok, &bytes)));
  EXPECT_EQ(bytes, 120u);
  EXPECT_TRUE(IsError(moert_shape_byte_size(9, 2, ok, &bytes),
                      MOERT_STATUS_INVALID_ARGUMENT, {"dtype"}));
}

TEST(Tensor, CreateIsZeroFilledAndAligned) {
  const int64_t s[] = {3, 5};
  TensorPtr t;
  ASSERT_TRUE(IsOk(moert_tensor_create(MOERT_DTYPE_F32, 2, s, t.out())));
  EXPECT_EQ(moert_tensor_dtype(t.get()), MOERT_DTYPE_F32);
  EXPECT_EQ(moert_tensor_rank(t.get()), 2);
  EXPECT_EQ(Shape(t.get()), (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(moert_tensor_dim(t.get(), 1), 5);
  EXPECT_EQ(moert_tensor_dim(t.get(), 2), -1);
  EXPECT_EQ(moert_tensor_dim(t.get(), -1), -1);
  EXPECT_EQ(moert_tensor_element_count(t.get()), 15);
  EXPECT_EQ(moert_tensor_byte_size(t.get()), 60u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(moert_tensor_data(t.get())) % 64, 0u);
  for (float v : Values<float>(t.get()))
    EXPECT_EQ(v, 0.0f);
}

TEST(Tensor, ScalarAndEmpty) {
  TensorPtr scalar, empty;
  ASSERT_TRUE(
      IsOk(moert_tensor_create(MOERT_DTYPE_I64, 0, nullptr, scalar.out())));
  EXPECT_EQ(moert_tensor_element_count(scalar.get()), 1);
  EXPECT_EQ(moert_tensor_byte_size(scalar.get()), 8u);
  const int64_t s[] = {0, 4};
  ASSERT_TRUE(IsOk(moert_tensor_create(MOERT_DTYPE_F16, 2, s, empty.out())));
  EXPECT_EQ(moert_tensor_element_count(empty.get()), 0);
  EXPECT_NE(moert_tensor_data(empty.get()), nullptr);
}

TEST(Tensor, CreateRejectsBadShapes) {
  moert_tensor_t *t = reinterpret_cast<moert_tensor_t *>(0x1);
  const int64_t neg[] = {-2};
  EXPECT_TRUE(IsError(moert_tensor_create(MOERT_DTYPE_F32, 1, neg, &t),
                      MOERT_STATUS_INVALID_ARGUMENT, {"negative"}));
  EXPECT_EQ(t, nullptr);
  const int64_t huge[] = {int64_t(1) << 40, int64_t(1) << 40};
  EXPECT_TRUE(IsError(moert_tensor_create(MOERT_DTYPE_F32, 2, huge, &t),
                      MOERT_STATUS_OUT_OF_RANGE));
  const int64_t s[] = {1};
  EXPECT_TRUE(IsError(moert_tensor_create(17, 1, s, &t),
                      MOERT_STATUS_INVALID_ARGUMENT, {"dtype"}));
  EXPECT_TRUE(IsError(moert_tensor_create(MOERT_DTYPE_F32, -1, s, &t),
                      MOERT_STATUS_INVALID_ARGUMENT, {"rank"}));
  EXPECT_TRUE(IsError(moert_tensor_create(MOERT_DTYPE_F32, 1, s, nullptr),
                      MOERT_STATUS_INVALID_ARGUMENT));
}

TEST(Tensor, CreateCopyChecksSize) {
  std::vector<int32_t> v = {1, 2, 3, 4, 5, 6};
  const int64_t s[] = {2, 3};
  TensorPtr t;
  EXPECT_TRUE(IsError(moert_tensor_create_copy(MOERT_DTYPE_I32, 2, s, v.data(),
                                               20, t.out()),
                      MOERT_STATUS_INVALID_ARGUMENT, {"20", "24"}));
  ASSERT_TRUE(IsOk(moert_tensor_create_copy(MOERT_DTYPE_I32, 2, s, v.data(), 24,
                                            t.out())));
  v[0] = 100; // the tensor owns a copy
  EXPECT_EQ(Values<int32_t>(t.get()),
            (std::vector<int32_t>{1, 2, 3, 4, 5, 6}));
}

namespace {
struct ReleaseCounter {
  int calls = 0;
  void *last = nullptr;
};
void CountRelease(void *user, void *data) {
  auto *c = static_cast<ReleaseCounter *>(user);
  ++c->calls;
  c->last = data;
}
} // namespace

TEST(Tensor, WrapCallsReleaseOnce) {
  alignas(8) float data[4] = {1, 2, 3, 4};
  const int64_t s[] = {4};
  ReleaseCounter counter;
  moert_tensor_t *t;
  ASSERT_TRUE(IsOk(moert_tensor_wrap(MOERT_DTYPE_F32, 1, s, data, sizeof data,
                                     CountRelease, &counter, &t)));
  EXPECT_EQ(moert_tensor_data(t), data);
  moert_tensor_release(t);
  EXPECT_EQ(counter.calls, 1);
  EXPECT_EQ(counter.last, data);
}

TEST(Tensor, WrapErrorsDoNotCallRelease) {
  alignas(8) char data[32] = {};
  const int64_t s[] = {4};
  ReleaseCounter counter;
  moert_tensor_t *t;
  EXPECT_TRUE(IsError(moert_tensor_wrap(MOERT_DTYPE_F32, 1, s, data + 1, 16,
                                        CountRelease, &counter, &t),
                      MOERT_STATUS_INVALID_ARGUMENT, {"aligned"}));
  EXPECT_TRUE(IsError(moert_tensor_wrap(MOERT_DTYPE_F32, 1, s, data, 12,
                                        CountRelease, &counter, &t),
                      MOERT_STATUS_INVALID_ARGUMENT, {"12"}));
  EXPECT_TRUE(IsError(moert_tensor_wrap(MOERT_DTYPE_F32, 1, s, nullptr, 16,
                                        CountRelease, &counter, &t),
                      MOERT_STATUS_INVALID_ARGUMENT, {"NULL"}));
  EXPECT_EQ(counter.calls, 0);
  // Borrowing (no release function) works too.
  ASSERT_TRUE(IsOk(moert_tensor_wrap(MOERT_DTYPE_F32, 1, s, data, 16, nullptr,
                                     nullptr, &t)));
  moert_tensor_release(t);
}

TEST(Tensor, CloneIsDeep) {
  TensorPtr a(F32({2}, {1.5f, -2.0f}));
  TensorPtr b;
  ASSERT_TRUE(IsOk(moert_tensor_clone(a.get(), b.out())));
  static_cast<float *>(moert_tensor_data(a.get()))[0] = 9.0f;
  EXPECT_EQ(Values<float>(b.get()), (std::vector<float>{1.5f, -2.0f}));
}

TEST(Tensor, ConvertF32ToBf16AndBack) {
  TensorPtr a(F32({4}, {1.0f, -2.5f, 3.140625f, 1.0e30f}));
  TensorPtr b, c;
  ASSERT_TRUE(IsOk(moert_tensor_convert(a.get(), MOERT_DTYPE_BF16, b.out())));
  EXPECT_EQ(moert_tensor_dtype(b.get()), MOERT_DTYPE_BF16);
  EXPECT_EQ(moert_tensor_byte_size(b.get()), 8u);
  ASSERT_TRUE(IsOk(moert_tensor_convert(b.get(), MOERT_DTYPE_F32, c.out())));
  std::vector<float> v = Values<float>(c.get());
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], -2.5f);
  EXPECT_EQ(v[2], 3.140625f);
  EXPECT_NEAR(v[3], 1.0e30f, 1.0e30f / 128);
  TensorPtr i;
  const int64_t s[] = {2};
  ASSERT_TRUE(IsOk(moert_tensor_create(MOERT_DTYPE_I32, 1, s, i.out())));
  EXPECT_TRUE(IsError(moert_tensor_convert(i.get(), MOERT_DTYPE_F32, b.out()),
                      MOERT_STATUS_UNIMPLEMENTED, {"i32", "f32"}));
}

namespace {
uint16_t ToF16(float f) {
  uint16_t h;
  moert_status_t s = moert_convert_floats(MOERT_DTYPE_F32, &f, MOERT_DTYPE_F16,
                                          &h, 1);
  EXPECT_EQ(s, nullptr);
  return h;
}
uint16_t ToBF16(float f) {
  uint16_t h;
  moert_status_t s = moert_convert_floats(MOERT_DTYPE_F32, &f, MOERT_DTYPE_BF16,
                                          &h, 1);
  EXPECT_EQ(s, nullptr);
  return h;
}
float FromF16(uint16_t h) {
  float f;
  moert_status_t s = moert_convert_floats(MOERT_DTYPE_F16, &h, MOERT_DTYPE_F32,
                                          &f, 1);
  EXPECT_EQ(s, nullptr);
  return f;
}
float FromBF16(uint16_t h) {
  float f;
  moert_status_t s = moert_convert_floats(MOERT_DTYPE_BF16, &h,
                                          MOERT_DTYPE_F32, &f, 1);
  EXPECT_EQ(s, nullptr);
  return f;
}
float Bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
} // namespace

TEST(Convert, F16RoundToNearestEven) {
  EXPECT_EQ(ToF16(1.0f), 0x3c00);
  EXPECT_EQ(ToF16(-2.0f), 0xc000);
  EXPECT_EQ(ToF16(65504.0f), 0x7bff);
  EXPECT_EQ(ToF16(65519.0f), 0x7bff);  // below the halfway point
  EXPECT_EQ(ToF16(65520.0f), 0x7c00);  // tie rounds to even = inf
  EXPECT_EQ(ToF16(1e10f), 0x7c00);
  EXPECT_EQ(ToF16(-INFINITY), 0xfc00);
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0).
  EXPECT_EQ(ToF16(1.0f + 0x1p-11f), 0x3c00);
  // 1 + 3 * 2^-11 is halfway between 1+2^-10 (odd) and 1+2^-9: up.
  EXPECT_EQ(ToF16(1.0f + 3 * 0x1p-11f), 0x3c02);
  EXPECT_EQ(ToF16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
  // Subnormals: 2^-24 is the smallest; 2^-25 ties to 0; just above rounds up.
  EXPECT_EQ(ToF16(0x1p-24f), 0x0001);
  EXPECT_EQ(ToF16(0x1p-25f), 0x0000);
  EXPECT_EQ(ToF16(0x1p-25f * 1.0001f), 0x0001);
  EXPECT_EQ(ToF16(3 * 0x1p-25f), 0x0002); // 1.5 ulp ties to even 2
  EXPECT_EQ(ToF16(0x1p-14f), 0x0400);     // smallest normal
  EXPECT_EQ(ToF16(0x1p-14f - 0x1p-26f), 0x0400); // rounds up into normal
  EXPECT_EQ(ToF16(-0.0f), 0x8000);
  EXPECT_EQ(FromF16(0x0001), 0x1p-24f);
  EXPECT_EQ(FromF16(0x03ff), 1023 * 0x1p-24f);
  EXPECT_EQ(FromF16(0x7bff), 65504.0f);
  EXPECT_TRUE(std::isinf(FromF16(0x7c00)));
  EXPECT_TRUE(std::signbit(FromF16(0x8000)));
  // Every f16 survives a round trip through f32.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
      continue; // NaNs below
    ASSERT_EQ(ToF16(FromF16(static_cast<uint16_t>(h))), h) << h;
  }
}

TEST(Convert, NaNIsPreserved) {
  float qnan = std::numeric_limits<float>::quiet_NaN();
  uint16_t h = ToF16(qnan);
  EXPECT_EQ(h & 0x7c00, 0x7c00);
  EXPECT_NE(h & 0x3ff, 0);
  EXPECT_TRUE(std::isnan(FromF16(h)));
  // A signalling NaN whose payload lives only in the low bits stays NaN.
  float snan = Bits(0xff800001u);
  uint16_t hs = ToF16(snan);
  EXPECT_TRUE(std::isnan(FromF16(hs)));
  EXPECT_EQ(hs & 0x8000, 0x8000);
  uint16_t bs = ToBF16(snan);
  EXPECT_TRUE(std::isnan(FromBF16(bs)));
  EXPECT_EQ(bs & 0x8000, 0x8000);
  EXPECT_TRUE(std::isnan(FromBF16(ToBF16(qnan))));
  // f16 NaN -> bf16 stays NaN.
  uint16_t out;
  uint16_t in = 0x7d00;
  EXPECT_TRUE(IsOk(moert_convert_floats(MOERT_DTYPE_F16, &in, MOERT_DTYPE_BF16,
                                        &out, 1)));
  EXPECT_TRUE(std::isnan(FromBF16(out)));
}

TEST(Convert, Bf16RoundToNearestEven) {
  EXPECT_EQ(ToBF16(1.0f), 0x3f80);
  EXPECT_EQ(ToBF16(Bits(0x3f808000u)), 0x3f80); // tie, even stays
  EXPECT_EQ(ToBF16(Bits(0x3f818000u)), 0x3f82); // tie, odd rounds up
  EXPECT_EQ(ToBF16(Bits(0x3f808001u)), 0x3f81);
  EXPECT_EQ(ToBF16(Bits(0x7f7fffffu)), 0x7f80); // FLT_MAX rounds to inf
  EXPECT_EQ(ToBF16(INFINITY), 0x7f80);
  EXPECT_EQ(FromBF16(0x4049), 3.140625f);
}

TEST(Convert, RejectsIntegers) {
  int32_t i = 0;
  float f;
  EXPECT_TRUE(IsError(moert_convert_floats(MOERT_DTYPE_I32, &i, MOERT_DTYPE_F32,
                                           &f, 1),
                      MOERT_STATUS_UNIMPLEMENTED));
}
