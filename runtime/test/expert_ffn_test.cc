//===- expert_ffn_test.cc - Tests of the fused expert FFN kernel -*- C++ -*-===//
//
// _mlir_ciface_moert_cpu_expert_ffn against a naive double-precision
// reference written here from docs/Semantics.md §3: every FFN form, both
// layouts, the three weight dtypes, the five activations, ragged and padded
// segments (empty, 1 row, primes, sizes that are no multiple of any tile),
// skipped rows, strided descriptors, every instruction set the CPU has and
// both kernel paths. Accuracy: normwise max|out - ref| / max|ref| <= 1e-4.
// Determinism: a fake parallel hook that runs the tasks in reverse or
// shuffled order (and a real threaded one) must give bit-identical output.
//
//===----------------------------------------------------------------------===//

#include "moert/cpu_kernels.h"

#include "../src/cpu/dtype.h"
#include "../src/cpu/expert_ffn_internal.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr float kSentinel = 12345.0f;

struct Form {
  int kind = MOERT_FFN_KIND_GLU, act = MOERT_ACT_KIND_SILU,
      gate_up = MOERT_GATE_UP_SEPARATE, layout = MOERT_LAYOUT_IN_OUT,
      dtype = MOERT_F32;
  bool b1 = false, b2 = false;
  double alpha = 1.0, up_shift = 0.0, limit = 0.0;
};

std::string FormName(const Form &f) {
  static const char *acts[] = {"silu", "gelu", "gelu_tanh", "relu", "identity"};
  static const char *gus[] = {"separate", "concat", "interleaved"};
  static const char *dts[] = {"f32", "f16", "bf16"};
  std::string s = f.kind == MOERT_FFN_KIND_MLP ? "mlp" : std::string("glu/") + gus[f.gate_up];
  s += std::string(" ") + acts[f.act] + (f.layout ? " out_in " : " in_out ") + dts[f.dtype];
  if (f.b1)
    s += " b1";
  if (f.b2)
    s += " b2";
  if (f.limit > 0)
    s += " limit";
  return s;
}

// A weight tensor [E, rows, cols] stored in `dtype` with a row stride
// ld >= cols and an element offset; `val` holds the stored values widened.
struct Tensor3 {
  int64_t E = 0, rows = 0, cols = 0, ld = 0, off = 0;
  int dtype = MOERT_F32;
  std::vector<uint8_t> raw;
  std::vector<double> val; // logical [E][rows][cols]
  size_t es() const { return dtype == MOERT_F32 ? 4 : 2; }
  double at(int64_t e, int64_t r, int64_t c) const { return val[(e * rows + r) * cols + c]; }
  moert_memref_3d desc() {
    moert_memref_3d m;
    m.allocated = m.aligned = raw.empty() ? nullptr : raw.data();
    m.offset = off;
    m.sizes[0] = E;
    m.sizes[1] = rows;
    m.sizes[2] = cols;
    m.strides[2] = 1;
    m.strides[1] = ld;
    m.strides[0] = ld * rows;
    return m;
  }
};

float Quantize(float v, int dtype, uint8_t *dst) {
  if (dtype == MOERT_F32) {
    std::memcpy(dst, &v, 4);
    return v;
  }
  uint16_t h = dtype == MOERT_F16 ? moert_f32_to_f16(v) : moert_f32_to_bf16(v);
  std::memcpy(dst, &h, 2);
  return dtype == MOERT_F16 ? moert_f16_to_f32(h) : moert_bf16_to_f32(h);
}

void Fill(Tensor3 &t, int64_t E, int64_t rows, int64_t cols, int dtype,
          double scale, std::mt19937 &rng, int64_t pad = 0, int64_t off = 0) {
  t.E = E;
  t.rows = rows;
  t.cols = cols;
  t.ld = cols + pad;
  t.off = off;
  t.dtype = dtype;
  t.raw.assign((size_t)((off + E * rows * t.ld) * (int64_t)t.es()), 0xA5);
  t.val.assign((size_t)(E * rows * cols), 0.0);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t e = 0; e < E; ++e)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        uint8_t *p = t.raw.data() + (off + (e * rows + r) * t.ld + c) * (int64_t)t.es();
        t.val[(size_t)((e * rows + r) * cols + c)] = Quantize(u(rng) * (float)scale, dtype, p);
      }
}

struct Mat2 {
  int64_t rows = 0, cols = 0, ld = 0, off = 0;
  std::vector<float> data;
  float &at(int64_t r, int64_t c) { return data[(size_t)(off + r * ld + c)]; }
  float at(int64_t r, int64_t c) const { return data[(size_t)(off + r * ld + c)]; }
  moert_memref_2d desc() {
    moert_memref_2d m;
    m.allocated = m.aligned = data.empty() ? nullptr : data.data();
    m.offset = off;
    m.sizes[0] = rows;
    m.sizes[1] = cols;
    m.strides[0] = ld;
    m.strides[1] = 1;
    return m;
  }
};

// Bias [E, n] in `dtype`, as a 2-D descriptor; E = 0 for absent.
struct Bias {
  int64_t E = 0, n = 0;
  int dtype = MOERT_F32;
  std::vector<uint8_t> raw;
  std::vector<double> val;
  void make(int64_t e, int64_t cols, int dt, std::mt19937 &rng) {
    E = e;
    n = cols;
    dtype = dt;
    size_t es = dt == MOERT_F32 ? 4 : 2;
    raw.assign((size_t)(E * n) * es, 0);
    val.assign((size_t)(E * n), 0.0);
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    for (int64_t i = 0; i < E * n; ++i)
      val[(size_t)i] = Quantize(u(rng), dt, raw.data() + i * (int64_t)es);
  }
  moert_memref_2d desc() {
    moert_memref_2d m;
    m.allocated = m.aligned = raw.empty() ? nullptr : raw.data();
    m.offset = 0;
    m.sizes[0] = E;
    m.sizes[1] = E ? n : 0;
    m.strides[0] = n;
    m.strides[1] = 1;
    return m;
  }
};

struct Problem {
  Form f;
  int64_t E = 0, T = 0, D = 0, F = 0, Dout = 0, R = 0;
  int64_t seg_stride = -1; // < 0 ragged, else padded capacity
  // The last `shared` experts are passed as the shared group (sw1/sw3/sw2,
  // views of the same stacked tensors); their bias rows must be zero.
  int64_t shared = 0;
  std::vector<int32_t> counts, row_token;
  Mat2 x, out;
  Tensor3 w1, w3, w2; // stored per layout
  Bias b1, b2;

  int64_t F1() const {
    return f.kind == MOERT_FFN_KIND_GLU && f.gate_up != MOERT_GATE_UP_SEPARATE ? 2 * F : F;
  }
  bool in_out() const { return f.layout == MOERT_LAYOUT_IN_OUT; }
  // Logical W(k, n) of a stored matrix.
  static double W(const Tensor3 &t, bool in_out, int64_t e, int64_t k, int64_t n) {
    return in_out ? t.at(e, k, n) : t.at(e, n, k);
  }
};

// Builds a problem: `counts` per expert; `skip` = fraction of rows with an
// invalid token; padded when capacity >= 0.
Problem Make(const Form &f, int64_t T, int64_t D, int64_t F, int64_t Dout,
             std::vector<int32_t> counts, int64_t capacity, uint32_t seed,
             double skip = 0.0, int64_t pad = 0) {
  std::mt19937 rng(seed);
  Problem p;
  p.f = f;
  p.E = (int64_t)counts.size();
  p.T = T;
  p.D = D;
  p.F = F;
  p.Dout = Dout;
  p.counts = counts;
  p.seg_stride = capacity;
  int64_t total = 0;
  for (int32_t c : counts)
    total += c;
  p.R = capacity >= 0 ? p.E * capacity : total;
  p.row_token.assign((size_t)p.R, -1);
  std::uniform_int_distribution<int32_t> tok(0, (int32_t)std::max<int64_t>(T - 1, 0));
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  int64_t cursor = 0;
  for (int64_t e = 0; e < p.E; ++e) {
    int64_t s = capacity >= 0 ? e * capacity : cursor;
    int64_t n = capacity >= 0 ? std::min<int64_t>(counts[(size_t)e], capacity) : counts[(size_t)e];
    for (int64_t i = 0; i < n; ++i) {
      int32_t t = T > 0 ? tok(rng) : -1;
      if (u01(rng) < skip)
        t = (i % 2) ? -1 : (int32_t)T; // both kinds of invalid
      p.row_token[(size_t)(s + i)] = t;
    }
    cursor += n;
  }
  p.x.rows = T;
  p.x.cols = D;
  p.x.ld = D + pad;
  p.x.off = pad;
  p.x.data.assign((size_t)(pad + T * p.x.ld), 0.0f);
  std::uniform_real_distribution<float> ux(-1.0f, 1.0f);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t d = 0; d < D; ++d)
      p.x.at(t, d) = ux(rng);
  p.out.rows = p.R;
  p.out.cols = Dout;
  p.out.ld = Dout + pad;
  p.out.off = pad;
  p.out.data.assign((size_t)(pad + p.R * p.out.ld), kSentinel);
  const int64_t F1 = p.F1();
  const double s1 = 1.0 / std::sqrt((double)std::max<int64_t>(D, 1));
  const double s2 = 1.0 / std::sqrt((double)std::max<int64_t>(F, 1));
  if (p.in_out()) {
    Fill(p.w1, p.E, D, F1, f.dtype, s1, rng, pad, pad);
    Fill(p.w2, p.E, F, Dout, f.dtype, s2, rng, pad, pad);
  } else {
    Fill(p.w1, p.E, F1, D, f.dtype, s1, rng, pad, pad);
    Fill(p.w2, p.E, Dout, F, f.dtype, s2, rng, pad, pad);
  }
  if (f.kind == MOERT_FFN_KIND_GLU && f.gate_up == MOERT_GATE_UP_SEPARATE) {
    if (p.in_out())
      Fill(p.w3, p.E, D, F, f.dtype, s1, rng, pad, 0);
    else
      Fill(p.w3, p.E, F, D, f.dtype, s1, rng, pad, 0);
  }
  if (f.b1)
    p.b1.make(p.E, F1, f.dtype, rng);
  if (f.b2)
    p.b2.make(p.E, Dout, f.dtype, rng);
  return p;
}

double Act(double x, int act, double alpha) {
  switch (act) {
  case MOERT_ACT_KIND_SILU:
    return x / (1.0 + std::exp(-alpha * x));
  // The formulas of §3 in forms without cancellation in the left tail:
  // 1 + erf(y) = erfc(-y); 0.5 x (1 + tanh z) = x / (1 + exp(-2z)).
  case MOERT_ACT_KIND_GELU:
    return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
  case MOERT_ACT_KIND_GELU_TANH:
    return x / (1.0 + std::exp(-2.0 * std::sqrt(2.0 / M_PI) *
                               (x + 0.044715 * x * x * x)));
  case MOERT_ACT_KIND_RELU:
    return std::max(x, 0.0);
  default:
    return x;
  }
}

