/*===- dtype.c - f16 / bf16 <-> f32 conversions -----------------*- C -*-===*
 *
 * Bit-level conversions, so the result does not depend on the compiler's
 * _Float16 / __bf16 support or on the FPU's rounding mode.
 *
 *===----------------------------------------------------------------------===*/

#include "dtype.h"

#include "moert/cpu_kernels.h"

#include <string.h>

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static float f32_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

float moert_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0) {
    /* Zero or subnormal: mant * 2^-24, exact in f32. */
    float mag = (float)mant * 0x1p-24f;
    return sign ? -mag : mag;
  }
  if (exp == 0x1F) /* inf / NaN: keep the payload in the top mantissa bits */
    return f32_from_bits(sign | 0x7F800000u | (mant << 13));
  return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t moert_f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  uint32_t absx = x & 0x7FFFFFFFu;
  if (absx >= 0x7F800000u) {
    if (absx == 0x7F800000u)
      return sign | 0x7C00u;
    /* NaN: set the quiet bit so truncating the payload cannot make an inf. */
    return (uint16_t)(sign | 0x7E00u | ((absx >> 13) & 0x3FFu));
  }
  /* 65520 is halfway between 65504 (max f16, odd mantissa) and 2^16, so it
   * and everything above round (to even) to infinity. */
  if (absx >= 0x477FF000u)
    return sign | 0x7C00u;
  if (absx < 0x38800000u) {
    /* Below 2^-14: an f16 subnormal, m * 2^-24. The f32 value is
     * mant24 * 2^(exp-150), so m = mant24 >> (126 - exp), rounded. A
     * rounding carry to 0x400 is the correct encoding of 2^-14. */
    uint32_t exp = absx >> 23;
    uint32_t shift = 126u - exp;
    if (exp == 0 || shift > 24u) /* < 2^-25 (or f32 subnormal): to zero */
      return sign;
    uint32_t mant = (absx & 0x7FFFFFu) | 0x800000u;
    uint32_t q = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u)))
      ++q;
    return (uint16_t)(sign | q);
  }
  /* Normal: rebias the exponent (127 - 15) and drop 13 mantissa bits; a
   * carry out of the mantissa correctly bumps the exponent. */
  uint32_t base = (absx - 0x38000000u) >> 13;
  uint32_t rem = absx & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (base & 1u)))
    ++base;
  return (uint16_t)(sign | base);
}

float moert_bf16_to_f32(uint16_t b) { return f32_from_bits((uint32_t)b << 16); }

uint16_t moert_f32_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) /* NaN: quieten, keep sign/payload */
    return (uint16_t)((x >> 16) | 0x0040u);
  /* Round to nearest even on the low 16 bits; overflow carries into the
   * exponent and ends at infinity, as it should. */
  x += 0x7FFFu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

size_t moert_elem_size(int64_t elem_type) {
  switch (elem_type) {
  case MOERT_F32:
    return 4;
  case MOERT_F16:
  case MOERT_BF16:
    return 2;
  default:
    return 0;
  }
}

float moert_load_elem(const void *p, int64_t elem_type) {
  if (elem_type == MOERT_F32) {
    float f;
    memcpy(&f, p, sizeof f);
    return f;
  }
  uint16_t h;
  memcpy(&h, p, sizeof h);
  return elem_type == MOERT_F16 ? moert_f16_to_f32(h) : moert_bf16_to_f32(h);
}

void moert_store_elem(void *p, int64_t elem_type, float v) {
  if (elem_type == MOERT_F32) {
    memcpy(p, &v, sizeof v);
    return;
  }
  uint16_t h = elem_type == MOERT_F16 ? moert_f32_to_f16(v) : moert_f32_to_bf16(v);
  memcpy(p, &h, sizeof h);
}
