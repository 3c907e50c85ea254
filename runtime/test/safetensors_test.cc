//===- safetensors_test.cc - moert_weights_load_safetensors ---------------===//

#include "test_util.h"

using namespace moert_test;

namespace {

struct WeightsPtr {
  moert_weights_t *w = nullptr;
  ~WeightsPtr() { moert_weights_release(w); }
};

// Loads `image` from a file and, separately, from memory; both must agree.
::testing::AssertionResult LoadBoth(const TempDir &dir, const std::string &image,
                                    moert_status_code_t code,
                                    std::initializer_list<std::string> parts) {
  std::string path = dir.File("w.safetensors");
  WriteFile(path, image);
  moert_weights_t *w = reinterpret_cast<moert_weights_t *>(0x1);
  // Mapped (the plain loader) and read into huge-page memory: same checks.
  for (bool huge : {false, true}) {
    moert_status_t s =
        huge ? moert_weights_load_safetensors_ex(path.c_str(), MOERT_WEIGHTS_HUGE_PAGES, &w)
             : moert_weights_load_safetensors(path.c_str(), &w);
    std::string file_msg = moert_status_message(s);
    auto r = IsError(s, code, parts);
    if (!r)
      return r;
    if (w != nullptr)
      return ::testing::AssertionFailure()
             << "out param not cleared" << (huge ? " (huge pages)" : "");
    if (file_msg.find(path) == std::string::npos)
      return ::testing::AssertionFailure() << "no path in: " << file_msg;
  }
  return IsError(moert_weights_parse_safetensors(image.data(), image.size(), &w),
                 code, parts);
}

// f32 [2,2] = {1, 2, 3, 4}; f16 [3] = {1, -2, 0.5}; bf16 [2] = {1.5, -3};
// i32 [2] = {7, -8}; i64 [1] = {1 << 40}.
std::string ValidImage() {
  std::string data;
  data += Bytes<float>({1, 2, 3, 4});                   // [0, 16)
  data += Bytes<uint16_t>({0x3c00, 0xc000, 0x3800});    // [16, 22)
  data += Bytes<uint16_t>({0x3fc0, 0xc040});            // [22, 26)
  data += std::string(2, '\0');                         // pad to 28
  data += Bytes<int32_t>({7, -8});                      // [28, 36)
  data += std::string(4, '\0');                         // pad to 40
  data += Bytes<int64_t>({int64_t(1) << 40});           // [40, 48)
  std::string header =
      R"({"__metadata__": {"format": "pt"},)"
      R"( "w.f32": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},)"
      R"( "w.f16": {"dtype": "F16", "shape": [3], "data_offsets": [16, 22]},)"
      R"( "w.bf16": {"dtype": "BF16", "shape": [2], "data_offsets": [22, 26]},)"
      R"( "w.i32": {"dtype": "I32", "shape": [2], "data_offsets": [28, 36]},)"
      R"( "w.i64": {"dtype": "I64", "shape": [1], "data_offsets": [40, 48]},)"
      R"( "empty": {"dtype": "F32", "shape": [0, 3], "data_offsets": [48, 48]},)"
      R"( "scalar": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}})";
  // Pad the header with spaces so that the data section is 8-byte aligned,
  // as the reference writer does.
  while ((8 + header.size()) % 8)
    header += ' ';
  return Safetensors(header, data);
}

std::string OneTensor(const std::string &entry, const std::string &data) {
  return Safetensors("{\"t\": " + entry + "}", data);
}

} // namespace