// Each expert's segment of rows [first, first + n), as the kernel cuts it
// (negative counts are 0; ragged segments end at R, padded ones at C).
std::vector<std::pair<int64_t, int64_t>> Segments(const Problem &p) {
  std::vector<std::pair<int64_t, int64_t>> seg;
  int64_t cursor = 0;
  for (int64_t e = 0; e < p.E; ++e) {
    int64_t c = std::max<int32_t>(p.counts[(size_t)e], 0);
    int64_t s = p.seg_stride >= 0 ? e * p.seg_stride : cursor;
    int64_t n = p.seg_stride >= 0 ? std::min(c, p.seg_stride) : std::min(c, p.R - cursor);
    cursor += p.seg_stride >= 0 ? 0 : n;
    seg.push_back({s, n});
  }
  return seg;
}

// Naive double-precision reference; rows outside segments / skipped: 0.
std::vector<double> Reference(const Problem &p) {
  std::vector<double> ref((size_t)(p.R * p.Dout), 0.0);
  const Form &f = p.f;
  const bool io = p.in_out();
  const bool glu = f.kind == MOERT_FFN_KIND_GLU;
  std::vector<double> h((size_t)p.F);
  const auto seg = Segments(p);
  for (int64_t e = 0; e < p.E; ++e) {
    const auto [s, n] = seg[(size_t)e];
    for (int64_t r = s; r < s + n; ++r) {
      int32_t t = p.row_token[(size_t)r];
      if (t < 0 || t >= p.T)
        continue;
      for (int64_t fi = 0; fi < p.F; ++fi) {
        int64_t cg = fi, cu = fi;
        const Tensor3 *wu = &p.w1;
        if (glu) {
          if (f.gate_up == MOERT_GATE_UP_SEPARATE)
            wu = &p.w3;
          else if (f.gate_up == MOERT_GATE_UP_CONCATENATED)
            cu = p.F + fi;
          else
            cg = 2 * fi, cu = 2 * fi + 1;
        }
        double g = 0, u = 0;
        for (int64_t d = 0; d < p.D; ++d) {
          double xv = p.x.at(t, d);
          g += xv * Problem::W(p.w1, io, e, d, cg);
          if (glu)
            u += xv * Problem::W(*wu, io, e, d, cu);
        }
        if (f.b1) {
          g += p.b1.val[(size_t)(e * p.F1() + cg)];
          if (glu && f.gate_up != MOERT_GATE_UP_SEPARATE)
            u += p.b1.val[(size_t)(e * p.F1() + cu)];
        }
        if (!glu) {
          h[(size_t)fi] = Act(g, f.act, f.alpha);
          continue;
        }
        if (f.limit > 0) {
          g = std::min(g, f.limit);
          u = std::min(std::max(u, -f.limit), f.limit);
        }
        h[(size_t)fi] = Act(g, f.act, f.alpha) * (u + f.up_shift);
      }
      for (int64_t o = 0; o < p.Dout; ++o) {
        double y = 0;
        for (int64_t fi = 0; fi < p.F; ++fi)
          y += h[(size_t)fi] * Problem::W(p.w2, io, e, fi, o);
        if (f.b2)
          y += p.b2.val[(size_t)(e * p.Dout + o)];
        ref[(size_t)(r * p.Dout + o)] = y;
      }
    }
  }
  return ref;
}

void RunKernel(Problem &p) {
  moert_memref_2d x = p.x.desc(), out = p.out.desc();
  moert_memref_1d rt, ct;
  rt.allocated = rt.aligned = p.row_token.empty() ? nullptr : p.row_token.data();
  rt.offset = 0;
  rt.sizes[0] = (int64_t)p.row_token.size();
  rt.strides[0] = 1;
  ct.allocated = ct.aligned = p.counts.empty() ? nullptr : p.counts.data();
  ct.offset = 0;
  ct.sizes[0] = (int64_t)p.counts.size();
  ct.strides[0] = 1;
  moert_memref_3d w1 = p.w1.desc(), w3 = p.w3.desc(), w2 = p.w2.desc();
  moert_memref_2d b1 = p.b1.desc(), b2 = p.b2.desc();
  moert_memref_3d sw1 = w1, sw3 = w3, sw2 = w2;
  sw1.sizes[0] = 0;
  if (p.shared > 0) {
    // Split each stack: experts [0, E - S) routed, the rest shared.
    const int64_t routed = p.E - p.shared;
    bool glu_sep = p.f.kind == MOERT_FFN_KIND_GLU && p.f.gate_up == MOERT_GATE_UP_SEPARATE;
    for (auto [full, part] : {std::pair<moert_memref_3d *, moert_memref_3d *>{&w1, &sw1},
                              {&w3, &sw3},
                              {&w2, &sw2}}) {
      if (full == &w3 && !glu_sep)
        continue;
      *part = *full;
      part->offset += routed * full->strides[0];
      part->sizes[0] = p.shared;
      full->sizes[0] = routed;
    }
    for (moert_memref_2d *b : {&b1, &b2})
      if (b->sizes[0] != 0)
        b->sizes[0] = routed;
  }
  moert_memref_2d none2 = b1;
  none2.sizes[0] = none2.sizes[1] = 0;
  _mlir_ciface_moert_cpu_expert_ffn(&x, &rt, &ct, &w1, &w3, &w2, &b1, &b2, &sw1,
                                    &sw3, &sw2, &none2, &none2, &none2, &out,
                                    p.seg_stride, p.f.kind, p.f.act, p.f.gate_up,
                                    p.f.layout, p.f.alpha, p.f.up_shift, p.f.limit,
                                    p.f.dtype, 0, 0);
}

std::vector<float> OutRows(const Problem &p) {
  std::vector<float> o((size_t)(p.R * p.Dout));
  for (int64_t r = 0; r < p.R; ++r)
    for (int64_t d = 0; d < p.Dout; ++d)
      o[(size_t)(r * p.Dout + d)] = p.out.at(r, d);
  return o;
}

// Runs and checks against the reference; returns the output.
std::vector<float> Check(Problem &p, const std::string &what) {
  std::vector<double> ref = Reference(p);
  RunKernel(p);
  std::vector<float> got = OutRows(p);
  double maxref = 0, maxerr = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    maxref = std::max(maxref, std::fabs(ref[i]));
    double err = std::fabs((double)got[i] - ref[i]);
    if (!(err <= maxerr)) // NaN-safe
      maxerr = std::isnan(err) ? INFINITY : err;
  }
  if (std::getenv("EXPERT_FFN_TEST_VERBOSE"))
    std::printf("%-50s rel err %.3g\n", what.c_str(), maxerr / std::max(maxref, 1e-30));
  EXPECT_LE(maxerr, 1e-4 * std::max(maxref, 1e-30))
      << what << " maxerr " << maxerr << " maxref " << maxref;
  // Rows that are not computed are exactly +0.
  for (size_t i = 0; i < ref.size(); ++i)
    if (ref[i] == 0.0 && got[i] != 0.0) {
      // a computed row may legitimately be 0 in the reference only by chance
      int64_t r = (int64_t)i / std::max<int64_t>(p.Dout, 1);
      bool computed = false;
      for (const auto &[s, n] : Segments(p)) {
        int32_t t = p.row_token[(size_t)r];
        if (r >= s && r < s + n && t >= 0 && t < p.T)
          computed = true;
      }
      if (!computed) {
        ADD_FAILURE() << what << ": row " << r << " not zero";
        break;
      }
    }
  return got;
}

std::vector<int> Isas() {
  std::vector<int> v = {MOERT_FFN_ISA_SCALAR};
  moert_expert_ffn_set_tuning(nullptr);
  int best = moert_expert_ffn_isa();
  for (int i = MOERT_FFN_ISA_AVX2; i <= best; ++i)
    v.push_back(i);
  return v;
}

struct TuneGuard {
  explicit TuneGuard(const moert_expert_ffn_tuning &t) { moert_expert_ffn_set_tuning(&t); }
  ~TuneGuard() { moert_expert_ffn_set_tuning(nullptr); }
};

moert_expert_ffn_tuning Tuning(int isa, int path, int64_t kc = 0, int64_t fb = 0,
                               int64_t rb = 0) {
  moert_expert_ffn_tuning t;
  std::memset(&t, 0, sizeof t);
  t.isa = isa;
  t.path = path;
  t.k_block = kc;
  t.f_block = fb;
  t.row_block = rb;
  return t;
}

std::vector<Form> AllForms() {
  std::vector<Form> forms;
  for (int kind = 0; kind < 2; ++kind)
    for (int gu = 0; gu < (kind ? 3 : 1); ++gu)
      for (int layout = 0; layout < 2; ++layout)
        for (int dtype = 0; dtype < 3; ++dtype) {
          Form f;
          f.kind = kind;
          f.gate_up = gu;
          f.layout = layout;
          f.dtype = dtype;
          f.act = (kind * 7 + gu * 3 + layout + dtype) % 5;
          forms.push_back(f);
        }
  return forms;
}

//===----------------------------------------------------------------------===//
// Accuracy
//===----------------------------------------------------------------------===//

// Every form x layout x dtype, every ISA, both paths, small blocks so that
// every loop runs several times with ragged tails.
TEST(ExpertFfn, AllFormsLayoutsDtypesIsasPaths) {
  const std::vector<int32_t> counts = {0, 1, 13, 0, 37, 2, 5};
  for (int isa : Isas())
    for (int path : {MOERT_FFN_PATH_AUTO, MOERT_FFN_PATH_DECODE, MOERT_FFN_PATH_GEMM})
      for (const Form &f : AllForms()) {
        TuneGuard g(Tuning(isa, path, 16, 32, 24));
        Problem p = Make(f, 23, 37, 45, 29, counts, -1, 1234u + (uint32_t)f.dtype, 0.1);
        Check(p, FormName(f) + " isa " + std::to_string(isa) + " path " + std::to_string(path));
      }
}

TEST(ExpertFfn, EveryActivationWithBiasesLimitShift) {
  for (int isa : Isas())
    for (int act = 0; act < 5; ++act)
      for (int kind = 0; kind < 2; ++kind)
        for (int gu = 0; gu < (kind ? 3 : 1); ++gu)
          for (int path : {MOERT_FFN_PATH_DECODE, MOERT_FFN_PATH_GEMM}) {
            Form f;
            f.kind = kind;
            f.act = act;
            f.gate_up = gu;
            f.layout = (act + gu) % 2;
            f.dtype = (act + kind) % 3;
            f.b1 = f.b2 = true;
            f.alpha = act == 0 ? 1.702 : 1.0;
            f.up_shift = kind ? 1.0 : 0.0;
            f.limit = kind ? 0.5 : 0.0;
            TuneGuard g(Tuning(isa, path, 0, 0, 0));
            // Larger inputs so the activations' tails and the clamp matter.
            Problem p = Make(f, 17, 19, 70, 33, {3, 0, 11, 7}, -1, 99u + act, 0.0);
            for (float &v : p.x.data)
              v *= 6.0f;
            Check(p, FormName(f) + " isa " + std::to_string(isa));
          }
}

