//===- session_test.cc - binding, validation, calls and statistics --------===//

#include <thread>

#include "fake_model_util.h"
#include "json.h"

using namespace moert_test;

namespace {

struct WeightsPtr {
  moert_weights_t *w = nullptr;
  ~WeightsPtr() { moert_weights_release(w); }
};

struct SessionPtr {
  moert_session_t *s = nullptr;
  ~SessionPtr() { moert_session_release(s); }
};

class SessionTest : public FakeModelTest {
protected:
  void SetUp() override {
    FakeModelTest::SetUp();
    ASSERT_TRUE(IsOk(moert_model_load(MOERT_FAKE_MODEL_PATH, &model_.m)));
    ASSERT_TRUE(IsOk(moert_model_find_entry(model_.m, "add", &add_)));
    ASSERT_TRUE(IsOk(moert_model_find_entry(model_.m, "pair", &pair_)));
    ASSERT_TRUE(IsOk(moert_model_find_entry(model_.m, "dup", &dup_)));
    ASSERT_TRUE(IsOk(moert_model_find_entry(model_.m, "ident", &ident_)));
  }

  // Weights with one tensor "w" of `dtype` holding `raw` (shape [n]), parsed
  // into memory (a copy: the tensor is 64-byte aligned) or, with `mapped`,
  // mapped from a file (the tensor lies where `pad` puts it).
  static moert_weights_t *WeightsW(const char *dtype, const std::string &raw,
                                   int64_t n, size_t pad = 0,
                                   const TempDir *mapped = nullptr) {
    std::string header = std::string("{\"w\": {\"dtype\": \"") + dtype +
                         "\", \"shape\": [" + std::to_string(n) +
                         "], \"data_offsets\": [" + std::to_string(pad) +
                         ", " + std::to_string(pad + raw.size()) + "]}}";
    while ((8 + header.size()) % 8)
      header += ' ';
    std::string image = Safetensors(header, std::string(pad, '\0') + raw);
    moert_weights_t *w = nullptr;
    if (mapped) {
      std::string path = mapped->File("w.safetensors");
      WriteFile(path, image);
      EXPECT_TRUE(IsOk(moert_weights_load_safetensors(path.c_str(), &w)));
      return w;
    }
    EXPECT_TRUE(
        IsOk(moert_weights_parse_safetensors(image.data(), image.size(), &w)));
    return w;
  }

  ModelPtr model_;
  int32_t add_ = -1, pair_ = -1, dup_ = -1, ident_ = -1;
};

} // namespace

