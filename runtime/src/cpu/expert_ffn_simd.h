/*===- expert_ffn_simd.h - Vector primitives of the expert FFN --*- C -*-===*
 *
 * Internal to runtime/src/cpu/expert_ffn.c. One family of `static inline`
 * primitives per instruction set, all with the same names behind a prefix:
 *
 *   s_  portable scalar C (a "vector" of 1 float);
 *   y_  AVX2 + FMA + F16C, 8 floats (x86-64 only);
 *   z_  AVX-512 F/BW/VL/DQ, 16 floats (x86-64 only).
 *
 * The x86 families carry `target` attributes, so this file builds with plain
 * -O2 and no -m flags; expert_ffn.c calls them only after checking the CPU
 * at run time. expert_ffn_kernels.h is written once against these names and
 * instantiated for each family.
 *
 * Weight loads (`ldw`) read n elements (n >= the vector length: a full
 * vector) of a weight dtype (0 f32, 1 f16, 2 bf16) and widen them to f32;
 * lanes >= n are zero and their memory is never touched. f16 and bf16 widen
 * exactly (bf16 is the top half of an f32; F16C/AVX-512 vcvtph2ps is exact,
 * subnormals included).
 *
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_SRC_CPU_EXPERT_FFN_SIMD_H
#define MOERT_SRC_CPU_EXPERT_FFN_SIMD_H

#include "dtype.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* -DMOERT_FFN_NO_X86 builds the portable kernels only, as on other
 * architectures (used to test that build on x86). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) &&        \
    !defined(MOERT_FFN_NO_X86)
#define MOERT_FFN_X86 1
#include <immintrin.h>
#else
#define MOERT_FFN_X86 0
#endif

#define MOERT_AI static inline __attribute__((always_inline))

/* Constants of the vector exp (Cephes expf): exp(x) = 2^n * p(r) with
 * n = round(x log2 e), r = x - n ln 2 (ln 2 split in two for exactness).
 * Inputs are clamped to [-87, 88] so 2^n stays a normal float: exp of
 * anything below -87 gives ~1.6e-38 instead of a smaller number or 0, and
 * above 88 ~1.65e38 instead of inf -- both harmless for the activations
 * built on it (x / (1 + exp(-a x)) and erfc), which the callers check. */
#define MOERT_EXP_LO (-87.0f)
#define MOERT_EXP_HI 88.0f
#define MOERT_LOG2E 1.44269504088896341f
#define MOERT_LN2_HI 0.693359375f
#define MOERT_LN2_LO (-2.12194440e-4f)
#define MOERT_EXP_P0 1.9875691500e-4f
#define MOERT_EXP_P1 1.3981999507e-3f
#define MOERT_EXP_P2 8.3334519073e-3f
#define MOERT_EXP_P3 4.1665795894e-2f
#define MOERT_EXP_P4 1.6666665459e-1f
#define MOERT_EXP_P5 5.0000001201e-1f

/*===----------------------------------------------------------------------===*
 * Scalar
 *===----------------------------------------------------------------------===*/

typedef float s_vf;
MOERT_AI s_vf s_zero(void) { return 0.0f; }
MOERT_AI s_vf s_set1(float a) { return a; }
MOERT_AI s_vf s_load(const float *p) { return *p; }
MOERT_AI s_vf s_loadn(const float *p, int64_t n) { return n > 0 ? *p : 0.0f; }
MOERT_AI void s_store(float *p, s_vf v) { *p = v; }
MOERT_AI void s_storen(float *p, s_vf v, int64_t n) {
  if (n > 0)
    *p = v;
}
/* Two roundings: the scalar family has no guaranteed fast fused
 * multiply-add, and the file is built with -ffp-contract=off. */
MOERT_AI s_vf s_fma(s_vf a, s_vf b, s_vf c) { return a * b + c; }
MOERT_AI s_vf s_add(s_vf a, s_vf b) { return a + b; }
MOERT_AI s_vf s_sub(s_vf a, s_vf b) { return a - b; }
MOERT_AI s_vf s_mul(s_vf a, s_vf b) { return a * b; }
MOERT_AI s_vf s_div(s_vf a, s_vf b) { return a / b; }
/* min/max with the x86 operand rule: NaN in `b` (the data) propagates. */
MOERT_AI s_vf s_min(s_vf a, s_vf b) { return a < b ? a : b; }
MOERT_AI s_vf s_max(s_vf a, s_vf b) { return a > b ? a : b; }
MOERT_AI s_vf s_bcast(const float *p) { return *p; }
MOERT_AI s_vf s_ldw(const void *p, int dtype, int64_t n) {
  if (n <= 0)
    return 0.0f;
  if (dtype == 0)
    return *(const float *)p;
  uint16_t h;
  memcpy(&h, p, 2);
  return dtype == 1 ? moert_f16_to_f32(h) : moert_bf16_to_f32(h);
}
MOERT_AI s_vf s_evens(s_vf lo, s_vf hi) {
  (void)hi;
  return lo;
}
MOERT_AI void s_transpose(s_vf *r) { (void)r; }
MOERT_AI float s_hsum(s_vf v) { return v; }
MOERT_AI s_vf s_exp(s_vf x) { return expf(x); }
MOERT_AI s_vf s_abs(s_vf x) { return fabsf(x); }
/* x < 0 ? a : b */
MOERT_AI s_vf s_sel_neg(s_vf x, s_vf a, s_vf b) { return x < 0.0f ? a : b; }