TEST(Safetensors, LoadsValidFile) {
  TempDir dir;
  std::string path = dir.File("ok.safetensors");
  WriteFile(path, ValidImage());
  WeightsPtr w;
  ASSERT_TRUE(IsOk(moert_weights_load_safetensors(path.c_str(), &w.w)));
  ASSERT_EQ(moert_weights_count(w.w), 7);
  EXPECT_STREQ(moert_weights_name(w.w, 0), "w.f32"); // file order
  EXPECT_STREQ(moert_weights_name(w.w, 6), "scalar");
  EXPECT_EQ(moert_weights_name(w.w, 7), nullptr);
  EXPECT_EQ(moert_weights_tensor(w.w, -1), nullptr);

  const moert_tensor_t *f32 = moert_weights_find(w.w, "w.f32");
  ASSERT_NE(f32, nullptr);
  EXPECT_EQ(f32, moert_weights_tensor(w.w, 0));
  EXPECT_EQ(moert_tensor_dtype(f32), MOERT_DTYPE_F32);
  EXPECT_EQ(Shape(f32), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(Values<float>(f32), (std::vector<float>{1, 2, 3, 4}));

  const moert_tensor_t *f16 = moert_weights_find(w.w, "w.f16");
  ASSERT_NE(f16, nullptr);
  EXPECT_EQ(moert_tensor_dtype(f16), MOERT_DTYPE_F16);
  EXPECT_EQ(Values<uint16_t>(f16),
            (std::vector<uint16_t>{0x3c00, 0xc000, 0x3800}));

  const moert_tensor_t *bf16 = moert_weights_find(w.w, "w.bf16");
  ASSERT_NE(bf16, nullptr);
  EXPECT_EQ(moert_tensor_dtype(bf16), MOERT_DTYPE_BF16);
  TensorPtr as_f32;
  ASSERT_TRUE(IsOk(moert_tensor_convert(bf16, MOERT_DTYPE_F32, as_f32.out())));
  EXPECT_EQ(Values<float>(as_f32.get()), (std::vector<float>{1.5f, -3.0f}));

  EXPECT_EQ(Values<int32_t>(moert_weights_find(w.w, "w.i32")),
            (std::vector<int32_t>{7, -8}));
  EXPECT_EQ(Values<int64_t>(moert_weights_find(w.w, "w.i64")),
            (std::vector<int64_t>{int64_t(1) << 40}));
  const moert_tensor_t *empty = moert_weights_find(w.w, "empty");
  ASSERT_NE(empty, nullptr);
  EXPECT_EQ(moert_tensor_element_count(empty), 0);
  const moert_tensor_t *scalar = moert_weights_find(w.w, "scalar");
  ASSERT_NE(scalar, nullptr);
  EXPECT_EQ(moert_tensor_rank(scalar), 0);
  EXPECT_EQ(Values<float>(scalar), (std::vector<float>{1}));

  EXPECT_EQ(moert_weights_find(w.w, "__metadata__"), nullptr);
  EXPECT_EQ(moert_weights_find(w.w, "missing"), nullptr);
  EXPECT_EQ(moert_weights_find(w.w, "w"), nullptr);
  // Borrowed tensors ignore release.
  moert_tensor_release(const_cast<moert_tensor_t *>(f32));
  EXPECT_EQ(Values<float>(f32)[3], 4.0f);
}

TEST(Safetensors, ParsesFromMemoryAndRefCounts) {
  std::string image = ValidImage();
  WeightsPtr w;
  ASSERT_TRUE(IsOk(
      moert_weights_parse_safetensors(image.data(), image.size(), &w.w)));
  image.assign(image.size(), 'x'); // the weights hold their own copy
  moert_weights_retain(w.w);
  moert_weights_release(w.w);
  EXPECT_EQ(Values<float>(moert_weights_find(w.w, "w.f32"))[1], 2.0f);
}

TEST(Safetensors, EmptySet) {
  WeightsPtr w;
  ASSERT_TRUE(IsOk(moert_weights_create_empty(&w.w)));
  EXPECT_EQ(moert_weights_count(w.w), 0);
  EXPECT_EQ(moert_weights_find(w.w, "x"), nullptr);
  std::string image = Safetensors("{}", "");
  WeightsPtr w2;
  ASSERT_TRUE(IsOk(
      moert_weights_parse_safetensors(image.data(), image.size(), &w2.w)));
  EXPECT_EQ(moert_weights_count(w2.w), 0);
}

TEST(Safetensors, EscapedNames) {
  std::string image = Safetensors(
      R"({"a\"b\u00e9": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}})",
      Bytes<int32_t>({5}));
  WeightsPtr w;
  ASSERT_TRUE(IsOk(
      moert_weights_parse_safetensors(image.data(), image.size(), &w.w)));
  EXPECT_NE(moert_weights_find(w.w, "a\"b\xc3\xa9"), nullptr);
}