TEST_F(SessionTest, AddWithExplicitInputs) {
  TensorPtr x(F32({2, 4}, {1, 2, 3, 4, 5, 6, 7, 8}));
  TensorPtr w(F32({4}, {10, 20, 30, 40}));
  moert_named_tensor in[] = {{"w", w.get()}, {"x", x.get()}};
  TensorPtr y;
  ASSERT_TRUE(IsOk(moert_call(model_.m, add_, nullptr, in, 2, y.out(), 1)));
  EXPECT_EQ(Shape(y.get()), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(moert_tensor_dtype(y.get()), MOERT_DTYPE_F32);
  EXPECT_EQ(Values<float>(y.get()),
            (std::vector<float>{11, 22, 33, 44, 15, 26, 37, 48}));
}

TEST_F(SessionTest, BindsMissingArgumentsFromWeightsByName) {
  WeightsPtr weights;
  weights.w = WeightsW("F32", Bytes<float>({1, 2, 3, 4}), 4);
  TensorPtr x(F32({1, 4}, {0, 0, 0, 1}));
  moert_named_tensor in[] = {{"x", x.get()}};
  TensorPtr y;
  ASSERT_TRUE(IsOk(moert_call(model_.m, add_, weights.w, in, 1, y.out(), 1)));
  EXPECT_EQ(Values<float>(y.get()), (std::vector<float>{1, 2, 3, 5}));
}

// Flushing the bound weights out of the caches changes nothing a call sees.
TEST_F(SessionTest, EvictWeightsKeepsResults) {
  WeightsPtr weights;
  weights.w = WeightsW("F32", Bytes<float>({1, 2, 3, 4}), 4);
  SessionPtr session;
  ASSERT_TRUE(IsOk(moert_session_create(model_.m, add_, weights.w, &session.s)));
  TensorPtr x(F32({1, 4}, {0, 0, 0, 1}));
  moert_named_tensor in[] = {{"x", x.get()}};
#if defined(__x86_64__)
  EXPECT_EQ(moert_session_evict_weights(session.s), 1);
#else
  EXPECT_EQ(moert_session_evict_weights(session.s), 0);
#endif
  TensorPtr y;
  ASSERT_TRUE(IsOk(moert_session_call(session.s, in, 1, y.out(), 1)));
  EXPECT_EQ(Values<float>(y.get()), (std::vector<float>{1, 2, 3, 5}));
  EXPECT_EQ(moert_session_evict_weights(nullptr), 0);
}

// The session's weight cache: the model keeps a copy of a bound weight on
// the first call and reads it on later ones; call inputs are never constant
// memory; the limit bounds what is kept.
TEST_F(SessionTest, KeepsCopiesOfBoundWeightsOnly) {
  WeightsPtr weights;
  weights.w = WeightsW("F32", Bytes<float>({1, 2, 3, 4}), 4);
  SessionPtr session;
  ASSERT_TRUE(IsOk(moert_session_create(model_.m, add_, weights.w, &session.s)));
  // Default limit: the bound weights in f32 plus an eighth.
  EXPECT_EQ(moert_session_packed_weights_limit(session.s), 16 + 2);
  EXPECT_EQ(moert_session_packed_weights_bytes(session.s), 0);
  TakeFakeCacheCounts();
  TensorPtr x(F32({1, 4}, {0, 0, 0, 1}));
  moert_named_tensor in[] = {{"x", x.get()}};
  for (int call = 0; call < 3; ++call) {
    TensorPtr y;
    ASSERT_TRUE(IsOk(moert_session_call(session.s, in, 1, y.out(), 1)));
    EXPECT_EQ(Values<float>(y.get()), (std::vector<float>{1, 2, 3, 5}));
    // Made on the first call, reused after; x is never constant.
    EXPECT_EQ(TakeFakeCacheCounts(),
              (std::vector<int64_t>{call == 0 ? 1 : 0, call == 0 ? 0 : 1, 0}));
  }
  EXPECT_EQ(moert_session_packed_weights_bytes(session.s), 16);
#if defined(__x86_64__)
  EXPECT_EQ(moert_session_evict_weights(session.s), 1); // copies included
#endif
  // An explicit w is a call input: not constant, nothing kept or read.
  TensorPtr w(F32({4}, {9, 9, 9, 9}));
  moert_named_tensor both[] = {{"x", x.get()}, {"w", w.get()}};
  TensorPtr y;
  ASSERT_TRUE(IsOk(moert_session_call(session.s, both, 2, y.out(), 1)));
  EXPECT_EQ(Values<float>(y.get()), (std::vector<float>{9, 9, 9, 10}));
  EXPECT_EQ(TakeFakeCacheCounts(), (std::vector<int64_t>{0, 0, 0}));
}

TEST_F(SessionTest, PackedWeightsLimit) {
  WeightsPtr weights;
  weights.w = WeightsW("F32", Bytes<float>({1, 2, 3, 4}), 4);
  SessionPtr session;
  ASSERT_TRUE(IsOk(moert_session_create(model_.m, add_, weights.w, &session.s)));
  EXPECT_TRUE(IsError(moert_session_set_packed_weights_limit(session.s, -1),
                      MOERT_STATUS_INVALID_ARGUMENT, {"negative"}));
  EXPECT_TRUE(IsError(moert_session_set_packed_weights_limit(nullptr, 0),
                      MOERT_STATUS_INVALID_ARGUMENT, {"NULL"}));
  ASSERT_TRUE(IsOk(moert_session_set_packed_weights_limit(session.s, 15)));
  EXPECT_EQ(moert_session_packed_weights_limit(session.s), 15);
  TakeFakeCacheCounts();
  TensorPtr x(F32({1, 4}, {0, 0, 0, 1}));
  moert_named_tensor in[] = {{"x", x.get()}};
  for (int call = 0; call < 2; ++call) {
    TensorPtr y;
    ASSERT_TRUE(IsOk(moert_session_call(session.s, in, 1, y.out(), 1)));
    EXPECT_EQ(Values<float>(y.get()), (std::vector<float>{1, 2, 3, 5}));
  }
  // 16 bytes do not fit in 15: computed from w itself every call.
  EXPECT_EQ(TakeFakeCacheCounts(), (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(moert_session_packed_weights_bytes(session.s), 0);
  EXPECT_EQ(moert_session_packed_weights_limit(nullptr), 0);
  EXPECT_EQ(moert_session_packed_weights_bytes(nullptr), 0);
}

// One-shot calls and models without the export keep nothing.
TEST_F(SessionTest, OneShotCallsAndModelsWithoutTheExportKeepNoCopies) {
  WeightsPtr weights;
  weights.w = WeightsW("F32", Bytes<float>({1, 2, 3, 4}), 4);
  TakeFakeCacheCounts();
  TensorPtr x(F32({1, 4}, {0, 0, 0, 1}));
  moert_named_tensor in[] = {{"x", x.get()}};
  TensorPtr y;
  ASSERT_TRUE(IsOk(moert_call(model_.m, add_, weights.w, in, 1, y.out(), 1)));
  EXPECT_EQ(Values<float>(y.get()), (std::vector<float>{1, 2, 3, 5}));
  EXPECT_EQ(TakeFakeCacheCounts(), (std::vector<int64_t>{0, 0, 0}));
  ModelPtr nostats;
  ASSERT_TRUE(IsOk(moert_model_load(MOERT_FAKE_MODEL_NOSTATS_PATH, &nostats.m)));
  SessionPtr session;
  ASSERT_TRUE(IsOk(moert_session_create(nostats.m, 0, weights.w, &session.s)));
  EXPECT_EQ(moert_session_packed_weights_limit(session.s), 0);
  ASSERT_TRUE(IsOk(moert_session_set_packed_weights_limit(session.s, 100)));
  EXPECT_EQ(moert_session_packed_weights_limit(session.s), 0);
}

TEST_F(SessionTest, ConvertsBf16WeightsToF32OnceAtBind) {
  // bf16 1.5, -2, 0.25, 3 (exact).
  WeightsPtr weights;
  weights.w =
      WeightsW("BF16", Bytes<uint16_t>({0x3fc0, 0xc000, 0x3e80, 0x4040}), 4);
  SessionPtr session;
  ASSERT_TRUE(IsOk(moert_session_create(model_.m, add_, weights.w, &session.s)));
  // The session keeps its converted copy: the weights may go away.
  moert_weights_release(weights.w);
  weights.w = nullptr;
  for (int call = 0; call < 3; ++call) {
    TensorPtr x(F32({2, 4}, {1, 1, 1, 1, 0, 0, 0, float(call)}));
    moert_named_tensor in[] = {{"x", x.get()}};
    TensorPtr y;
    ASSERT_TRUE(IsOk(moert_session_call(session.s, in, 1, y.out(), 1)));
    EXPECT_EQ(Values<float>(y.get()),
              (std::vector<float>{2.5f, -1, 1.25f, 4, 1.5f, -2, 0.25f,
                                  3.0f + call}));
  }
}

TEST_F(SessionTest, ConvertsF16WeightsAndRealignsMisalignedOnes) {
  WeightsPtr f16;
  f16.w = WeightsW("F16", Bytes<uint16_t>({0x3c00, 0x4000, 0xbc00, 0x3800}), 4);
  // f32 data at offset 2 of the data section of a mapped file: not 4-byte
  // aligned.
  TempDir dir;
  WeightsPtr misaligned;
  misaligned.w = WeightsW("F32", Bytes<float>({5, 6, 7, 8}), 4, /*pad=*/2, &dir);
  ASSERT_NE(reinterpret_cast<uintptr_t>(moert_tensor_const_data(
                moert_weights_find(misaligned.w, "w"))) %
                4,
            0u);
  TensorPtr x(F32({1, 4}, {0, 0, 0, 0}));
  moert_named_tensor in[] = {{"x", x.get()}};
  TensorPtr y;
  ASSERT_TRUE(IsOk(moert_call(model_.m, add_, f16.w, in, 1, y.out(), 1)));
  EXPECT_EQ(Values<float>(y.get()), (std::vector<float>{1, 2, -1, 0.5f}));
  ASSERT_TRUE(
      IsOk(moert_call(model_.m, add_, misaligned.w, in, 1, y.out(), 1)));
  EXPECT_EQ(Values<float>(y.get()), (std::vector<float>{5, 6, 7, 8}));
  // A misaligned weight passed explicitly as an input is realigned too.
  moert_named_tensor both[] = {{"x", x.get()},
                               {"w", moert_weights_find(misaligned.w, "w")}};
  ASSERT_TRUE(IsOk(moert_call(model_.m, add_, nullptr, both, 2, y.out(), 1)));
  EXPECT_EQ(Values<float>(y.get()), (std::vector<float>{5, 6, 7, 8}));
}

TEST_F(SessionTest, ExplicitInputsTakePrecedenceOverWeights) {
  WeightsPtr weights;
  weights.w = WeightsW("F32", Bytes<float>({1, 1, 1, 1}), 4);
  TensorPtr x(F32({1, 4}, {0, 0, 0, 0}));
  TensorPtr w(F32({4}, {9, 9, 9, 9}));
  moert_named_tensor in[] = {{"x", x.get()}, {"w", w.get()}};
  TensorPtr y;
  ASSERT_TRUE(IsOk(moert_call(model_.m, add_, weights.w, in, 2, y.out(), 1)));
  EXPECT_EQ(Values<float>(y.get()), (std::vector<float>{9, 9, 9, 9}));
}

TEST_F(SessionTest, MissingArgument) {
  TensorPtr x(F32({1, 4}, {0, 0, 0, 0}));
  moert_named_tensor in[] = {{"x", x.get()}};
  moert_tensor_t *y = reinterpret_cast<moert_tensor_t *>(0x1);
  EXPECT_TRUE(IsError(moert_call(model_.m, add_, nullptr, in, 1, &y, 1),
                      MOERT_STATUS_NOT_FOUND,
                      {"entry 'add'", "missing argument 'w'", "no weights"}));
  EXPECT_EQ(y, nullptr);
  WeightsPtr other;
  std::string image = Safetensors(
      R"({"v": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
      Bytes<float>({1, 2, 3, 4}));
  ASSERT_TRUE(IsOk(
      moert_weights_parse_safetensors(image.data(), image.size(), &other.w)));
  EXPECT_TRUE(IsError(moert_call(model_.m, add_, other.w, in, 1, &y, 1),
                      MOERT_STATUS_NOT_FOUND,
                      {"missing argument 'w'", "not in the weights"}));
}

TEST_F(SessionTest, WrongShapes) {
  TensorPtr w(F32({4}, {0, 0, 0, 0}));
  TensorPtr y;
  {
    TensorPtr x(F32({4}, {0, 0, 0, 0}));
    moert_named_tensor in[] = {{"x", x.get()}, {"w", w.get()}};
    EXPECT_TRUE(IsError(
        moert_call(model_.m, add_, nullptr, in, 2, y.out(), 1),
        MOERT_STATUS_INVALID_ARGUMENT,
        {"argument 'x' (input)", "rank 1", "expected rank 2", "[?, 4]"}));
  }
  {
    TensorPtr x(F32({3, 5}, std::vector<float>(15)));
    moert_named_tensor in[] = {{"x", x.get()}, {"w", w.get()}};
    EXPECT_TRUE(IsError(moert_call(model_.m, add_, nullptr, in, 2, y.out(), 1),
                        MOERT_STATUS_INVALID_ARGUMENT,
                        {"argument 'x'", "shape [3, 5]", "expected [?, 4]",
                         "dimension 1 is 5, expected 4"}));
  }
  {
    TensorPtr x;
    const int64_t s[] = {0, 4};
    ASSERT_TRUE(IsOk(moert_tensor_create(MOERT_DTYPE_F32, 2, s, x.out())));
    moert_named_tensor in[] = {{"x", x.get()}, {"w", w.get()}};
    EXPECT_TRUE(IsError(moert_call(model_.m, add_, nullptr, in, 2, y.out(), 1),
                        MOERT_STATUS_INVALID_ARGUMENT,
                        {"argument 'x'", "token count T", ">= 1"}));
  }
  {
    TensorPtr x;
    const int64_t s[] = {2, 4};
    ASSERT_TRUE(IsOk(moert_tensor_create(MOERT_DTYPE_F16, 2, s, x.out())));
    moert_named_tensor in[] = {{"x", x.get()}, {"w", w.get()}};
    EXPECT_TRUE(IsError(moert_call(model_.m, add_, nullptr, in, 2, y.out(), 1),
                        MOERT_STATUS_INVALID_ARGUMENT,
                        {"argument 'x'", "dtype f16, expected f32"}));
  }
  EXPECT_EQ(y.get(), nullptr);
}

TEST_F(SessionTest, InconsistentTokenCount) {
  TensorPtr a(F32({3, 3}, std::vector<float>(9)));
  TensorPtr b;
  const int64_t s[] = {2};
  ASSERT_TRUE(IsOk(moert_tensor_create(MOERT_DTYPE_I32, 1, s, b.out())));
  moert_named_tensor in[] = {{"a", a.get()}, {"b", b.get()}};
  moert_tensor_t *out[2] = {reinterpret_cast<moert_tensor_t *>(0x1),
                            reinterpret_cast<moert_tensor_t *>(0x1)};
  EXPECT_TRUE(IsError(moert_call(model_.m, pair_, nullptr, in, 2, out, 2),
                      MOERT_STATUS_INVALID_ARGUMENT,
                      {"argument 'b'", "dynamic dimension 0 is 2",
                       "token count T is 3", "argument 'a'"}));
  EXPECT_EQ(out[0], nullptr);
  EXPECT_EQ(out[1], nullptr);
}

TEST_F(SessionTest, BadInputLists) {
  TensorPtr x(F32({1, 4}, {0, 0, 0, 0}));
  TensorPtr w(F32({4}, {0, 0, 0, 0}));
  TensorPtr y;
  moert_named_tensor unknown[] = {{"x", x.get()}, {"w", w.get()},
                                  {"bias", w.get()}};
  EXPECT_TRUE(IsError(
      moert_call(model_.m, add_, nullptr, unknown, 3, y.out(), 1),
      MOERT_STATUS_INVALID_ARGUMENT,
      {"input 'bias' is not an argument", "arguments: x, w"}));
  moert_named_tensor twice[] = {{"x", x.get()}, {"x", x.get()}};
  EXPECT_TRUE(IsError(moert_call(model_.m, add_, nullptr, twice, 2, y.out(), 1),
                      MOERT_STATUS_INVALID_ARGUMENT, {"'x' is given twice"}));
  moert_named_tensor null_tensor[] = {{"x", nullptr}};
  EXPECT_TRUE(IsError(
      moert_call(model_.m, add_, nullptr, null_tensor, 1, y.out(), 1),
      MOERT_STATUS_INVALID_ARGUMENT, {"NULL"}));
  moert_named_tensor ok[] = {{"x", x.get()}, {"w", w.get()}};
  moert_tensor_t *two[2];
  EXPECT_TRUE(IsError(moert_call(model_.m, add_, nullptr, ok, 2, two, 2),
                      MOERT_STATUS_INVALID_ARGUMENT, {"has 1 results"}));
  EXPECT_TRUE(IsError(moert_call(model_.m, 9, nullptr, ok, 2, y.out(), 1),
                      MOERT_STATUS_OUT_OF_RANGE, {"entry index 9"}));
}

TEST_F(SessionTest, WeightThatDoesNotFitFailsAtBind) {
  WeightsPtr wrong_shape;
  wrong_shape.w = WeightsW("F32", Bytes<float>({1, 2, 3}), 3);
  moert_session_t *s = reinterpret_cast<moert_session_t *>(0x1);
  EXPECT_TRUE(IsError(moert_session_create(model_.m, add_, wrong_shape.w, &s),
                      MOERT_STATUS_INVALID_ARGUMENT,
                      {"argument 'w' (weight)", "dimension 0 is 3"}));
  EXPECT_EQ(s, nullptr);
  WeightsPtr integer;
  integer.w = WeightsW("I32", Bytes<int32_t>({1, 2, 3, 4}), 4);
  EXPECT_TRUE(IsError(moert_session_create(model_.m, add_, integer.w, &s),
                      MOERT_STATUS_INVALID_ARGUMENT,
                      {"weight 'w'", "i32", "f32"}));
}

TEST_F(SessionTest, MultipleResults) {
  TensorPtr a(F32({2, 3}, {1, 2, 3, 4, 5, 6}));
  TensorPtr b;
  const int64_t s[] = {2};
  std::vector<int32_t> bv = {10, 20};
  ASSERT_TRUE(IsOk(moert_tensor_create_copy(MOERT_DTYPE_I32, 1, s, bv.data(), 8,
                                            b.out())));
  moert_named_tensor in[] = {{"a", a.get()}, {"b", b.get()}};
  moert_tensor_t *out[2];
  ASSERT_TRUE(IsOk(moert_call(model_.m, pair_, nullptr, in, 2, out, 2)));
  TensorPtr s_res(out[0]), c_res(out[1]);
  EXPECT_EQ(Values<float>(out[0]), (std::vector<float>{16, 35}));
  EXPECT_EQ(moert_tensor_dtype(out[1]), MOERT_DTYPE_I64);
  EXPECT_EQ(Values<int64_t>(out[1]), (std::vector<int64_t>{2, 30}));
}

TEST_F(SessionTest, SharedResultBufferIsNotFreedTwice) {
  TensorPtr x(F32({2, 2}, {1, 2, 3, 4}));
  moert_named_tensor in[] = {{"x", x.get()}};
  moert_tensor_t *out[2];
  ASSERT_TRUE(IsOk(moert_call(model_.m, dup_, nullptr, in, 1, out, 2)));
  TensorPtr p(out[0]), q(out[1]);
  EXPECT_NE(moert_tensor_data(out[0]), moert_tensor_data(out[1]));
  EXPECT_EQ(Values<float>(out[0]), (std::vector<float>{2, 4, 6, 8}));
  EXPECT_EQ(Values<float>(out[1]), (std::vector<float>{2, 4, 6, 8}));
}

TEST_F(SessionTest, ResultAliasingAnArgumentIsCopied) {
  TensorPtr x(F32({1, 2}, {7, 8}));
  moert_named_tensor in[] = {{"x", x.get()}};
  TensorPtr y;
  ASSERT_TRUE(IsOk(moert_call(model_.m, ident_, nullptr, in, 1, y.out(), 1)));
  EXPECT_NE(moert_tensor_data(y.get()), moert_tensor_data(x.get()));
  EXPECT_EQ(Values<float>(y.get()), (std::vector<float>{7, 8}));
  y.out(); // release the result; x must still be valid
  EXPECT_EQ(Values<float>(x.get()), (std::vector<float>{7, 8}));
}

TEST_F(SessionTest, ResultsOutliveModelAndSession) {
  moert_model_t *model;
  ASSERT_TRUE(IsOk(moert_model_load(MOERT_FAKE_MODEL_PATH, &model)));
  moert_session_t *session;
  ASSERT_TRUE(IsOk(moert_session_create(model, add_, nullptr, &session)));
  moert_model_release(model); // the session holds it
  TensorPtr x(F32({1, 4}, {1, 2, 3, 4}));
  TensorPtr w(F32({4}, {1, 1, 1, 1}));
  moert_named_tensor in[] = {{"x", x.get()}, {"w", w.get()}};
  TensorPtr y;
  ASSERT_TRUE(IsOk(moert_session_call(session, in, 2, y.out(), 1)));
  moert_session_release(session); // the result holds the model now
  EXPECT_EQ(Values<float>(y.get()), (std::vector<float>{2, 3, 4, 5}));
}

TEST_F(SessionTest, MalformedResultIsInternalError) {
  SetFakeVariant(kFakeWrongResultShape);
  TensorPtr x(F32({1, 4}, {1, 2, 3, 4}));
  TensorPtr w(F32({4}, {1, 1, 1, 1}));
  moert_named_tensor in[] = {{"x", x.get()}, {"w", w.get()}};
  TensorPtr y;
  EXPECT_TRUE(IsError(moert_call(model_.m, add_, nullptr, in, 2, y.out(), 1),
                      MOERT_STATUS_INTERNAL,
                      {"result 'y'", "shape [1, 5]", "expected [?, 4]"}));
  EXPECT_EQ(y.get(), nullptr);
}

TEST_F(SessionTest, InvokeRejectingItsArgumentsIsInternalError) {
  SetFakeVariant(kFakeInvokeFails);
  TensorPtr x(F32({1, 4}, {1, 2, 3, 4}));
  TensorPtr w(F32({4}, {1, 1, 1, 1}));
  moert_named_tensor in[] = {{"x", x.get()}, {"w", w.get()}};
  TensorPtr y;
  EXPECT_TRUE(IsError(moert_call(model_.m, add_, nullptr, in, 2, y.out(), 1),
                      MOERT_STATUS_INTERNAL, {"MOERT_ABI_BAD_SHAPE"}));
}

TEST_F(SessionTest, MisalignedResultIsCopied) {
  SetFakeVariant(kFakeMisalignedResult);
  TensorPtr x(F32({1, 4}, {1, 2, 3, 4}));
  TensorPtr w(F32({4}, {1, 1, 1, 1}));
  moert_named_tensor in[] = {{"x", x.get()}, {"w", w.get()}};
  TensorPtr y;
  ASSERT_TRUE(IsOk(moert_call(model_.m, add_, nullptr, in, 2, y.out(), 1)));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(moert_tensor_data(y.get())) % 4, 0u);
  EXPECT_EQ(Values<float>(y.get()), (std::vector<float>{2, 3, 4, 5}));
}

TEST_F(SessionTest, AccumulatesRoutingStatistics) {
  SessionPtr session;
  WeightsPtr weights;
  weights.w = WeightsW("F32", Bytes<float>({0, 0, 0, 0}), 4);
  ASSERT_TRUE(IsOk(moert_session_create(model_.m, add_, weights.w, &session.s)));
  EXPECT_EQ(moert_session_entry_index(session.s), add_);
  EXPECT_STREQ(moert_session_entry(session.s)->name, "add");
  EXPECT_EQ(moert_session_model(session.s), model_.m);
  EXPECT_EQ(moert_session_stats_layer_count(session.s), 0);
  for (int64_t T : {3, 5}) {
    TensorPtr x(F32({T, 4}, std::vector<float>(static_cast<size_t>(T * 4))));
    moert_named_tensor in[] = {{"x", x.get()}};
    TensorPtr y;
    ASSERT_TRUE(IsOk(moert_session_call(session.s, in, 1, y.out(), 1)));
  }
  EXPECT_EQ(moert_session_call_count(session.s), 2);
  ASSERT_EQ(moert_session_stats_layer_count(session.s), 2);
  moert_layer_stats l0, l1;
  ASSERT_TRUE(IsOk(moert_session_stats(session.s, 0, &l0)));
  ASSERT_TRUE(IsOk(moert_session_stats(session.s, 1, &l1)));
  ASSERT_EQ(l0.num_experts, 4);
  EXPECT_EQ(std::vector<int64_t>(l0.tokens_per_expert,
                                 l0.tokens_per_expert + 4),
            (std::vector<int64_t>{8, 16, 0, 8}));
  EXPECT_EQ(l0.num_reports, 2);
  EXPECT_EQ(l0.pairs, 34);
  EXPECT_EQ(l0.dropped, 2);
  EXPECT_EQ(l0.skipped, 4);
  ASSERT_EQ(l1.num_experts, 2);
  EXPECT_EQ(l1.tokens_per_expert[0], 8);
  EXPECT_EQ(l1.tokens_per_expert[1], 8);
  EXPECT_EQ(l1.pairs, 16);
  EXPECT_EQ(l1.dropped, 0);
  EXPECT_EQ(l1.skipped, 8);
  moert_layer_stats bad;
  EXPECT_TRUE(IsError(moert_session_stats(session.s, 2, &bad),
                      MOERT_STATUS_OUT_OF_RANGE, {"layer 2"}));

  char *json = nullptr;
  ASSERT_TRUE(IsOk(moert_session_stats_json(session.s, &json)));
  ASSERT_NE(json, nullptr);
  moert::json::Value v;
  std::string error;
  ASSERT_TRUE(moert::json::Parse(json, &v, &error)) << error << "\n" << json;
  moert_free(json);
  EXPECT_EQ(v.Find("model")->string, "fake");
  EXPECT_EQ(v.Find("entry")->string, "add");
  EXPECT_TRUE(v.Find("stats_supported")->boolean);
  EXPECT_EQ(v.Find("calls")->integer, 2);
  EXPECT_EQ(v.Find("num_layers")->integer, 2);
  const moert::json::Value *layers = v.Find("layers");
  ASSERT_EQ(layers->items.size(), 2u);
  const moert::json::Value &j0 = layers->items[0];
  EXPECT_EQ(j0.Find("layer")->integer, 0);
  EXPECT_EQ(j0.Find("num_experts")->integer, 4);
  EXPECT_EQ(j0.Find("reports")->integer, 2);
  EXPECT_EQ(j0.Find("pairs")->integer, 34);
  EXPECT_EQ(j0.Find("dropped")->integer, 2);
  EXPECT_EQ(j0.Find("skipped")->integer, 4);
  ASSERT_EQ(j0.Find("tokens_per_expert")->items.size(), 4u);
  EXPECT_EQ(j0.Find("tokens_per_expert")->items[1].integer, 16);
  const moert::json::Value *totals = v.Find("totals");
  EXPECT_EQ(totals->Find("tokens")->integer, 48);
  EXPECT_EQ(totals->Find("pairs")->integer, 50);
  EXPECT_EQ(totals->Find("dropped")->integer, 2);
  EXPECT_EQ(totals->Find("skipped")->integer, 12);

  moert_session_stats_reset(session.s);
  EXPECT_EQ(moert_session_stats_layer_count(session.s), 0);
  EXPECT_EQ(moert_session_call_count(session.s), 0);
}

TEST_F(SessionTest, BadStatisticsFailTheCallAndKeepEarlierStats) {
  SessionPtr session;
  ASSERT_TRUE(IsOk(moert_session_create(model_.m, add_, nullptr, &session.s)));
  TensorPtr x(F32({1, 4}, {1, 2, 3, 4}));
  TensorPtr w(F32({4}, {1, 1, 1, 1}));
  moert_named_tensor in[] = {{"x", x.get()}, {"w", w.get()}};
  TensorPtr y;
  ASSERT_TRUE(IsOk(moert_session_call(session.s, in, 2, y.out(), 1)));
  SetFakeVariant(kFakeNegativeStat);
  EXPECT_TRUE(IsError(moert_session_call(session.s, in, 2, y.out(), 1),
                      MOERT_STATUS_INTERNAL,
                      {"negative token count", "expert 2", "layer 0"}));
  EXPECT_EQ(y.get(), nullptr);
  EXPECT_EQ(moert_session_call_count(session.s), 1);
  moert_layer_stats l0;
  ASSERT_TRUE(IsOk(moert_session_stats(session.s, 0, &l0)));
  EXPECT_EQ(l0.num_reports, 1);
  EXPECT_EQ(l0.pairs, 5);

  // The session keeps its call records for reuse: the failed call's error
  // must not carry over into the next call.
  SetFakeVariant(kFakeOk);
  ASSERT_TRUE(IsOk(moert_session_call(session.s, in, 2, y.out(), 1)));
  ASSERT_TRUE(IsOk(moert_session_stats(session.s, 0, &l0)));
  EXPECT_EQ(l0.num_reports, 2);
  EXPECT_EQ(l0.pairs, 10);
}

TEST_F(SessionTest, GateMassOfOneCallIsNotCountedAgainInTheNext) {
  SessionPtr session;
  ASSERT_TRUE(IsOk(moert_session_create(model_.m, add_, nullptr, &session.s)));
  TensorPtr x(F32({2, 4}, std::vector<float>(8)));
  TensorPtr w(F32({4}, {1, 1, 1, 1}));
  moert_named_tensor in[] = {{"x", x.get()}, {"w", w.get()}};
  TensorPtr y;
  SetFakeVariant(kFakeGateMass);
  ASSERT_TRUE(IsOk(moert_session_call(session.s, in, 2, y.out(), 1)));
  SetFakeVariant(kFakeOk); // no gate mass: the first call's stays as it was
  ASSERT_TRUE(IsOk(moert_session_call(session.s, in, 2, y.out(), 1)));
  moert_layer_stats l0, l1;
  ASSERT_TRUE(IsOk(moert_session_stats(session.s, 0, &l0)));
  ASSERT_TRUE(IsOk(moert_session_stats(session.s, 1, &l1)));
  ASSERT_NE(l0.gate_mass, nullptr);
  EXPECT_EQ(std::vector<double>(l0.gate_mass, l0.gate_mass + 4),
            (std::vector<double>{1, 2, 0, 1}));
  EXPECT_EQ(l1.gate_mass, nullptr);
  EXPECT_EQ(
      std::vector<int64_t>(l0.tokens_per_expert, l0.tokens_per_expert + 4),
      (std::vector<int64_t>{4, 8, 0, 4}));
  SetFakeVariant(kFakeGateMass);
  ASSERT_TRUE(IsOk(moert_session_call(session.s, in, 2, y.out(), 1)));
  ASSERT_TRUE(IsOk(moert_session_stats(session.s, 0, &l0)));
  EXPECT_EQ(std::vector<double>(l0.gate_mass, l0.gate_mass + 4),
            (std::vector<double>{2, 4, 0, 2}));
}

TEST_F(SessionTest, FailedCallsLeaveNoStatistics) {
  SessionPtr session;
  ASSERT_TRUE(IsOk(moert_session_create(model_.m, add_, nullptr, &session.s)));
  TensorPtr x(F32({1, 4}, {1, 2, 3, 4}));
  moert_named_tensor in[] = {{"x", x.get()}};
  TensorPtr y;
  EXPECT_TRUE(IsError(moert_session_call(session.s, in, 1, y.out(), 1),
                      MOERT_STATUS_NOT_FOUND));
  EXPECT_EQ(moert_session_stats_layer_count(session.s), 0);
  EXPECT_EQ(moert_session_call_count(session.s), 0);
}

TEST_F(SessionTest, StatisticsCanBeTurnedOff) {
  SessionPtr session;
  ASSERT_TRUE(IsOk(moert_session_create(model_.m, add_, nullptr, &session.s)));
  EXPECT_EQ(moert_session_stats_enabled(session.s), 1);
  TensorPtr x(F32({1, 4}, {1, 2, 3, 4}));
  TensorPtr w(F32({4}, {1, 1, 1, 1}));
  moert_named_tensor in[] = {{"x", x.get()}, {"w", w.get()}};
  TensorPtr y;
  ASSERT_TRUE(IsOk(moert_session_call(session.s, in, 2, y.out(), 1)));
  moert_session_set_stats_enabled(session.s, 0);
  EXPECT_EQ(moert_session_stats_enabled(session.s), 0);
  // Off: the call runs, counts, and leaves the statistics as they were;
  // even a model reporting bad statistics is not checked.
  SetFakeVariant(kFakeNegativeStat);
  TensorPtr y2;
  ASSERT_TRUE(IsOk(moert_session_call(session.s, in, 2, y2.out(), 1)));
  SetFakeVariant(0);
  EXPECT_EQ(moert_session_call_count(session.s), 2);
  moert_layer_stats l0;
  ASSERT_TRUE(IsOk(moert_session_stats(session.s, 0, &l0)));
  EXPECT_EQ(l0.num_reports, 1);
  moert_session_set_stats_enabled(session.s, 1);
  TensorPtr y3;
  ASSERT_TRUE(IsOk(moert_session_call(session.s, in, 2, y3.out(), 1)));
  ASSERT_TRUE(IsOk(moert_session_stats(session.s, 0, &l0)));
  EXPECT_EQ(l0.num_reports, 2);
  moert_session_set_stats_enabled(nullptr, 1); // a no-op
  EXPECT_EQ(moert_session_stats_enabled(nullptr), 0);
}

TEST_F(SessionTest, ModelWithoutStatsReportsNone) {
  ModelPtr nostats;
  ASSERT_TRUE(IsOk(moert_model_load(MOERT_FAKE_MODEL_NOSTATS_PATH, &nostats.m)));
  SessionPtr session;
  ASSERT_TRUE(IsOk(moert_session_create(nostats.m, 0, nullptr, &session.s)));
  TensorPtr x(F32({1, 4}, {1, 2, 3, 4}));
  TensorPtr w(F32({4}, {1, 1, 1, 1}));
  moert_named_tensor in[] = {{"x", x.get()}, {"w", w.get()}};
  TensorPtr y;
  ASSERT_TRUE(IsOk(moert_session_call(session.s, in, 2, y.out(), 1)));
  EXPECT_EQ(moert_session_stats_layer_count(session.s), 0);
  char *json;
  ASSERT_TRUE(IsOk(moert_session_stats_json(session.s, &json)));
  std::string text = json;
  moert_free(json);
  EXPECT_NE(text.find("\"stats_supported\": false"), std::string::npos) << text;
  EXPECT_NE(text.find("\"calls\": 1"), std::string::npos) << text;
  moert::json::Value v;
  std::string error;
  EXPECT_TRUE(moert::json::Parse(text, &v, &error)) << error;
}

TEST_F(SessionTest, SessionsOnDifferentThreadsKeepTheirOwnStatistics) {
  constexpr int kThreads = 4, kCalls = 50;
  std::vector<moert_session_t *> sessions(kThreads);
  for (auto &s : sessions)
    ASSERT_TRUE(IsOk(moert_session_create(model_.m, add_, nullptr, &s)));
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      int64_t T = t + 1;
      TensorPtr x(F32({T, 4}, std::vector<float>(static_cast<size_t>(T * 4), 1)));
      TensorPtr w(F32({4}, {1, 2, 3, 4}));
      moert_named_tensor in[] = {{"x", x.get()}, {"w", w.get()}};
      for (int c = 0; c < kCalls; ++c) {
        moert_tensor_t *y = nullptr;
        moert_status_t s = moert_session_call(sessions[t], in, 2, &y, 1);
        if (s || Values<float>(y)[3] != 5.0f)
          ++failures[t];
        moert_status_free(s);
        moert_tensor_release(y);
      }
    });
  for (auto &th : threads)
    th.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(failures[t], 0);
    moert_layer_stats l0;
    ASSERT_TRUE(IsOk(moert_session_stats(sessions[t], 0, &l0)));
    EXPECT_EQ(l0.num_reports, kCalls);
    EXPECT_EQ(l0.tokens_per_expert[0], kCalls * (t + 1));
    moert_session_release(sessions[t]);
  }
}
