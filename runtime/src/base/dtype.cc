//===- dtype.cc - element types, shapes and float conversions -------------===//

#include <cstring>
#include <limits>

#include "base/internal.h"

namespace moert {

float F16ToF32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13); // inf, or NaN with its payload
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {
    // Subnormal: man * 2^-24, exact in f32.
    float v = static_cast<float>(man) * 0x1p-24f;
    std::memcpy(&bits, &v, sizeof bits);
    bits |= sign;
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t F32ToF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  uint32_t a = x & 0x7fffffffu;
  if (a > 0x7f800000u) // NaN: quiet, keep the leading payload bits
    return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u) // >= 65520 (or inf) rounds to inf
    return static_cast<uint16_t>(sign | 0x7c00u);
  if (a < 0x38800000u) { // below 2^-14: f16 subnormal or zero
    if (a < 0x33000000u) // below 2^-25 (a tie at 2^-25 goes to even 0)
      return sign;
    uint32_t e = a >> 23;                         // 102 .. 112
    uint32_t m = (a & 0x7fffffu) | 0x800000u;     // value = m * 2^(e-150)
    uint32_t shift = 126u - e;                    // 14 .. 24
    uint32_t q = m >> shift;                      // in units of 2^-24
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u)))
      ++q; // may carry into the smallest normal, which encodes correctly
    return static_cast<uint16_t>(sign | q);
  }
  uint32_t r = a - 0x38000000u; // rebias 127 -> 15
  uint32_t q = r >> 13;
  uint32_t rem = r & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (q & 1u)))
    ++q;
  return static_cast<uint16_t>(sign | q);
}

float BF16ToF32(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t F32ToBF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  if ((x & 0x7fffffffu) > 0x7f800000u) // NaN: quiet, keep sign and payload top
    return static_cast<uint16_t>((x >> 16) | 0x0040u);
  uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

// Validates rank and dimensions and counts the elements of a shape.
moert_status_t CountElements(int32_t rank, const int64_t *shape, int64_t *out) {
  if (rank < 0 || rank > MOERT_MAX_RANK)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "rank %d is outside [0, %d]",
                             static_cast<int>(rank), MOERT_MAX_RANK);
  if (rank > 0 && !shape)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "shape is NULL for rank %d", static_cast<int>(rank));
  int64_t n = 1;
  for (int32_t i = 0; i < rank; ++i)
    if (shape[i] < 0)
      return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                               "dimension %d is negative (%lld)",
                               static_cast<int>(i),
                               static_cast<long long>(shape[i]));
  for (int32_t i = 0; i < rank; ++i)
    if (__builtin_mul_overflow(n, shape[i], &n))
      return moert_status_make(MOERT_STATUS_OUT_OF_RANGE,
                               "element count of shape %s overflows int64",
                               ShapeString(rank, shape).c_str());
  *out = n;
  return nullptr;
}

moert_status_t CheckShape(int32_t dtype, int32_t rank, const int64_t *shape,
                          int64_t *numel, size_t *bytes) {
  size_t elem = moert_dtype_size(dtype);
  if (elem == 0)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "unknown dtype %d", static_cast<int>(dtype));
  int64_t n = 0;
  if (moert_status_t st = CountElements(rank, shape, &n))
    return st;
  int64_t b;
  if (__builtin_mul_overflow(n, static_cast<int64_t>(elem), &b) ||
      static_cast<uint64_t>(b) > std::numeric_limits<size_t>::max() ||
      static_cast<uint64_t>(b) >
          static_cast<uint64_t>(std::numeric_limits<ptrdiff_t>::max()))
    return moert_status_make(MOERT_STATUS_OUT_OF_RANGE,
                             "byte size of shape %s with %zu-byte elements "
                             "overflows",
                             ShapeString(rank, shape).c_str(), elem);
  if (numel)
    *numel = n;
  if (bytes)
    *bytes = static_cast<size_t>(b);
  return nullptr;
}

} // namespace moert