// Placements: the file mapped or read into (huge-page advised) memory give
// the same tensors; a large tensor takes the 2 MiB-aligned allocation.
TEST(Safetensors, PlacementsLoadTheSameTensors) {
  TempDir dir;
  std::string path = dir.File("big.safetensors");
  const int64_t n = int64_t(3) << 20; // 12 MiB of f32
  std::vector<float> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    values[static_cast<size_t>(i)] = static_cast<float>(i % 1000003) * 0.5f;
  std::string data(reinterpret_cast<const char *>(values.data()),
                   values.size() * sizeof(float));
  WriteFile(path, OneTensor(R"({"dtype": "F32", "shape": [3, 1048576], "data_offsets": [0, )" +
                                std::to_string(data.size()) + "]}",
                            data));
  WeightsPtr mapped, copied;
  ASSERT_TRUE(IsOk(moert_weights_load_safetensors_ex(path.c_str(), MOERT_WEIGHTS_MAP,
                                                     &mapped.w)));
  ASSERT_TRUE(IsOk(moert_weights_load_safetensors_ex(
      path.c_str(), MOERT_WEIGHTS_HUGE_PAGES, &copied.w)));
  const moert_tensor_t *a = moert_weights_find(mapped.w, "t");
  const moert_tensor_t *b = moert_weights_find(copied.w, "t");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(moert_tensor_const_data(a), moert_tensor_const_data(b));
  // The header of OneTensor is padded to 8 bytes only; the copy puts the
  // tensor on a 64-byte boundary.
  EXPECT_NE(reinterpret_cast<uintptr_t>(moert_tensor_const_data(a)) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(moert_tensor_const_data(b)) % 64, 0u);
  EXPECT_EQ(Shape(b), (std::vector<int64_t>{3, 1048576}));
  EXPECT_EQ(Values<float>(b), values);
  EXPECT_EQ(Values<float>(a), values);
}

// Copies (parsed from memory, or loaded into huge-page memory) put every
// tensor on a 64-byte boundary, whatever its offset in the file (here 0,
// 16, 22, 28, 40, and a tensor overlapping another), with the same bytes.
TEST(Safetensors, CopiesAlignEveryTensor) {
  std::string image = ValidImage();
  TempDir dir;
  std::string path = dir.File("valid.safetensors");
  WriteFile(path, image);
  WeightsPtr mapped, parsed, copied;
  ASSERT_TRUE(IsOk(moert_weights_load_safetensors_ex(path.c_str(), MOERT_WEIGHTS_MAP,
                                                     &mapped.w)));
  ASSERT_TRUE(IsOk(moert_weights_parse_safetensors(image.data(), image.size(), &parsed.w)));
  ASSERT_TRUE(IsOk(moert_weights_load_safetensors_ex(
      path.c_str(), MOERT_WEIGHTS_HUGE_PAGES, &copied.w)));
  ASSERT_EQ(moert_weights_count(mapped.w), 7);
  for (int64_t i = 0; i < moert_weights_count(mapped.w); ++i) {
    const moert_tensor_t *m = moert_weights_tensor(mapped.w, i);
    const char *name = moert_weights_name(mapped.w, i);
    for (const moert_weights_t *w : {parsed.w, copied.w}) {
      const moert_tensor_t *c = moert_weights_find(w, name);
      ASSERT_NE(c, nullptr) << name;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(moert_tensor_const_data(c)) % 64, 0u) << name;
      ASSERT_EQ(moert_tensor_byte_size(c), moert_tensor_byte_size(m)) << name;
      EXPECT_EQ(0, std::memcmp(moert_tensor_const_data(c), moert_tensor_const_data(m),
                               moert_tensor_byte_size(m)))
          << name;
    }
  }
}