// The vector activations over a wide range: D = 1, x = 1, W1 column f holds
// the pre-activation, W2 the identity, so out[f] = act(z_f).
TEST(ExpertFfn, ActivationRange) {
  const int64_t F = 200;
  for (int isa : Isas())
    for (int act = 0; act < 5; ++act) {
      Form f;
      f.kind = MOERT_FFN_KIND_MLP;
      f.act = act;
      f.alpha = 1.3;
      TuneGuard g(Tuning(isa, MOERT_FFN_PATH_GEMM));
      Problem p = Make(f, 1, 1, F, F, {1}, -1, 5u);
      p.x.at(0, 0) = 1.0f;
      p.row_token[0] = 0;
      for (int64_t i = 0; i < F; ++i) {
        float z = -40.0f + 80.0f * (float)i / (float)(F - 1);
        std::memcpy(p.w1.raw.data() + i * 4, &z, 4);
        p.w1.val[(size_t)i] = z;
        for (int64_t o = 0; o < F; ++o) {
          float w = i == o ? 1.0f : 0.0f;
          std::memcpy(p.w2.raw.data() + (i * p.w2.ld + o) * 4, &w, 4);
          p.w2.val[(size_t)(i * F + o)] = w;
        }
      }
      RunKernel(p);
      for (int64_t i = 0; i < F; ++i) {
        double z = p.w1.val[(size_t)i];
        double want = Act(z, act, f.alpha);
        double got = p.out.at(0, i);
        // f32 evaluation: exp(a) carries the rounding of its argument a,
        // a relative error of ~|a| * 2^-24 in the tails.
        double a = act == 0   ? f.alpha * std::fabs(z)
                   : act == 1 ? z * z / 2
                   : act == 2 ? 1.6 * std::fabs(z + 0.044715 * z * z * z)
                              : 0.0;
        EXPECT_LE(std::fabs(got - want), (2e-6 + 2.4e-7 * a) * std::fabs(want) + 1e-30)
            << "act " << act << " isa " << isa << " z " << z;
      }
    }
}

TEST(ExpertFfn, PaddedSegmentsAndSkippedRows) {
  for (int isa : Isas())
    for (int layout = 0; layout < 2; ++layout)
      for (int path : {MOERT_FFN_PATH_AUTO, MOERT_FFN_PATH_DECODE, MOERT_FFN_PATH_GEMM}) {
        Form f;
        f.layout = layout;
        f.gate_up = MOERT_GATE_UP_INTERLEAVED;
        f.b2 = true;
        TuneGuard g(Tuning(isa, path, 24, 64, 16));
        // capacity 19; counts include 0, full, over-full (cut), negative.
        Problem p = Make(f, 31, 40, 50, 40, {19, 0, 7, 25, 1, -3}, 19, 77u + layout, 0.25);
        p.counts[3] = 25; // > capacity: cut at C
        p.counts[5] = -3; // negative: empty
        Check(p, "padded " + FormName(f));
      }
}

// Counts are data: a ragged segment running past R is cut at R, a negative
// count is an empty segment.
TEST(ExpertFfn, RaggedCountsCutAtR) {
  for (int isa : Isas())
    for (int path : {MOERT_FFN_PATH_DECODE, MOERT_FFN_PATH_GEMM}) {
      Form f;
      TuneGuard g(Tuning(isa, path));
      Problem p = Make(f, 12, 20, 24, 20, {5, 0, 9}, -1, 55u);
      p.counts = {5, -4, 30}; // 35 > R = 14
      Check(p, "ragged cut");
    }
}

TEST(ExpertFfn, StridedDescriptorsAndOffsets) {
  for (int isa : Isas())
    for (const Form &f0 : AllForms()) {
      Form f = f0;
      f.b1 = f.b2 = true;
      TuneGuard g(Tuning(isa, MOERT_FFN_PATH_AUTO, 32, 64, 0));
      Problem p = Make(f, 9, 33, 41, 18, {2, 17, 0, 3}, -1, 4242u, 0.0, /*pad=*/5);
      Check(p, "strided " + FormName(f));
    }
}

// Default tuning at a size where the GEMM path runs with full tiles and
// several K and F blocks, against the reference.
TEST(ExpertFfn, MediumDefaultTuning) {
  for (int isa : Isas())
    for (int layout = 0; layout < 2; ++layout)
      for (int dtype = 0; dtype < 3; ++dtype) {
        Form f;
        f.layout = layout;
        f.dtype = dtype;
        f.b1 = f.b2 = true;
        moert_expert_ffn_tuning t = Tuning(isa, MOERT_FFN_PATH_AUTO);
        TuneGuard g(t);
        Problem p = Make(f, 150, 200, 330, 136, {131, 3, 0, 29, 97}, -1, 31u + dtype);
        Check(p, "medium " + FormName(f) + " isa " + std::to_string(isa));
      }
}

TEST(ExpertFfn, DegenerateShapes) {
  for (int isa : Isas()) {
    TuneGuard g(Tuning(isa, MOERT_FFN_PATH_AUTO));
    Form f;
    f.b1 = f.b2 = true;
    // F = 0: y = b2.
    Problem p = Make(f, 4, 8, 0, 8, {2, 3}, -1, 1u);
    Check(p, "F=0");
    // D = 0: g = b1.
    Problem q = Make(f, 4, 0, 8, 8, {2, 3}, -1, 2u);
    Check(q, "D=0");
    // No experts / no rows.
    Problem r = Make(f, 4, 8, 8, 8, {}, -1, 3u);
    Check(r, "E=0");
    Problem s = Make(f, 4, 8, 8, 8, {0, 0, 0}, -1, 4u);
    Check(s, "empty");
    // T = 0: every row skipped.
    Problem t = Make(f, 0, 8, 8, 8, {0, 2}, -1, 5u);
    Check(t, "T=0");
    // Dout = 0: nothing to write, must not crash.
    Problem u = Make(f, 4, 8, 8, 0, {3, 1}, -1, 6u);
    RunKernel(u);
  }
}

// Without scratch memory the kernel falls back to slower paths (row by row
// for the GEMM path, stack buffers for the decode path): same accuracy.
TEST(ExpertFfn, NoScratchMemoryFallback) {
  for (int isa : Isas())
    for (const Form &f0 : AllForms()) {
      Form f = f0;
      f.b1 = f.b2 = true;
      f.limit = f.kind ? 2.0 : 0.0;
      moert_expert_ffn_tuning t = Tuning(isa, MOERT_FFN_PATH_AUTO);
      t.no_heap = 1;
      TuneGuard g(t);
      Problem p = Make(f, 40, 29, 150, 21, {0, 1, 20, 70, 3}, -1, 17u, 0.1);
      Check(p, "no heap " + FormName(f));
    }
  // Decode path with more than 16 rows per task (row groups on the stack).
  for (int isa : Isas()) {
    Form f;
    f.gate_up = MOERT_GATE_UP_INTERLEAVED;
    moert_expert_ffn_tuning t = Tuning(isa, MOERT_FFN_PATH_DECODE);
    t.no_heap = 1;
    TuneGuard g(t);
    Problem p = Make(f, 60, 40, 130, 33, {45, 0, 17}, -1, 18u);
    Check(p, "no heap decode");
  }
}

//===----------------------------------------------------------------------===//
// Determinism under a parallel hook
//===----------------------------------------------------------------------===//

struct FakePool {
  int mode = 0;   // 0 forward, 1 reverse, 2 shuffled
  int64_t chunk = 1;
  uint32_t seed = 1;
  int64_t calls = 0, tasks = 0;
};

void FakeParallelFor(void *user, int64_t n, moert_task_fn fn, void *arg) {
  FakePool *pool = static_cast<FakePool *>(user);
  ++pool->calls;
  pool->tasks += n;
  std::vector<std::pair<int64_t, int64_t>> chunks;
  for (int64_t b = 0; b < n; b += pool->chunk)
    chunks.push_back({b, std::min(n, b + pool->chunk)});
  if (pool->mode == 1)
    std::reverse(chunks.begin(), chunks.end());
  if (pool->mode == 2) {
    std::mt19937 rng(pool->seed++);
    std::shuffle(chunks.begin(), chunks.end(), rng);
  }
  for (auto &c : chunks)
    fn(arg, c.first, c.second);
}

struct ThreadPoolHook {
  int threads;
  static void ParallelFor(void *user, int64_t n, moert_task_fn fn, void *arg) {
    ThreadPoolHook *h = static_cast<ThreadPoolHook *>(user);
    std::atomic<int64_t> next(0);
    auto work = [&] {
      for (;;) {
        int64_t i = next.fetch_add(1);
        if (i >= n)
          return;
        fn(arg, i, i + 1);
      }
    };
    std::vector<std::thread> ts;
    for (int t = 1; t < h->threads; ++t)
      ts.emplace_back(work);
    work();
    for (auto &t : ts)
      t.join();
  }
};

struct HookGuard {
  explicit HookGuard(const moert_parallel_hook *h) { moert_cpu_set_parallel_hook(h); }
  ~HookGuard() { moert_cpu_set_parallel_hook(nullptr); }
};

// Runs `base` under `hook`; expects the serial result bit for bit.
void ExpectSerialBitsUnder(const moert_parallel_hook &hook, const Problem &base,
                           const std::vector<float> &serial) {
  HookGuard hg(&hook);
  Problem p = base;
  std::fill(p.out.data.begin(), p.out.data.end(), kSentinel);
  RunKernel(p);
  std::vector<float> got = OutRows(p);
  EXPECT_EQ(0, std::memcmp(got.data(), serial.data(), got.size() * sizeof(float)));
}

// The same on two threads of a shuffling FakePool; returns the pool's counts.
FakePool RunOnTwoFakeThreads(const Problem &base, const std::vector<float> &serial) {
  FakePool pool;
  pool.mode = 2;
  ExpectSerialBitsUnder({&pool, 2, FakeParallelFor}, base, serial);
  return pool;
}

// Shared experts passed as their own weight group (always-selected experts
// E .. E + S - 1, no biases) compute what the same experts do as the last
// members of one stack (with zero bias rows): the same bits, on both kernel
// paths, under threads; and against the reference.
TEST(ExpertFfn, SharedExpertGroupEqualsTheStackedCall) {
  for (int isa : Isas())
    for (int variant = 0; variant < 2; ++variant) {
      Form f;
      f.layout = variant ? MOERT_LAYOUT_OUT_IN : MOERT_LAYOUT_IN_OUT;
      f.gate_up = variant ? MOERT_GATE_UP_CONCATENATED : MOERT_GATE_UP_SEPARATE;
      f.dtype = variant ? MOERT_BF16 : MOERT_F32;
      f.b1 = f.b2 = true;
      TuneGuard g(Tuning(isa, MOERT_FFN_PATH_AUTO, 64, 64, 0));
      // Prefill-sized (the shared experts get every token: 90 rows each)
      // and decode-sized.
      for (auto [T, counts] :
           {std::pair<int64_t, std::vector<int32_t>>{90, {40, 0, 17, 123, 90, 90}},
            {3, {1, 0, 2, 3, 3, 3}}}) {
        Problem base = Make(f, T, 72, 100, 72, counts, -1, 21u);
        const int64_t S = 2, routed = base.E - S;
        for (Bias *b : {&base.b1, &base.b2})
          for (int64_t i = routed * b->n; i < b->E * b->n; ++i) {
            b->val[(size_t)i] = 0.0;
            std::memset(b->raw.data() + i * (f.dtype == MOERT_F32 ? 4 : 2), 0,
                        f.dtype == MOERT_F32 ? 4 : 2);
          }
        Problem stacked = base;
        std::vector<float> want = Check(stacked, "stacked");
        Problem folded = base;
        folded.shared = S;
        std::vector<float> got = Check(folded, "shared group");
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
            << "T " << T << " variant " << variant;
        ThreadPoolHook tp{2};
        ExpectSerialBitsUnder({&tp, 2, ThreadPoolHook::ParallelFor}, folded, want);
      }
    }
}