#if MOERT_FFN_X86

/*===----------------------------------------------------------------------===*
 * AVX2 + FMA + F16C
 *===----------------------------------------------------------------------===*/

#define MOERT_Y_TARGET "avx2,fma,f16c"
#define MOERT_YI                                                               \
  static inline __attribute__((always_inline, target(MOERT_Y_TARGET)))

typedef __m256 y_vf;
MOERT_YI y_vf y_zero(void) { return _mm256_setzero_ps(); }
MOERT_YI y_vf y_set1(float a) { return _mm256_set1_ps(a); }
MOERT_YI y_vf y_load(const float *p) { return _mm256_loadu_ps(p); }
MOERT_YI __m256i y_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 0 ? 0 : n > 8 ? 8 : n)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
MOERT_YI y_vf y_loadn(const float *p, int64_t n) {
  if (n >= 8)
    return _mm256_loadu_ps(p);
  return _mm256_maskload_ps(p, y_mask(n));
}
MOERT_YI void y_store(float *p, y_vf v) { _mm256_storeu_ps(p, v); }
MOERT_YI void y_storen(float *p, y_vf v, int64_t n) {
  if (n >= 8)
    _mm256_storeu_ps(p, v);
  else if (n > 0)
    _mm256_maskstore_ps(p, y_mask(n), v);
}
MOERT_YI y_vf y_fma(y_vf a, y_vf b, y_vf c) { return _mm256_fmadd_ps(a, b, c); }
MOERT_YI y_vf y_add(y_vf a, y_vf b) { return _mm256_add_ps(a, b); }
MOERT_YI y_vf y_sub(y_vf a, y_vf b) { return _mm256_sub_ps(a, b); }
MOERT_YI y_vf y_mul(y_vf a, y_vf b) { return _mm256_mul_ps(a, b); }
MOERT_YI y_vf y_div(y_vf a, y_vf b) { return _mm256_div_ps(a, b); }
MOERT_YI y_vf y_min(y_vf a, y_vf b) { return _mm256_min_ps(a, b); }
MOERT_YI y_vf y_max(y_vf a, y_vf b) { return _mm256_max_ps(a, b); }
MOERT_YI y_vf y_bcast(const float *p) { return _mm256_broadcast_ss(p); }
MOERT_YI y_vf y_bf16_widen(__m128i h) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
MOERT_YI y_vf y_ldw(const void *p, int dtype, int64_t n) {
  if (dtype == 0)
    return y_loadn((const float *)p, n);
  __m128i h;
  if (n >= 8) {
    h = _mm_loadu_si128((const __m128i *)p);
  } else {
    uint16_t tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (n > 0)
      memcpy(tmp, p, (size_t)n * 2);
    h = _mm_loadu_si128((const __m128i *)tmp);
  }
  return dtype == 1 ? _mm256_cvtph_ps(h) : y_bf16_widen(h);
}
/* Lanes 0, 2, 4, ... of the 16-float concatenation lo:hi. */
MOERT_YI y_vf y_evens(y_vf lo, y_vf hi) {
  __m256 s = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
  return _mm256_castpd_ps(
      _mm256_permute4x64_pd(_mm256_castps_pd(s), _MM_SHUFFLE(3, 1, 2, 0)));
}
MOERT_YI void y_transpose(y_vf *r) {
  __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}