TEST(Safetensors, PlacementArguments) {
  TempDir dir;
  std::string path = dir.File("ok.safetensors");
  WriteFile(path, ValidImage());
  moert_weights_t *w = reinterpret_cast<moert_weights_t *>(0x1);
  EXPECT_TRUE(IsError(moert_weights_load_safetensors_ex(
                          path.c_str(), static_cast<moert_weights_placement>(7), &w),
                      MOERT_STATUS_INVALID_ARGUMENT, {"unknown weights placement 7"}));
  EXPECT_EQ(w, nullptr);
  EXPECT_TRUE(IsError(moert_weights_load_safetensors_ex(nullptr, MOERT_WEIGHTS_HUGE_PAGES, &w),
                      MOERT_STATUS_INVALID_ARGUMENT, {"path is NULL"}));
  EXPECT_TRUE(IsError(moert_weights_load_safetensors_ex(path.c_str(), MOERT_WEIGHTS_HUGE_PAGES,
                                                        nullptr),
                      MOERT_STATUS_INVALID_ARGUMENT, {"out_weights is NULL"}));
  std::string missing = dir.File("nope.safetensors");
  EXPECT_TRUE(IsError(moert_weights_load_safetensors_ex(missing.c_str(),
                                                        MOERT_WEIGHTS_HUGE_PAGES, &w),
                      MOERT_STATUS_NOT_FOUND, {missing}));
}

TEST(Safetensors, MissingFile) {
  TempDir dir;
  std::string path = dir.File("nope.safetensors");
  moert_weights_t *w;
  EXPECT_TRUE(IsError(moert_weights_load_safetensors(path.c_str(), &w),
                      MOERT_STATUS_NOT_FOUND, {path, "No such file"}));
  EXPECT_TRUE(IsError(moert_weights_load_safetensors(dir.path().c_str(), &w),
                      MOERT_STATUS_INVALID_ARGUMENT, {"not a regular file"}));
}

TEST(Safetensors, TooShort) {
  TempDir dir;
  EXPECT_TRUE(LoadBoth(dir, "", MOERT_STATUS_DATA_LOSS, {"too short"}));
  EXPECT_TRUE(LoadBoth(dir, "1234567", MOERT_STATUS_DATA_LOSS, {"too short"}));
}

TEST(Safetensors, TruncatedFile) {
  TempDir dir;
  std::string image = ValidImage();
  // Cut into the data section: the last tensor's offsets now exceed it.
  EXPECT_TRUE(LoadBoth(dir, image.substr(0, image.size() - 3),
                       MOERT_STATUS_DATA_LOSS,
                       {"w.i64", "exceed", "data section"}));
  // Cut into the header: the header length now exceeds the file.
  EXPECT_TRUE(LoadBoth(dir, image.substr(0, 20), MOERT_STATUS_DATA_LOSS,
                       {"header length"}));
}

TEST(Safetensors, HeaderLengthBeyondFile) {
  TempDir dir;
  std::string image = ValidImage();
  for (int i = 0; i < 8; ++i)
    image[i] = static_cast<char>(0xff); // 2^64 - 1
  EXPECT_TRUE(LoadBoth(dir, image, MOERT_STATUS_DATA_LOSS,
                       {"header length 18446744073709551615", "exceeds"}));
  std::string header = "{}";
  std::string big = Safetensors(header, "");
  big[0] = 3; // 3 > 2 remaining bytes
  EXPECT_TRUE(LoadBoth(dir, big, MOERT_STATUS_DATA_LOSS, {"header length 3"}));
}