// The combine fused into the call (combine = 1): each token's rows, summed
// gate-weighted in slot order, are the bits of moert_cpu_combine over the
// unfused call's rows, on every path, under threads; without scratch
// memory, close to them.
struct Slots {
  int64_t K = 0;
  std::vector<int32_t> slot;
  std::vector<float> w;
  moert_memref_2d SlotDesc() {
    return moert_memref_2d{nullptr, slot.data(), 0, {(int64_t)slot.size() / std::max<int64_t>(K, 1), K}, {K, 1}};
  }
  moert_memref_2d WeightDesc() {
    return moert_memref_2d{nullptr, w.data(), 0, {(int64_t)w.size() / std::max<int64_t>(K, 1), K}, {K, 1}};
  }
};

// Slots of every valid row of p, by token (in row order), K = the most rows
// of one token plus one unused slot; random gate weights. With `zero_rows`,
// token r % T also names each row r that the call does not compute (a
// skipped row or one outside every segment: a zero row); with `twice`,
// token 0 names its first row twice.
Slots SlotsOf(const Problem &p, uint32_t seed, bool zero_rows = false,
              bool twice = false) {
  std::vector<std::vector<int32_t>> rows((size_t)p.T);
  std::vector<bool> computed((size_t)p.R, false);
  for (const auto &[s0, n] : Segments(p))
    for (int64_t r = s0; r < s0 + n; ++r) {
      int32_t t = p.row_token[(size_t)r];
      if (t >= 0 && t < p.T) {
        rows[(size_t)t].push_back((int32_t)r);
        computed[(size_t)r] = true;
      }
    }
  for (int64_t r = 0; zero_rows && p.T > 0 && r < p.R; ++r)
    if (!computed[(size_t)r])
      rows[(size_t)(r % p.T)].push_back((int32_t)r);
  if (twice && p.T > 0 && !rows[0].empty())
    rows[0].push_back(rows[0][0]);
  Slots sl;
  for (auto &r : rows)
    sl.K = std::max<int64_t>(sl.K, (int64_t)r.size());
  sl.K += 1;
  sl.slot.assign((size_t)(p.T * sl.K), -1);
  sl.w.assign((size_t)(p.T * sl.K), 0.0f);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.05f, 1.0f);
  for (int64_t t = 0; t < p.T; ++t)
    for (size_t j = 0; j < rows[(size_t)t].size(); ++j) {
      sl.slot[(size_t)(t * sl.K) + j] = rows[(size_t)t][j];
      sl.w[(size_t)(t * sl.K) + j] = u(rng);
    }
  return sl;
}

// out [T, Dout] of the fused call; `mutate` may spoil its descriptors.
std::vector<float> RunCombined(
    Problem &p, Slots &sl,
    const std::function<void(moert_memref_2d &out, moert_memref_2d &slots,
                             moert_memref_2d &weights)> &mutate = nullptr) {
  moert_memref_2d x = p.x.desc(), b1 = p.b1.desc(), b2 = p.b2.desc();
  moert_memref_1d rt{p.row_token.data(), p.row_token.data(), 0, {(int64_t)p.row_token.size()}, {1}};
  moert_memref_1d ct{p.counts.data(), p.counts.data(), 0, {(int64_t)p.counts.size()}, {1}};
  moert_memref_3d w1 = p.w1.desc(), w3 = p.w3.desc(), w2 = p.w2.desc(), none3 = w1;
  none3.sizes[0] = 0;
  std::vector<float> out((size_t)(p.T * p.Dout), kSentinel);
  moert_memref_2d od{out.data(), out.data(), 0, {p.T, p.Dout}, {p.Dout, 1}};
  moert_memref_2d sd = sl.SlotDesc(), wd = sl.WeightDesc(), none2 = od;
  none2.sizes[0] = none2.sizes[1] = 0;
  if (mutate)
    mutate(od, sd, wd);
  _mlir_ciface_moert_cpu_expert_ffn(&x, &rt, &ct, &w1, &w3, &w2, &b1, &b2, &none3, &none3,
                                    &none3, &sd, &wd, &none2, &od, p.seg_stride, p.f.kind,
                                    p.f.act, p.f.gate_up, p.f.layout, p.f.alpha,
                                    p.f.up_shift, p.f.limit, p.f.dtype, 1, 0);
  return out;
}

// moert_cpu_combine over the unfused call's rows.
std::vector<float> CombineRows(Problem &p, Slots &sl) {
  RunKernel(p);
  moert_memref_2d rows = p.out.desc();
  std::vector<float> out((size_t)(p.T * p.Dout), kSentinel);
  moert_memref_2d od{out.data(), out.data(), 0, {p.T, p.Dout}, {p.Dout, 1}};
  moert_memref_2d sd = sl.SlotDesc(), wd = sl.WeightDesc(), pt = od;
  pt.sizes[0] = 0;
  _mlir_ciface_moert_cpu_combine(&rows, &sd, &wd, &pt, &od, MOERT_F32);
  return out;
}

TEST(ExpertFfn, FusedCombineEqualsCombineOfTheRows) {
  for (int isa : Isas())
    for (int variant = 0; variant < 3; ++variant) {
      Form f;
      f.layout = variant == 1 ? MOERT_LAYOUT_OUT_IN : MOERT_LAYOUT_IN_OUT;
      f.dtype = variant == 2 ? MOERT_BF16 : MOERT_F32;
      f.b2 = variant != 0;
      TuneGuard g(Tuning(isa, MOERT_FFN_PATH_AUTO, 64, 64, 0));
      // Prefill (ragged, with skipped rows), padded, decode.
      struct Case {
        int64_t T;
        std::vector<int32_t> counts;
        int64_t capacity;
      };
      for (const Case &c : {Case{70, {40, 0, 33, 61, 6}, -1}, Case{30, {9, 12, 5, 12}, 10},
                            Case{3, {1, 0, 2, 3}, -1}}) {
        Problem base = Make(f, c.T, 64, 96, 72, c.counts, c.capacity, 31u, 0.05);
        // Slots naming zero rows too (every case but the decode one), or
        // a row twice (decode: the dispatch-ordered fallback layout).
        Slots sl = SlotsOf(base, 5u, c.T > 3, c.T == 3);
        Problem p = base;
        std::vector<float> want = CombineRows(p, sl);
        Problem q = base;
        std::vector<float> got = RunCombined(q, sl);
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
            << "T " << c.T << " variant " << variant;
        {
          ThreadPoolHook tp{3};
          moert_parallel_hook hook = {&tp, 3, ThreadPoolHook::ParallelFor};
          HookGuard hg(&hook);
          Problem r = base;
          std::vector<float> threaded = RunCombined(r, sl);
          EXPECT_EQ(0, std::memcmp(threaded.data(), want.data(), got.size() * sizeof(float)))
              << "threads, T " << c.T << " variant " << variant;
        }
        // Without scratch memory: the row-by-row path, close to the rows'.
        moert_expert_ffn_tuning t = Tuning(isa, MOERT_FFN_PATH_AUTO, 64, 64, 0);
        t.no_heap = 1;
        TuneGuard g2(t);
        Problem r = base;
        std::vector<float> rowwise = RunCombined(r, sl);
        double maxref = 0, maxerr = 0;
        for (size_t i = 0; i < want.size(); ++i) {
          maxref = std::max(maxref, (double)std::fabs(want[i]));
          maxerr = std::max(maxerr, (double)std::fabs(rowwise[i] - want[i]));
        }
        EXPECT_LE(maxerr, 1e-5 * std::max(maxref, 1e-30)) << "no heap, T " << c.T;
      }
    }
}

// The fused combine writes nothing when its operands disagree with the call.
TEST(ExpertFfn, FusedCombineMismatchWritesNothing) {
  Form f;
  Problem base = Make(f, 6, 8, 12, 8, {2, 3, 4}, -1, 9u);
  for (int what = 0; what < 4; ++what) {
    Problem p = base;
    Slots sl = SlotsOf(p, 3u);
    std::vector<float> out = RunCombined(
        p, sl, [&](moert_memref_2d &od, moert_memref_2d &sd, moert_memref_2d &wd) {
          if (what == 0)
            od.sizes[0] = p.T - 1; // tokens
          else if (what == 1)
            od.sizes[1] = p.Dout + 1; // width
          else if (what == 2)
            wd.sizes[1] = sl.K - 1; // weights vs slots
          else
            sd.sizes[0] = p.T + 1; // slot tokens
        });
    for (float v : out)
      ASSERT_EQ(v, kSentinel) << "case " << what;
  }
}

TEST(ExpertFfn, BitIdenticalUnderAnyHook) {
  // Skewed routing: one expert has half the rows; three experts on the
  // GEMM path (64 rows or more), so the split plan reorders them.
  std::vector<int32_t> counts = {150, 9, 1, 70, 0, 67, 3, 0};
  for (int isa : Isas())
    for (int layout = 0; layout < 2; ++layout) {
      Form f;
      f.layout = layout;
      f.gate_up = layout ? MOERT_GATE_UP_CONCATENATED : MOERT_GATE_UP_SEPARATE;
      f.dtype = layout ? MOERT_BF16 : MOERT_F32;
      f.b1 = f.b2 = true;
      TuneGuard g(Tuning(isa, MOERT_FFN_PATH_AUTO, 64, 64, 0));
      Problem base = Make(f, 200, 96, 130, 96, counts, -1, 8u, 0.05);
      std::vector<float> serial = Check(base, "serial");
      for (int threads : {2, 3, 7})
        for (int mode = 0; mode < 3; ++mode)
          for (int64_t chunk : {1, 2, 5}) {
            FakePool pool;
            pool.mode = mode;
            pool.chunk = chunk;
            moert_parallel_hook hook = {&pool, threads, FakeParallelFor};
            HookGuard hg(&hook);
            Problem p = base;
            std::fill(p.out.data.begin(), p.out.data.end(), kSentinel);
            RunKernel(p);
            std::vector<float> got = OutRows(p);
            EXPECT_EQ(0, std::memcmp(got.data(), serial.data(), got.size() * sizeof(float)))
                << "threads " << threads << " mode " << mode << " chunk " << chunk;
            EXPECT_GE(pool.calls, 1);
            // One group of GEMM blocks per thread (on 2 threads the 150-row
            // expert is shared between them, see ExpertFfnPlan) plus the
            // decode tasks: more work items than experts.
            EXPECT_GT(pool.tasks, 8);
          }
      // Real threads.
      ThreadPoolHook tp{3};
      ExpectSerialBitsUnder({&tp, 3, ThreadPoolHook::ParallelFor}, base, serial);
    }
}