extern "C" {

MOERT_API_EXPORT size_t moert_dtype_size(int32_t dtype) {
  switch (dtype) {
  case MOERT_DTYPE_F32: return 4;
  case MOERT_DTYPE_F16: return 2;
  case MOERT_DTYPE_BF16: return 2;
  case MOERT_DTYPE_I32: return 4;
  case MOERT_DTYPE_I64: return 8;
  default: return 0;
  }
}

MOERT_API_EXPORT const char *moert_dtype_name(int32_t dtype) {
  switch (dtype) {
  case MOERT_DTYPE_F32: return "f32";
  case MOERT_DTYPE_F16: return "f16";
  case MOERT_DTYPE_BF16: return "bf16";
  case MOERT_DTYPE_I32: return "i32";
  case MOERT_DTYPE_I64: return "i64";
  default: return "unknown";
  }
}

MOERT_API_EXPORT int moert_dtype_from_name(const char *name,
                                           int32_t *out_dtype) {
  if (!name || !out_dtype)
    return -1;
  for (int32_t d = MOERT_DTYPE_F32; d <= MOERT_DTYPE_I64; ++d) {
    if (std::strcmp(name, moert_dtype_name(d)) == 0) {
      *out_dtype = d;
      return 0;
    }
  }
  return -1;
}

MOERT_API_EXPORT int moert_dtype_is_float(int32_t dtype) {
  return dtype == MOERT_DTYPE_F32 || dtype == MOERT_DTYPE_F16 ||
         dtype == MOERT_DTYPE_BF16;
}

MOERT_API_EXPORT moert_status_t moert_convert_floats(int32_t src_dtype,
                                                     const void *src,
                                                     int32_t dst_dtype,
                                                     void *dst, size_t count) {
  if (!moert_dtype_is_float(src_dtype) || !moert_dtype_is_float(dst_dtype))
    return moert_status_make(
        MOERT_STATUS_UNIMPLEMENTED,
        "cannot convert %s to %s: only f32, f16 and bf16 are converted",
        moert_dtype_name(src_dtype), moert_dtype_name(dst_dtype));
  if (count == 0)
    return nullptr;
  if (!src || !dst)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "NULL buffer in a float conversion");
  if (src_dtype == dst_dtype) {
    std::memcpy(dst, src, count * moert_dtype_size(src_dtype));
    return nullptr;
  }
  auto load = [&](size_t i) -> float {
    switch (src_dtype) {
    case MOERT_DTYPE_F32: return static_cast<const float *>(src)[i];
    case MOERT_DTYPE_F16:
      return moert::F16ToF32(static_cast<const uint16_t *>(src)[i]);
    default: return moert::BF16ToF32(static_cast<const uint16_t *>(src)[i]);
    }
  };
  for (size_t i = 0; i < count; ++i) {
    float v = load(i);
    switch (dst_dtype) {
    case MOERT_DTYPE_F32: static_cast<float *>(dst)[i] = v; break;
    case MOERT_DTYPE_F16:
      static_cast<uint16_t *>(dst)[i] = moert::F32ToF16(v);
      break;
    default: static_cast<uint16_t *>(dst)[i] = moert::F32ToBF16(v); break;
    }
  }
  return nullptr;
}

MOERT_API_EXPORT moert_status_t moert_shape_element_count(int32_t rank,
                                                          const int64_t *shape,
                                                          int64_t *out_count) {
  if (!out_count)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "out_count is NULL");
  *out_count = 0;
  return moert::CountElements(rank, shape, out_count);
}

MOERT_API_EXPORT moert_status_t moert_shape_byte_size(int32_t dtype,
                                                      int32_t rank,
                                                      const int64_t *shape,
                                                      size_t *out_bytes) {
  if (!out_bytes)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "out_bytes is NULL");
  *out_bytes = 0;
  return moert::CheckShape(dtype, rank, shape, nullptr, out_bytes);
}

} // extern "C"