TEST(Safetensors, HeaderLengthLimit) {
  TempDir dir;
  std::string header = "{}" + std::string(100000001 - 2, ' ');
  EXPECT_TRUE(LoadBoth(dir, Safetensors(header, ""), MOERT_STATUS_DATA_LOSS,
                       {"limit"}));
}

TEST(Safetensors, BadJson) {
  TempDir dir;
  EXPECT_TRUE(LoadBoth(dir, Safetensors(R"({"t": {"dtype": "F32",)", ""),
                       MOERT_STATUS_DATA_LOSS, {"malformed JSON"}));
  EXPECT_TRUE(LoadBoth(dir, Safetensors(R"({"t": {"dtype": F32}})", ""),
                       MOERT_STATUS_DATA_LOSS, {"malformed JSON", "at byte"}));
  EXPECT_TRUE(LoadBoth(dir, Safetensors("[1, 2]", ""), MOERT_STATUS_DATA_LOSS,
                       {"JSON object"}));
  EXPECT_TRUE(LoadBoth(dir, Safetensors("", ""), MOERT_STATUS_DATA_LOSS,
                       {"JSON object"}));
  EXPECT_TRUE(LoadBoth(dir, Safetensors(R"({"t": 1})", ""),
                       MOERT_STATUS_DATA_LOSS, {"tensor 't'", "object"}));
}

TEST(Safetensors, OffsetsOutOfRange) {
  TempDir dir;
  EXPECT_TRUE(LoadBoth(
      dir,
      OneTensor(R"({"dtype": "F32", "shape": [2], "data_offsets": [4, 12]})",
                std::string(8, '\0')),
      MOERT_STATUS_DATA_LOSS, {"tensor 't'", "[4, 12]", "8-byte data section"}));
  EXPECT_TRUE(LoadBoth(
      dir,
      OneTensor(R"({"dtype": "F32", "shape": [1], "data_offsets": [8, 4]})",
                std::string(8, '\0')),
      MOERT_STATUS_DATA_LOSS, {"begin > end"}));
  EXPECT_TRUE(LoadBoth(
      dir,
      OneTensor(R"({"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]})",
                std::string(8, '\0')),
      MOERT_STATUS_DATA_LOSS, {"data_offsets"}));
  EXPECT_TRUE(LoadBoth(
      dir,
      OneTensor(R"({"dtype": "F32", "shape": [1], "data_offsets": [0]})",
                std::string(8, '\0')),
      MOERT_STATUS_DATA_LOSS, {"two non-negative integers"}));
  EXPECT_TRUE(LoadBoth(
      dir,
      OneTensor(R"({"dtype": "F32", "shape": [1], "data_offsets": [0, 1e1]})",
                std::string(8, '\0')),
      MOERT_STATUS_DATA_LOSS, {"two non-negative integers"}));
  EXPECT_TRUE(LoadBoth(
      dir,
      OneTensor(R"({"dtype": "F32", "shape": [1], "data_offsets": [0, 99999999999999999999]})",
                std::string(8, '\0')),
      MOERT_STATUS_DATA_LOSS, {"two non-negative integers"}));
}

TEST(Safetensors, SizeMismatch) {
  TempDir dir;
  EXPECT_TRUE(LoadBoth(
      dir,
      OneTensor(R"({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]})",
                std::string(16, '\0')),
      MOERT_STATUS_DATA_LOSS, {"tensor 't'", "span 8 bytes", "needs 12"}));
  EXPECT_TRUE(LoadBoth(
      dir,
      OneTensor(R"({"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 16]})",
                std::string(16, '\0')),
      MOERT_STATUS_DATA_LOSS, {"span 16 bytes", "needs 8"}));
}

TEST(Safetensors, ShapeOverflow) {
  TempDir dir;
  EXPECT_TRUE(LoadBoth(
      dir,
      OneTensor(R"({"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]})",
                ""),
      MOERT_STATUS_DATA_LOSS, {"overflows"}));
  // numel fits int64 but bytes do not.
  EXPECT_TRUE(LoadBoth(
      dir,
      OneTensor(R"({"dtype": "I64", "shape": [2305843009213693952], "data_offsets": [0, 0]})",
                ""),
      MOERT_STATUS_DATA_LOSS, {"overflows"}));
}