// Decode-sized routing (T = 1..4, k = 2) under the hook: bit-identical and
// split into many tasks.
TEST(ExpertFfn, DecodeParallelBitIdentical) {
  for (int isa : Isas()) {
    Form f;
    f.layout = MOERT_LAYOUT_OUT_IN;
    f.dtype = MOERT_F16;
    TuneGuard g(Tuning(isa, MOERT_FFN_PATH_AUTO));
    Problem base = Make(f, 4, 200, 600, 200, {0, 2, 1, 0, 3, 2}, -1, 12u);
    std::vector<float> serial = Check(base, "decode serial");
    FakePool pool = RunOnTwoFakeThreads(base, serial);
    EXPECT_EQ(pool.calls, 2);
    EXPECT_GE(pool.tasks, 8); // 4 experts with rows, both phases
  }
}

// Decode groups of many rows (T = 64-like, skewed) are cut into column
// chunks as balance needs, and both phases run as one job (5 row groups on
// 2 threads): bit-identical to the serial run whatever order the hook
// hands out the tasks in (phase 2 tasks first included: they then run
// their expert's phase 1 tasks themselves).
TEST(ExpertFfn, DecodeManyRowsSplitBitIdentical) {
  for (int isa : Isas()) {
    Form f;
    TuneGuard g(Tuning(isa, MOERT_FFN_PATH_AUTO));
    Problem base = Make(f, 40, 64, 256, 72, {32, 9, 12, 0, 14, 13}, -1, 41u);
    std::vector<float> serial = Check(base, "decode many rows serial");
    for (int mode = 0; mode < 3; ++mode) {
      FakePool pool;
      pool.mode = mode;
      ExpectSerialBitsUnder({&pool, 2, FakeParallelFor}, base, serial);
      // 5 experts with rows, heavy (10 rows per expert on average), handed
      // out longest first (32, 14, 13, 12, 9 rows: phase 2 costs rows + 4 =
      // 36, 18, 17, 16, 13, phase 1 twice that), in chunks of at most a
      // quarter of the cost left. Phase 1 (left: all of phase 1 and 2, 300,
      // 228, 192, 158, 126): 1 part each, 5 tasks. Phase 2 (left 100, 64,
      // 46, 29, 13): 2, 2, 2, 3 and 5 parts; Dout = 72 in chunks of at
      // least 64 columns: 2 each. One job.
      EXPECT_EQ(pool.calls, 1) << "mode " << mode;
      EXPECT_EQ(pool.tasks, 5 + 5 * 2) << "mode " << mode;
    }
    ThreadPoolHook tp{2};
    ExpectSerialBitsUnder({&tp, 2, ThreadPoolHook::ParallelFor}, base, serial);
  }
}

// Experts with 1-4 rows and in_out weights stream whole stored rows with
// the sums in L1 (decode_stream_bytes); the others take the register-tiled
// product. Both are accurate and give the same bits (f32 and bf16 weights),
// serial, on two threads (gate/up chunks split between them: part rows,
// tiled) and in the scratch-free fallback (its W2 product accumulates over
// F slices).
TEST(ExpertFfn, DecodeRowStreamSameBitsAsTiled) {
  const std::vector<int32_t> counts = {1, 0, 1, 3, 1, 2, 4, 1, 6};
  for (int isa : Isas())
    for (int variant = 0; variant < 4; ++variant) {
      Form f;
      f.b1 = f.b2 = variant != 0;
      f.dtype = variant == 3 ? MOERT_BF16 : MOERT_F32;
      Problem base = Make(f, 10, 70, 150, 90, counts, -1, 31u + (uint32_t)variant);
      std::vector<float> got[2];
      for (int streamed = 0; streamed < 2; ++streamed) {
        moert_expert_ffn_tuning t = Tuning(isa, MOERT_FFN_PATH_DECODE);
        t.decode_stream_bytes = streamed ? 1 << 14 : -1;
        t.no_heap = variant == 2;
        TuneGuard g(t);
        FakePool pool;
        moert_parallel_hook hook = {&pool, 2, FakeParallelFor};
        std::unique_ptr<HookGuard> hg;
        if (variant == 1)
          hg = std::make_unique<HookGuard>(&hook);
        Problem p = base;
        got[streamed] = Check(p, "variant " + std::to_string(variant) +
                                     (streamed ? " streamed" : " tiled"));
      }
      EXPECT_EQ(0, std::memcmp(got[0].data(), got[1].data(), got[0].size() * sizeof(float)))
          << "isa " << isa << " variant " << variant;
    }
}

// A weight cache (model_abi.h) over the weights of one Problem: what the
// kernel may keep, and how it used the cache.
struct TestWeightCache {
  struct Entry {
    std::vector<float> data; // 64-byte alignment is not needed by the kernel
    bool ready = false;
  };
  std::vector<std::pair<const uint8_t *, size_t>> constant;
  std::map<std::string, Entry> entries;
  size_t budget = SIZE_MAX, used = 0;
  int64_t fills = 0, hits = 0;
  std::mutex mu;

  void AddConstant(const Tensor3 &t) {
    if (!t.raw.empty())
      constant.push_back({t.raw.data(), t.raw.size()});
  }
  void AddWeights(const Problem &p) {
    AddConstant(p.w1);
    AddConstant(p.w3);
    AddConstant(p.w2);
  }
  static int IsConstant(void *user, const void *p, size_t bytes) {
    auto *c = static_cast<TestWeightCache *>(user);
    const auto *b = static_cast<const uint8_t *>(p);
    for (auto &r : c->constant)
      if (b >= r.first && b + bytes <= r.first + r.second)
        return 1;
    return 0;
  }
  static void *Acquire(void *user, const void *key, size_t key_bytes,
                       size_t bytes, int *fill) {
    auto *c = static_cast<TestWeightCache *>(user);
    std::lock_guard<std::mutex> lock(c->mu);
    *fill = 0;
    std::string k(static_cast<const char *>(key), key_bytes);
    auto it = c->entries.find(k);
    if (it != c->entries.end()) {
      c->hits += it->second.ready;
      return it->second.ready ? it->second.data.data() : nullptr;
    }
    if (bytes == 0 || bytes % sizeof(float) || bytes > c->budget - c->used)
      return nullptr;
    Entry &e = c->entries[k];
    e.data.assign(bytes / sizeof(float), std::nanf(""));
    c->used += bytes;
    ++c->fills;
    *fill = 1;
    return e.data.data();
  }
  static void Publish(void *user, void *data) {
    auto *c = static_cast<TestWeightCache *>(user);
    std::lock_guard<std::mutex> lock(c->mu);
    for (auto &kv : c->entries)
      if (kv.second.data.data() == data)
        kv.second.ready = true;
  }
  moert_weight_cache abi() { return {this, IsConstant, Acquire, Publish}; }
};

struct WeightCacheGuard {
  explicit WeightCacheGuard(const moert_weight_cache *c) { moert_cpu_set_weight_cache(c); }
  ~WeightCacheGuard() { moert_cpu_set_weight_cache(nullptr); }
};

// Runs p (the same weights every time) and returns its output rows.
std::vector<float> RunAgain(Problem &p) {
  std::fill(p.out.data.begin(), p.out.data.end(), kSentinel);
  RunKernel(p);
  return OutRows(p);
}

bool SameBits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// With a weight cache the GEMM path keeps each expert's packed panels: the
// first call packs them into the cache, later calls only read them (even
// when the cached bytes are all that is left to read from: overwriting them
// changes the result). Same bits as without a cache, serial and on threads,
// for every layout, gate/up placement and weight dtype.
TEST(ExpertFfn, KeptPackedPanelsSameBits) {
  const std::vector<int32_t> counts = {70, 0, 9, 130, 55};
  for (int isa : Isas())
    for (int variant = 0; variant < 4; ++variant) {
      Form f;
      f.layout = variant % 2 ? MOERT_LAYOUT_OUT_IN : MOERT_LAYOUT_IN_OUT;
      f.gate_up = variant == 1 ? MOERT_GATE_UP_CONCATENATED
                               : variant == 2 ? MOERT_GATE_UP_INTERLEAVED
                                              : MOERT_GATE_UP_SEPARATE;
      f.kind = variant == 3 ? MOERT_FFN_KIND_MLP : MOERT_FFN_KIND_GLU;
      f.dtype = variant == 1 ? MOERT_BF16 : variant == 2 ? MOERT_F16 : MOERT_F32;
      f.b1 = f.b2 = variant == 2;
      const std::string what = FormName(f) + " isa " + std::to_string(isa);
      TuneGuard g(Tuning(isa, MOERT_FFN_PATH_GEMM, 48, 64, 64));
      Problem p = Make(f, 120, 100, 150, 90, counts, -1, 77u + (uint32_t)variant);
      const std::vector<float> plain = Check(p, what + " without a cache");
      TestWeightCache cache;
      cache.AddWeights(p);
      moert_weight_cache abi = cache.abi();
      WeightCacheGuard cg(&abi);
      EXPECT_TRUE(SameBits(plain, RunAgain(p))) << what << " filling";
      EXPECT_EQ(cache.fills, 4) << what; // the experts with rows
      EXPECT_TRUE(SameBits(plain, RunAgain(p))) << what << " reading";
      EXPECT_GE(cache.hits, 4) << what;
      FakePool pool;
      pool.mode = 2;
      moert_parallel_hook hook = {&pool, 2, FakeParallelFor};
      {
        HookGuard hg(&hook);
        EXPECT_TRUE(SameBits(plain, RunAgain(p))) << what << " on threads";
      }
      EXPECT_EQ(cache.fills, 4) << what;
      // The kept panels are what the kernel reads.
      for (auto &kv : cache.entries)
        std::fill(kv.second.data.begin(), kv.second.data.end(), 0.0f);
      EXPECT_FALSE(SameBits(plain, RunAgain(p))) << what;
    }
}

// Runs item 0 on the calling thread after a delay and every other item on a
// thread of its own at once: item 1's thread finishes first while item 0's
// is still busy.
struct LateStartHook {
  double delay_ms;
  static void ParallelFor(void *user, int64_t n, moert_task_fn fn, void *arg) {
    auto *h = static_cast<LateStartHook *>(user);
    std::vector<std::thread> ts;
    for (int64_t i = 1; i < n; ++i)
      ts.emplace_back([=] { fn(arg, i, i + 1); });
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(h->delay_ms));
    fn(arg, 0, 1);
    for (auto &t : ts)
      t.join();
  }
};