MOERT_YI float y_hsum(y_vf v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
MOERT_YI y_vf y_exp(y_vf x) {
  x = _mm256_max_ps(_mm256_set1_ps(MOERT_EXP_LO),
                    _mm256_min_ps(_mm256_set1_ps(MOERT_EXP_HI), x));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(MOERT_LOG2E)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(MOERT_LN2_HI), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(MOERT_LN2_LO), r);
  __m256 p = _mm256_set1_ps(MOERT_EXP_P0);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(MOERT_EXP_P1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(MOERT_EXP_P2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(MOERT_EXP_P3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(MOERT_EXP_P4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(MOERT_EXP_P5));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
  p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
  __m256i e = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
MOERT_YI y_vf y_abs(y_vf x) {
  return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
}
MOERT_YI y_vf y_sel_neg(y_vf x, y_vf a, y_vf b) {
  return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
}

/*===----------------------------------------------------------------------===*
 * AVX-512
 *===----------------------------------------------------------------------===*/

#define MOERT_Z_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"
#define MOERT_ZI                                                               \
  static inline __attribute__((always_inline, target(MOERT_Z_TARGET)))

typedef __m512 z_vf;
MOERT_ZI __mmask16 z_mask(int64_t n) {
  return n >= 16 ? (__mmask16)0xFFFF
                 : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}
MOERT_ZI z_vf z_zero(void) { return _mm512_setzero_ps(); }
MOERT_ZI z_vf z_set1(float a) { return _mm512_set1_ps(a); }
MOERT_ZI z_vf z_load(const float *p) { return _mm512_loadu_ps(p); }
MOERT_ZI z_vf z_loadn(const float *p, int64_t n) {
  if (n >= 16)
    return _mm512_loadu_ps(p);
  return _mm512_maskz_loadu_ps(z_mask(n), p);
}
MOERT_ZI void z_store(float *p, z_vf v) { _mm512_storeu_ps(p, v); }
MOERT_ZI void z_storen(float *p, z_vf v, int64_t n) {
  if (n >= 16)
    _mm512_storeu_ps(p, v);
  else
    _mm512_mask_storeu_ps(p, z_mask(n), v);
}
MOERT_ZI z_vf z_fma(z_vf a, z_vf b, z_vf c) { return _mm512_fmadd_ps(a, b, c); }
MOERT_ZI z_vf z_add(z_vf a, z_vf b) { return _mm512_add_ps(a, b); }
MOERT_ZI z_vf z_sub(z_vf a, z_vf b) { return _mm512_sub_ps(a, b); }
MOERT_ZI z_vf z_mul(z_vf a, z_vf b) { return _mm512_mul_ps(a, b); }
MOERT_ZI z_vf z_div(z_vf a, z_vf b) { return _mm512_div_ps(a, b); }
MOERT_ZI z_vf z_min(z_vf a, z_vf b) { return _mm512_min_ps(a, b); }
MOERT_ZI z_vf z_max(z_vf a, z_vf b) { return _mm512_max_ps(a, b); }
MOERT_ZI z_vf z_bcast(const float *p) { return _mm512_set1_ps(*p); }
MOERT_ZI z_vf z_ldw(const void *p, int dtype, int64_t n) {
  if (dtype == 0)
    return z_loadn((const float *)p, n);
  __m256i h = n >= 16 ? _mm256_loadu_si256((const __m256i *)p)
                      : _mm256_maskz_loadu_epi16(z_mask(n), p);
  if (dtype == 1)
    return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
MOERT_ZI z_vf z_evens(z_vf lo, z_vf hi) {
  const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20,
                                        22, 24, 26, 28, 30);
  return _mm512_permutex2var_ps(lo, idx, hi);
}
/* In-register 16x16 transpose: r[i] lane j <- r[j] lane i. */
MOERT_ZI void z_transpose(z_vf *r) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  /* r[4i + j], 128-bit lane L: rows 4i..4i+3 of column 4L + j. */
  for (int i = 0; i < 4; ++i) {
    r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int j = 0; j < 4; ++j) {
    __m512 ab_lo = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44);
    __m512 ab_hi = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xEE);
    __m512 cd_lo = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44);
    __m512 cd_hi = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xEE);
    t[j] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0x88);
    t[4 + j] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0xDD);
    t[8 + j] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0x88);
    t[12 + j] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0xDD);
  }
  for (int i = 0; i < 16; ++i)
    r[i] = t[i];
}
/* Fixed reduction tree, so a dot product's rounding depends only on its
 * length. */
MOERT_ZI float z_hsum(z_vf v) {
  __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
MOERT_ZI z_vf z_exp(z_vf x) {
  x = _mm512_max_ps(_mm512_set1_ps(MOERT_EXP_LO),
                    _mm512_min_ps(_mm512_set1_ps(MOERT_EXP_HI), x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(MOERT_LOG2E)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(MOERT_LN2_HI), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(MOERT_LN2_LO), r);
  __m512 p = _mm512_set1_ps(MOERT_EXP_P0);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MOERT_EXP_P1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MOERT_EXP_P2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MOERT_EXP_P3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MOERT_EXP_P4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MOERT_EXP_P5));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
  p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
  /* p * 2^n; scalef handles n exactly (n is an integer in [-126, 127]). */
  return _mm512_scalef_ps(p, n);
}
MOERT_ZI z_vf z_abs(z_vf x) { return _mm512_abs_ps(x); }
MOERT_ZI z_vf z_sel_neg(z_vf x, z_vf a, z_vf b) {
  return _mm512_mask_blend_ps(
      _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), b, a);
}

#endif /* MOERT_FFN_X86 */

#endif /* MOERT_SRC_CPU_EXPERT_FFN_SIMD_H */