TEST(Safetensors, BadShape) {
  TempDir dir;
  EXPECT_TRUE(LoadBoth(
      dir,
      OneTensor(R"({"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]})",
                ""),
      MOERT_STATUS_DATA_LOSS, {"non-negative integer"}));
  EXPECT_TRUE(LoadBoth(
      dir,
      OneTensor(R"({"dtype": "F32", "shape": [1.5], "data_offsets": [0, 0]})",
                ""),
      MOERT_STATUS_DATA_LOSS, {"non-negative integer"}));
  EXPECT_TRUE(LoadBoth(
      dir, OneTensor(R"({"dtype": "F32", "shape": 4, "data_offsets": [0, 0]})",
                     ""),
      MOERT_STATUS_DATA_LOSS, {"\"shape\""}));
  EXPECT_TRUE(LoadBoth(
      dir,
      OneTensor(R"({"dtype": "F32", "shape": [1,1,1,1,1,1,1,1,1], "data_offsets": [0, 4]})",
                std::string(4, '\0')),
      MOERT_STATUS_UNIMPLEMENTED, {"rank 9"}));
  EXPECT_TRUE(LoadBoth(dir, OneTensor(R"({"dtype": "F32", "shape": [1]})", ""),
                       MOERT_STATUS_DATA_LOSS, {"data_offsets"}));
  EXPECT_TRUE(LoadBoth(
      dir, OneTensor(R"({"shape": [1], "data_offsets": [0, 4]})", "abcd"),
      MOERT_STATUS_DATA_LOSS, {"dtype"}));
}

TEST(Safetensors, UnknownDtype) {
  TempDir dir;
  EXPECT_TRUE(LoadBoth(
      dir,
      Safetensors(
          R"({"ok": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
          R"( "embed.weight": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})",
          std::string(8, '\0')),
      MOERT_STATUS_UNIMPLEMENTED,
      {"tensor 'embed.weight'", "unsupported dtype 'F64'", "F32, F16, BF16"}));
  EXPECT_TRUE(LoadBoth(
      dir,
      OneTensor(R"({"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]})",
                "x"),
      MOERT_STATUS_UNIMPLEMENTED, {"'F8_E4M3'"}));
  EXPECT_TRUE(LoadBoth(
      dir, OneTensor(R"({"dtype": 3, "shape": [1], "data_offsets": [0, 1]})",
                     "x"),
      MOERT_STATUS_DATA_LOSS, {"dtype"}));
}

TEST(Safetensors, DuplicateNames) {
  TempDir dir;
  EXPECT_TRUE(LoadBoth(
      dir,
      Safetensors(
          R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
          R"( "v": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
          R"( "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
          std::string(4, '\0')),
      MOERT_STATUS_DATA_LOSS, {"duplicate tensor name 'w'"}));
  EXPECT_TRUE(LoadBoth(
      dir,
      OneTensor(R"({"dtype": "F32", "dtype": "F16", "shape": [1], "data_offsets": [0, 4]})",
                std::string(4, '\0')),
      MOERT_STATUS_DATA_LOSS, {"duplicate key 'dtype'"}));
  EXPECT_TRUE(LoadBoth(dir,
                       Safetensors(R"({"__metadata__": {}, "__metadata__": {}})",
                                   ""),
                       MOERT_STATUS_DATA_LOSS, {"__metadata__"}));
}

TEST(Safetensors, NulInName) {
  TempDir dir;
  EXPECT_TRUE(LoadBoth(
      dir,
      Safetensors(
          R"({"a\u0000b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
          std::string(4, '\0')),
      MOERT_STATUS_DATA_LOSS, {"NUL"}));
}