// The GEMM path's row stealing: a thread done with its group takes the last
// rows of the busy thread's work from its next F block on. Each row still
// sums the F blocks in order: the serial result, bit for bit (stored and
// kept panels, f32 and bf16, in_out and out_in, biases).
TEST(ExpertFfn, IdleThreadTakesRowsSameBits) {
  const std::vector<int32_t> counts = {300, 300};
  for (int isa : Isas())
    for (int variant = 0; variant < 3; ++variant) {
      Form f;
      f.dtype = variant == 2 ? MOERT_BF16 : MOERT_F32;
      f.layout = variant == 2 ? MOERT_LAYOUT_OUT_IN : MOERT_LAYOUT_IN_OUT;
      f.b1 = f.b2 = variant == 2;
      const std::string what = FormName(f) + " isa " + std::to_string(isa) +
                               (variant ? " kept" : " stored");
      // F = 512 in 8 blocks of 64; row blocks of up to 512 rows: each
      // expert is one thread's group of one task, so the rows are taken
      // from inside it (from a block after its first).
      TuneGuard g(Tuning(isa, MOERT_FFN_PATH_GEMM, 64, 64, 512));
      Problem p = Make(f, 600, 128, 512, 96, counts, -1, 31u + (uint32_t)variant);
      TestWeightCache cache;
      cache.AddWeights(p);
      moert_weight_cache abi = cache.abi();
      std::unique_ptr<WeightCacheGuard> cg;
      if (variant)
        cg = std::make_unique<WeightCacheGuard>(&abi);
      const std::vector<float> serial = Check(p, what);
      const auto t0 = std::chrono::steady_clock::now();
      RunAgain(p);
      const double ms = std::chrono::duration<double, std::milli>(
                            std::chrono::steady_clock::now() - t0).count();
      // Item 0 starts when item 1 is about half done (a group is half the
      // call), so item 1's thread has part of item 0 to share; timing
      // decides whether it does, so tries with other delays (cycling: on a
      // loaded machine the threads may not overlap for several tries). The
      // same weights each time (kept panels are looked up by address).
      const double delays[] = {0.25, 0.125, 0.35, 0.06, 0.2, 0.3, 0.1, 0.15, 0.05, 0.4};
      const int64_t before = moert_expert_ffn_steals();
      for (int attempt = 0; attempt < 40 && moert_expert_ffn_steals() == before; ++attempt) {
        LateStartHook late{ms * delays[attempt % 10]};
        moert_parallel_hook hook = {&late, 2, LateStartHook::ParallelFor};
        HookGuard hg(&hook);
        EXPECT_TRUE(SameBits(serial, RunAgain(p))) << what << " try " << attempt;
      }
      EXPECT_GT(moert_expert_ffn_steals(), before) << what;
      // And under the plain pool, whatever it does.
      ThreadPoolHook tp{2};
      moert_parallel_hook hook = {&tp, 2, ThreadPoolHook::ParallelFor};
      HookGuard hg(&hook);
      EXPECT_TRUE(SameBits(serial, RunAgain(p))) << what << " pool";
      if (variant)
        EXPECT_EQ(cache.fills, 2) << what; // read, not packed again
    }
}

// With a weight cache, decode row groups of 2 or more rows read the
// expert's kept packed panels (f32 in_out weights only): one sequential
// read instead of strided K blocks. Same bits as the stored-weight products,
// whether this call packs the panels or finds them, serial or on threads in
// any task order (the F and output column chunks then start inside panel
// blocks), with biases, every gate/up placement and MLP, and row groups of
// more than one microkernel tile. 16-bit and out_in weights keep the stored
// products and leave the cache alone.
TEST(ExpertFfn, DecodeKeptPanelsSameBits) {
  // 1 row: the stored stream; 2..23 rows: panels, with and without the
  // prefetch of the next panel (6 rows or more; on Intel CPUs 2 or more),
  // in 1 or 2 tiles (AVX-512:
  // 9 and 10 rows one tile, 12 rows 8 + 4); 16 rows or more (17, 23) in
  // paired-panel tiles of 6 rows where two panels are left, single panels
  // (8 + 9, 8 + 8 + 7) at odd ends.
  const std::vector<int32_t> counts = {1, 0, 2, 9, 3, 17, 6, 12, 10, 23};
  for (int isa : Isas())
    for (int variant = 0; variant < 6; ++variant) {
      Form f;
      f.gate_up = variant == 1 ? MOERT_GATE_UP_CONCATENATED
                               : variant == 2 ? MOERT_GATE_UP_INTERLEAVED
                                              : MOERT_GATE_UP_SEPARATE;
      f.kind = variant == 3 ? MOERT_FFN_KIND_MLP : MOERT_FFN_KIND_GLU;
      f.dtype = variant == 4 ? MOERT_BF16 : MOERT_F32;
      f.layout = variant == 5 ? MOERT_LAYOUT_OUT_IN : MOERT_LAYOUT_IN_OUT;
      f.b1 = f.b2 = variant == 0 || variant == 2;
      const bool panels = variant < 4;
      const std::string what = FormName(f) + " isa " + std::to_string(isa);
      // F = 150 in blocks of 96 (a partial last block; 2-thread chunks of 64
      // units start inside a block), D = 100 in K slices of 64 and 36.
      TuneGuard g(Tuning(isa, MOERT_FFN_PATH_DECODE, 64, 96));
      Problem p = Make(f, 20, 100, 150, 90, counts, -1, 91u + (uint32_t)variant);
      const std::vector<float> plain = Check(p, what + " without a cache");
      TestWeightCache cache;
      cache.AddWeights(p);
      moert_weight_cache abi = cache.abi();
      WeightCacheGuard cg(&abi);
      EXPECT_TRUE(SameBits(plain, RunAgain(p))) << what << " filling";
      EXPECT_EQ(cache.fills, panels ? 8 : 0) << what; // the experts of 2+ rows
      EXPECT_TRUE(SameBits(plain, RunAgain(p))) << what << " reading";
      for (int mode = 0; mode < 3; ++mode) {
        FakePool pool;
        pool.mode = mode;
        moert_parallel_hook hook = {&pool, 2, FakeParallelFor};
        HookGuard hg(&hook);
        EXPECT_TRUE(SameBits(plain, RunAgain(p))) << what << " fake threads " << mode;
      }
      {
        ThreadPoolHook tp{2};
        moert_parallel_hook hook = {&tp, 2, ThreadPoolHook::ParallelFor};
        HookGuard hg(&hook);
        EXPECT_TRUE(SameBits(plain, RunAgain(p))) << what << " threads";
      }
      EXPECT_EQ(cache.fills, panels ? 8 : 0) << what;
      if (!panels)
        continue;
      // The kept panels are what the decode products read.
      for (auto &kv : cache.entries)
        std::fill(kv.second.data.begin(), kv.second.data.end(), 0.0f);
      EXPECT_FALSE(SameBits(plain, RunAgain(p))) << what;
    }
}

// What the kernel must not keep: weights the cache does not call constant,
// entries over the budget. Other blocking gets entries of its own.
TEST(ExpertFfn, KeptPackedPanelsOnlyOfConstantWeightsWithinBudget) {
  Form f;
  Problem p = Make(f, 90, 64, 96, 64, {60, 50}, -1, 5u);
  TuneGuard g(Tuning(MOERT_FFN_ISA_AUTO, MOERT_FFN_PATH_GEMM, 32, 32, 32));
  const std::vector<float> plain = Check(p, "without a cache");
  {
    TestWeightCache cache; // W2 not constant: nothing kept
    cache.AddConstant(p.w1);
    cache.AddConstant(p.w3);
    moert_weight_cache abi = cache.abi();
    WeightCacheGuard cg(&abi);
    EXPECT_TRUE(SameBits(plain, RunAgain(p)));
    EXPECT_EQ(cache.fills, 0);
    EXPECT_TRUE(cache.entries.empty());
  }
  {
    TestWeightCache cache; // room for one expert's panels only
    cache.AddConstant(p.w1);
    cache.AddConstant(p.w3);
    cache.AddConstant(p.w2);
    cache.budget = 3 * 64 * 96 * sizeof(float) + 4096;
    moert_weight_cache abi = cache.abi();
    WeightCacheGuard cg(&abi);
    EXPECT_TRUE(SameBits(plain, RunAgain(p)));
    EXPECT_EQ(cache.fills, 1);
    EXPECT_TRUE(SameBits(plain, RunAgain(p)));
    EXPECT_EQ(cache.fills, 1);
    // Another K blocking packs differently: new entries, same bits.
    TuneGuard g2(Tuning(MOERT_FFN_ISA_AUTO, MOERT_FFN_PATH_GEMM, 16, 32, 32));
    cache.budget = SIZE_MAX;
    EXPECT_TRUE(SameBits(plain, RunAgain(p)));
    EXPECT_EQ(cache.fills, 3);
  }
}

// The GEMM work plan: one group of row blocks per thread.
struct Plan {
  int64_t groups;
  std::vector<int64_t> rows, cost;
  std::vector<int64_t> groups_of; // per expert: groups its rows went to
};

Plan MakePlan(const std::vector<int64_t> &counts, int64_t threads) {
  Plan p;
  p.rows.assign(threads, -1);
  p.cost.assign(threads, -1);
  p.groups_of.assign(counts.size(), -1);
  p.groups = moert_expert_ffn_plan(counts.data(), (int64_t)counts.size(), threads,
                                   p.rows.data(), p.cost.data(), p.groups_of.data());
  return p;
}

// Default tuning: row blocks of <= 256 rows, a block costs its rows + 8,
// experts with < 64 rows take the decode path (not planned here).
TEST(ExpertFfnPlan, HotExpertIsSharedBetweenThreads) {
  // One expert holds more rows than a thread's share: whole experts would
  // leave 724 (3 blocks of it) against 540; sharing it costs one more
  // packing and balances the threads.
  Plan p = MakePlan({700, 100, 100, 100, 100, 100}, 2);
  ASSERT_EQ(p.groups, 2);
  EXPECT_EQ(p.rows[0] + p.rows[1], 1200);
  EXPECT_LT(p.rows[0], 700);
  EXPECT_EQ(p.cost[0] + p.cost[1], 1200 + 8 * (3 + 5 + 1));
  EXPECT_LE(std::abs(p.cost[0] - p.cost[1]), 16);
  EXPECT_EQ(p.groups_of, (std::vector<int64_t>{2, 1, 1, 1, 1, 1}));
}

// The experts cut between threads are the largest ones (a piece streams
// all of its expert's weights for its rows). Dealt out in expert order, the
// boundary would fall in expert 3 here (254 + 115 + 97 + a piece of 109).
TEST(ExpertFfnPlan, SplitsFallInTheLargestExperts) {
  Plan p = MakePlan({254, 115, 97, 109, 123, 127, 96, 103}, 2);
  ASSERT_EQ(p.groups, 2);
  EXPECT_EQ(p.rows[0] + p.rows[1], 1024);
  // Pieces are multiples of 8 rows, and the second piece packs its weights
  // again (8 rows' worth without a weight cache).
  EXPECT_LE(std::abs(p.cost[0] - p.cost[1]), 16);
  EXPECT_EQ(p.groups_of, (std::vector<int64_t>{2, 1, 1, 1, 1, 1, 1, 1}));
  // Three threads, two hot experts: each boundary in one of them (in
  // expert order: in experts 1 and 7).
  Plan q = MakePlan({400, 90, 70, 80, 66, 100, 64, 380}, 3);
  ASSERT_EQ(q.groups, 3);
  EXPECT_EQ(q.rows[0] + q.rows[1] + q.rows[2], 1250);
  EXPECT_EQ(q.groups_of, (std::vector<int64_t>{2, 1, 1, 1, 1, 1, 1, 2}));
}

TEST(ExpertFfnPlan, SkewedMixtralIsBalanced) {
  // Mixtral-small at T = 512 with half of the tokens picking expert 0 (the
  // benchmark's skewed case): at most a block of imbalance.
  Plan p = MakePlan({312, 103, 97, 102, 99, 102, 102, 107}, 2);
  ASSERT_EQ(p.groups, 2);
  EXPECT_EQ(p.rows[0] + p.rows[1], 1024);
  EXPECT_LE(std::abs(p.cost[0] - p.cost[1]), 8);
  // Whole experts balance this one: none is cut.
  EXPECT_EQ(p.groups_of, (std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 1}));
}

TEST(ExpertFfnPlan, BalancedExpertsStayWhole) {
  Plan p = MakePlan({138, 130, 115, 137, 126, 123, 134, 121}, 2);
  ASSERT_EQ(p.groups, 2);
  EXPECT_EQ(p.rows[0] + p.rows[1], 1024);
  // No expert is split: 8 blocks, each packing once.
  EXPECT_EQ(p.cost[0] + p.cost[1], 1024 + 8 * 8);
  EXPECT_LE(std::abs(p.cost[0] - p.cost[1]), 8);
}

TEST(ExpertFfnPlan, SerialIsOneGroupOfEverything) {
  Plan p = MakePlan({300, 0, 63, 64, 600}, 1);
  ASSERT_EQ(p.groups, 1);
  EXPECT_EQ(p.rows[0], 300 + 64 + 600); // 63 rows: decode path
  EXPECT_EQ(p.cost[0], 964 + 8 * (2 + 1 + 3));
}

TEST(ExpertFfnPlan, NothingToPlan) {
  Plan p = MakePlan({0, 10, 63}, 4);
  EXPECT_EQ(p.groups, 0);
  EXPECT_EQ(MakePlan({}, 2).groups, 0);
  std::vector<int64_t> r(1), c(1);
  EXPECT_EQ(moert_expert_ffn_plan(nullptr, 3, 1, r.data(), c.data(), nullptr), -1);
  EXPECT_EQ(moert_expert_ffn_plan(r.data(), 1, 0, r.data(), c.data(), nullptr), -1);
  moert_expert_ffn_tuning t = Tuning(MOERT_FFN_ISA_AUTO, MOERT_FFN_PATH_AUTO);
  t.no_heap = 1;
  TuneGuard g(t);
  EXPECT_EQ(MakePlan({100, 100}, 2).groups, -1);
}

// Random routings on 1..8 threads: every GEMM row planned once, at most one
// group per thread, and the busiest thread within a block of the even share.
TEST(ExpertFfnPlan, RandomRoutingsAreBalanced) {
  uint32_t seed = 12345u;
  auto rnd = [&seed](uint32_t n) {
    seed = seed * 1664525u + 1013904223u;
    return (seed >> 8) % n;
  };
  for (int trial = 0; trial < 2000; ++trial) {
    const int64_t threads = 1 + rnd(8);
    const int64_t experts = 1 + rnd(64);
    std::vector<int64_t> counts(experts);
    const uint32_t scale = 1 + rnd(4) * 400;
    int64_t rows = 0, cost = 0;
    for (auto &c : counts) {
      c = rnd(scale);
      if (rnd(10) == 0)
        c *= 6; // hot experts
      if (c >= 64) { // the GEMM path's experts
        rows += c;
        cost += c + 8 * ((c + 255) / 256);
      }
    }
    Plan p = MakePlan(counts, threads);
    SCOPED_TRACE(testing::Message() << "trial " << trial << " threads " << threads);
    ASSERT_GE(p.groups, rows > 0 ? 1 : 0);
    ASSERT_LE(p.groups, threads);
    int64_t got = 0, busiest = 0;
    for (int64_t g = 0; g < threads; ++g) {
      got += p.rows[g];
      busiest = std::max(busiest, p.cost[g]);
      if (g >= p.groups)
        EXPECT_EQ(p.rows[g], 0);
    }
    EXPECT_EQ(got, rows);
    // Beyond the even share: a piece too small to split (< 32 rows, rounded
    // to 8) and its block's packing, or one whole expert when whole
    // experts balance better.
    int64_t largest = 0;
    for (int64_t c : counts)
      if (c >= 64)
        largest = std::max(largest, c + 8 * ((c + 255) / 256));
    const int64_t share = (cost + threads - 1) / threads;
    EXPECT_LE(busiest, std::max(share + 32 + 4 + 16, largest)) << "share " << share;
  }
}

// Which rows share a tile or a task never changes a row's result: the
// blocks leave last tiles of every height from 1 to 7 rows (49 rows in
// blocks of 24: 24, 24, 1; 31 rows whole: 8, 8, 8, 7), which run
// microkernels of their own height.
TEST(ExpertFfn, RowBlockingDoesNotChangeBits) {
  for (int isa : Isas()) {
    Form f;
    f.dtype = MOERT_BF16;
    f.gate_up = MOERT_GATE_UP_INTERLEAVED;
    std::vector<float> first;
    for (int64_t rb : {8, 24, 40, 1000}) {
      TuneGuard g(Tuning(isa, MOERT_FFN_PATH_GEMM, 64, 64, rb));
      Problem p = Make(f, 80, 70, 90, 50, {77, 20, 49, 31, 58, 3, 14}, -1, 3u);
      RunKernel(p);
      std::vector<float> got = OutRows(p);
      if (first.empty())
        first = got;
      else
        EXPECT_EQ(0, std::memcmp(got.data(), first.data(), got.size() * sizeof(float)))
            << "row_block " << rb;
    }
  }
}

// A lone decode row (one expert with one row: a k = 1 model at T = 1) on
// in_out weights is split by K into parts summed apart and added in order:
// right for every such form (the biases, activation and b2 apply once, to
// the sum), and the same bits on any thread count, since the split does
// not depend on it.
TEST(ExpertFfn, LoneDecodeRowSplitByKSameBitsOnAnyThreadCount) {
  for (int isa : Isas())
    for (const Form &f0 : AllForms()) {
      if (f0.layout != MOERT_LAYOUT_IN_OUT || f0.gate_up == MOERT_GATE_UP_INTERLEAVED)
        continue; // the split's stored-order streams only
      Form f = f0;
      f.b1 = f.b2 = true;
      TuneGuard tg(Tuning(isa, MOERT_FFN_PATH_AUTO));
      const std::vector<int32_t> counts = {0, 0, 1, 0};
      Problem base = Make(f, 3, 301, 257, 131, counts, -1, 41u);
      Problem p = base;
      std::vector<float> serial = Check(p, "lone row " + FormName(f));
      for (int threads : {2, 3}) {
        ThreadPoolHook pool{threads};
        moert_parallel_hook hook = {&pool, threads, ThreadPoolHook::ParallelFor};
        HookGuard hg(&hook);
        Problem q = base;
        RunKernel(q);
        std::vector<float> got = OutRows(q);
        EXPECT_EQ(0, std::memcmp(got.data(), serial.data(), got.size() * sizeof(float)))
            << FormName(f) << ", " << threads << " threads";
      }
    }
}

//===----------------------------------------------------------------------===//
// Inconsistent operands: nothing written
//===----------------------------------------------------------------------===//

TEST(ExpertFfn, InconsistentDescriptorsWriteNothing) {
  Form f;
  f.b1 = f.b2 = true;
  Problem base = Make(f, 6, 8, 12, 8, {2, 3}, -1, 9u);
  auto expect_untouched = [&](Problem &p, const char *what) {
    for (float v : p.out.data)
      if (v != kSentinel) {
        ADD_FAILURE() << what;
        return;
      }
  };
  auto call = [](Problem &p, moert_memref_2d x, moert_memref_1d rt, moert_memref_1d ct,
                 moert_memref_3d w1, moert_memref_3d w3, moert_memref_3d w2,
                 moert_memref_2d b1, moert_memref_2d b2, moert_memref_2d out,
                 int64_t seg, int64_t kind, int64_t act, int64_t gu, int64_t layout,
                 int64_t dtype) {
    (void)p;
    moert_memref_3d none = w1;
    none.sizes[0] = 0;
    moert_memref_2d none2 = x;
    none2.sizes[0] = none2.sizes[1] = 0;
    _mlir_ciface_moert_cpu_expert_ffn(&x, &rt, &ct, &w1, &w3, &w2, &b1, &b2, &none, &none,
                                      &none, &none2, &none2, &none2, &out, seg, kind, act,
                                      gu, layout, 1.0, 0.0, 0.0, dtype, 0, 0);
  };
  struct Args {
    moert_memref_2d x, b1, b2, out;
    moert_memref_1d rt, ct;
    moert_memref_3d w1, w3, w2;
    int64_t seg = -1, kind = 1, act = 0, gu = 0, layout = 0, dtype = 0;
  };
  auto args = [&](Problem &p) {
    Args a;
    a.x = p.x.desc();
    a.out = p.out.desc();
    a.b1 = p.b1.desc();
    a.b2 = p.b2.desc();
    a.rt.allocated = a.rt.aligned = p.row_token.data();
    a.rt.offset = 0;
    a.rt.sizes[0] = (int64_t)p.row_token.size();
    a.rt.strides[0] = 1;
    a.ct.allocated = a.ct.aligned = p.counts.data();
    a.ct.offset = 0;
    a.ct.sizes[0] = (int64_t)p.counts.size();
    a.ct.strides[0] = 1;
    a.w1 = p.w1.desc();
    a.w3 = p.w3.desc();
    a.w2 = p.w2.desc();
    return a;
  };
  auto go = [&](const char *what, auto mutate) {
    Problem p = base;
    Args a = args(p);
    mutate(a);
    call(p, a.x, a.rt, a.ct, a.w1, a.w3, a.w2, a.b1, a.b2, a.out, a.seg, a.kind, a.act,
         a.gu, a.layout, a.dtype);
    expect_untouched(p, what);
  };
  // Sanity: the unmodified call writes.
  {
    Problem p = base;
    Args a = args(p);
    call(p, a.x, a.rt, a.ct, a.w1, a.w3, a.w2, a.b1, a.b2, a.out, a.seg, a.kind, a.act,
         a.gu, a.layout, a.dtype);
    EXPECT_NE(p.out.at(0, 0), kSentinel);
  }
  go("kind", [](Args &a) { a.kind = 2; });
  go("act", [](Args &a) { a.act = 5; });
  go("gate_up", [](Args &a) { a.gu = 3; });
  go("layout", [](Args &a) { a.layout = -1; });
  go("dtype", [](Args &a) { a.dtype = 3; });
  go("neg size", [](Args &a) { a.x.sizes[0] = -1; });
  go("null data", [](Args &a) { a.w2.aligned = nullptr; });
  go("x cols", [](Args &a) { a.x.sizes[1] = 7; });
  go("w1 F", [](Args &a) { a.w1.sizes[2] = 11; });
  go("w2 E", [](Args &a) { a.w2.sizes[0] = 3; });
  go("counts E", [](Args &a) { a.ct.sizes[0] = 1; });
  go("w3 absent", [](Args &a) { a.w3.sizes[0] = 0; });
  go("w3 shape", [](Args &a) { a.w3.sizes[1] = 9; });
  go("out rows", [](Args &a) { a.out.sizes[0] = 4; });
  go("out cols", [](Args &a) { a.out.sizes[1] = 9; });
  go("b1 shape", [](Args &a) { a.b1.sizes[1] = 11; });
  go("b2 shape", [](Args &a) { a.b2.sizes[0] = 1; });
  go("inner stride", [](Args &a) { a.w1.strides[2] = 2; });
  go("x inner stride", [](Args &a) { a.x.strides[1] = 2; });
  go("padded R != E*C", [](Args &a) { a.seg = 3; });
  go("fused needs 2F", [](Args &a) { a.gu = 1; });
}

// A shared expert group that does not match the routed experts' shapes, or
// with the padded layout, makes the call write nothing.
TEST(ExpertFfn, MismatchedSharedGroupWritesNothing) {
  Form f;
  for (int what = 0; what < 4; ++what) {
    // Case 3 is padded (capacity 4, R = 3 x 4): valid but for the group.
    Problem p = Make(f, 6, 8, 12, 8, {2, 3, 4}, what == 3 ? 4 : -1, 9u);
    moert_memref_2d x = p.x.desc(), out = p.out.desc(), b1 = p.b1.desc(), b2 = p.b2.desc();
    moert_memref_1d rt, ct;
    rt.allocated = rt.aligned = p.row_token.data();
    rt.offset = 0;
    rt.sizes[0] = (int64_t)p.row_token.size();
    rt.strides[0] = 1;
    ct.allocated = ct.aligned = p.counts.data();
    ct.offset = 0;
    ct.sizes[0] = 3;
    ct.strides[0] = 1;
    moert_memref_3d w1 = p.w1.desc(), w3 = p.w3.desc(), w2 = p.w2.desc();
    moert_memref_3d sw1 = w1, sw3 = w3, sw2 = w2;
    w1.sizes[0] = w3.sizes[0] = w2.sizes[0] = 2;
    sw1.sizes[0] = sw3.sizes[0] = sw2.sizes[0] = 1;
    int64_t seg = p.seg_stride;
    if (what == 0)
      sw1.sizes[2] = 11; // hidden width
    else if (what == 1)
      sw2.sizes[1] = 11;
    else if (what == 2)
      sw3.sizes[0] = 0; // a separate GLU needs shared w3
    moert_memref_2d none2 = x;
    none2.sizes[0] = none2.sizes[1] = 0;
    _mlir_ciface_moert_cpu_expert_ffn(&x, &rt, &ct, &w1, &w3, &w2, &b1, &b2, &sw1, &sw3,
                                      &sw2, &none2, &none2, &none2, &out, seg, f.kind,
                                      f.act, f.gate_up, f.layout, 1.0, 0.0, 0.0, f.dtype,
                                      0, 0);
    for (float v : p.out.data)
      ASSERT_EQ(v, kSentinel) << "case " << what;
  }
}

} // namespace

//===----------------------------------------------------------------------===//
// Dense products (moert_cpu_matmul)
//===----------------------------------------------------------------------===//

namespace {
// Deterministic values in [-1, 1) for the products' operands.
struct Uniform {
  uint32_t seed;
  float operator()() {
    seed = seed * 1664525u + 1013904223u;
    return static_cast<float>((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
  }
};

moert_memref_2d Mat(float *data, int64_t rows, int64_t cols, int64_t ld,
                    int64_t col_stride = 1) {
  moert_memref_2d m;
  m.allocated = m.aligned = data;
  m.offset = 0;
  m.sizes[0] = rows;
  m.sizes[1] = cols;
  m.strides[0] = ld;
  m.strides[1] = col_stride;
  return m;
}
} // namespace

TEST(Matmul, EqualsTheLoopsBitForBitWithAnyHook) {
  // N = 13: partial column blocks only; N = 133: two full blocks of 64
  // columns (summed in registers, rows in fours) and a partial one, M not a
  // multiple of 4.
  for (const auto &shape : {std::array<int64_t, 3>{37, 70, 13}, std::array<int64_t, 3>{43, 50, 133}}) {
    const int64_t M = shape[0], K = shape[1], N = shape[2];
    std::vector<float> a(M * K), b(K * N), init(M * N), want(M * N);
    Uniform rnd{7};
    for (float &v : a) v = rnd();
    for (float &v : b) v = rnd();
    for (float &v : init) v = rnd();
    // The generated loops: init + sum in k order, one rounding per operation.
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        volatile float acc = init[i * N + j];
        for (int64_t k = 0; k < K; ++k) {
          volatile float p = a[i * K + k] * b[k * N + j];
          acc = acc + p;
        }
        want[i * N + j] = acc;
      }
    for (int threads : {1, 2, 5}) {
      ThreadPoolHook pool{threads};
      moert_parallel_hook hook = {&pool, threads, ThreadPoolHook::ParallelFor};
      HookGuard guard(threads > 1 ? &hook : nullptr);
      std::vector<float> out(M * N, -1.0f);
      moert_memref_2d ma = Mat(a.data(), M, K, K), mb = Mat(b.data(), K, N, N),
                      mi = Mat(init.data(), M, N, N), mo = Mat(out.data(), M, N, N);
      _mlir_ciface_moert_cpu_matmul(&ma, &mb, &mi, &mo);
      EXPECT_EQ(0, std::memcmp(out.data(), want.data(), out.size() * 4))
          << threads << " threads, N " << N;
      // In place: out is init.
      std::vector<float> io = init;
      moert_memref_2d mio = Mat(io.data(), M, N, N);
      _mlir_ciface_moert_cpu_matmul(&ma, &mb, &mio, &mio);
      EXPECT_EQ(0, std::memcmp(io.data(), want.data(), io.size() * 4))
          << threads << " threads, N " << N << ", in place";
    }
    // Non-unit column strides take the element-wise path, same values.
    std::vector<float> out2(M * N * 2, -1.0f);
    moert_memref_2d ma = Mat(a.data(), M, K, K), mb = Mat(b.data(), K, N, N),
                    mi = Mat(init.data(), M, N, N),
                    mo = Mat(out2.data(), M, N, 2 * N, 2);
    _mlir_ciface_moert_cpu_matmul(&ma, &mb, &mi, &mo);
    for (int64_t i = 0; i < M * N; ++i)
      ASSERT_EQ(out2[2 * i], want[i]) << i << ", N " << N;
  }
}

TEST(Matmul, MismatchedShapesDoNothing) {
  float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 1, 1, 1, 1, 1}, init[4] = {0},
        out[4] = {9, 9, 9, 9};
  moert_memref_2d ma = Mat(a, 2, 3, 3), mb = Mat(b, 2, 3, 3), // K mismatch
      mi = Mat(init, 2, 2, 2), mo = Mat(out, 2, 2, 2);
  _mlir_ciface_moert_cpu_matmul(&ma, &mb, &mi, &mo);
  EXPECT_EQ(out[0], 9.0f);
  _mlir_ciface_moert_cpu_matmul(nullptr, &mb, &mi, &mo);
  EXPECT_EQ(out[3], 9.0f);
}

// moe.combine after the expert FFN: f32 rows are summed in place in the
// output rows, vectorised and over threads; the sums stay the loops' (from
// 0, slot order, one rounding per operation) with or without threads, with
// strided rows (element-wise path) and with an output that shares memory
// with the passthrough rows (summed aside, then written).
TEST(Combine, ThreadsAndInPlaceSumsEqualTheLoopsBitForBit) {
  const int64_t T = 300, K = 3, D = 300, R = T * K; // T D K >= 2^18: threads
  std::vector<float> rows(R * D), w(T * K), pass(T * D), want(T * D);
  std::vector<int32_t> slot(T * K);
  Uniform rnd{11};
  for (float &v : rows) v = rnd();
  for (float &v : pass) v = rnd();
  for (int64_t i = 0; i < T * K; ++i) {
    w[i] = i % 7 == 3 ? 0.0f : rnd();
    const float u = rnd();
    // -1 (dropped: passthrough where w != 0), out of range (dropped too)
    slot[i] = u < -0.8f ? -1 : u > 0.9f ? (int32_t)(R + 5) : (int32_t)((rnd.seed >> 4) % R);
  }
  for (int64_t t = 0; t < T; ++t)
    for (int64_t d = 0; d < D; ++d) {
      volatile float acc = 0.0f;
      for (int64_t j = 0; j < K; ++j) {
        const int32_t r = slot[t * K + j];
        const float wj = w[t * K + j];
        const float *src = r >= 0 && r < R ? &rows[r * D] : wj != 0.0f ? &pass[t * D] : nullptr;
        if (!src)
          continue;
        volatile float p = wj * src[d];
        acc = acc + p;
      }
      want[t * D + d] = acc;
    }
  auto ints = [](int32_t *p, int64_t r, int64_t c) {
    return Mat(reinterpret_cast<float *>(p), r, c, c);
  };
  moert_memref_2d mr = Mat(rows.data(), R, D, D), ms = ints(slot.data(), T, K),
                  mw = Mat(w.data(), T, K, K), mp = Mat(pass.data(), T, D, D);
  for (int threads : {1, 2, 5}) {
    ThreadPoolHook pool{threads};
    moert_parallel_hook hook = {&pool, threads, ThreadPoolHook::ParallelFor};
    HookGuard guard(threads > 1 ? &hook : nullptr);
    std::vector<float> out(T * D, -1.0f);
    moert_memref_2d mo = Mat(out.data(), T, D, D);
    _mlir_ciface_moert_cpu_combine(&mr, &ms, &mw, &mp, &mo, MOERT_F32);
    EXPECT_EQ(0, std::memcmp(out.data(), want.data(), out.size() * 4)) << threads << " threads";
    // Output rows strided by 2: the element-wise path, same values.
    std::vector<float> out2(T * D * 2, -1.0f);
    moert_memref_2d mo2 = Mat(out2.data(), T, D, 2 * D, 2);
    _mlir_ciface_moert_cpu_combine(&mr, &ms, &mw, &mp, &mo2, MOERT_F32);
    for (int64_t i = 0; i < T * D; ++i)
      ASSERT_EQ(out2[2 * i], want[i]) << i << ", " << threads << " threads";
    // The output is the passthrough buffer: token t reads only its own row.
    std::vector<float> shared = pass;
    moert_memref_2d ps = Mat(shared.data(), T, D, D);
    _mlir_ciface_moert_cpu_combine(&mr, &ms, &mw, &ps, &ps, MOERT_F32);
    EXPECT_EQ(0, std::memcmp(shared.data(), want.data(), shared.size() * 4))
        << threads << " threads, output = passthrough";
  }
}
