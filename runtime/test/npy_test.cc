//===- npy_test.cc - .npy read / write -------------------------------------===//

#include "test_util.h"

using namespace moert_test;

namespace {

// A .npy image with the given version, header dict text and data.
std::string Npy(const std::string &dict, const std::string &data,
                int major = 1) {
  std::string header = dict;
  size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64)
    header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  uint32_t n = static_cast<uint32_t>(header.size());
  out += static_cast<char>(n & 0xff);
  out += static_cast<char>((n >> 8) & 0xff);
  if (major != 1) {
    out += static_cast<char>((n >> 16) & 0xff);
    out += static_cast<char>((n >> 24) & 0xff);
  }
  return out + header + data;
}

::testing::AssertionResult ParseFails(const std::string &image,
                                      moert_status_code_t code,
                                      std::initializer_list<std::string> parts) {
  moert_tensor_t *t = reinterpret_cast<moert_tensor_t *>(0x1);
  auto r = IsError(moert_npy_parse(image.data(), image.size(), &t), code, parts);
  if (r && t != nullptr)
    return ::testing::AssertionFailure() << "out param not cleared";
  return r;
}

} // namespace

TEST(Npy, RoundTripAllDtypes) {
  TempDir dir;
  struct Case {
    int32_t dtype;
    std::vector<int64_t> shape;
  } cases[] = {{MOERT_DTYPE_F32, {2, 3}},
               {MOERT_DTYPE_F16, {5}},
               {MOERT_DTYPE_I32, {1, 2, 2}},
               {MOERT_DTYPE_I64, {}},
               {MOERT_DTYPE_F32, {0, 4}},
               {MOERT_DTYPE_I32, {1, 1, 1, 1, 1, 1, 1, 2}}};
  int i = 0;
  for (const Case &c : cases) {
    TensorPtr t;
    ASSERT_TRUE(IsOk(moert_tensor_create(c.dtype,
                                         static_cast<int32_t>(c.shape.size()),
                                         c.shape.data(), t.out())));
    auto *bytes = static_cast<uint8_t *>(moert_tensor_data(t.get()));
    for (size_t b = 0; b < moert_tensor_byte_size(t.get()); ++b)
      bytes[b] = static_cast<uint8_t>(b * 7 + 1);
    std::string path = dir.File("t" + std::to_string(i++) + ".npy");
    ASSERT_TRUE(IsOk(moert_npy_write(path.c_str(), t.get())));
    std::string image = ReadFile(path);
    ASSERT_GE(image.size(), 10u);
    EXPECT_EQ(image.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
    size_t hlen = static_cast<uint8_t>(image[8]) |
                  (static_cast<uint8_t>(image[9]) << 8);
    EXPECT_EQ((10 + hlen) % 64, 0u);
    EXPECT_EQ(image[10 + hlen - 1], '\n');
    EXPECT_EQ(image.size(), 10 + hlen + moert_tensor_byte_size(t.get()));

    TensorPtr back;
    ASSERT_TRUE(IsOk(moert_npy_read(path.c_str(), back.out())));
    EXPECT_EQ(moert_tensor_dtype(back.get()), c.dtype);
    EXPECT_EQ(Shape(back.get()), c.shape);
    ASSERT_EQ(moert_tensor_byte_size(back.get()),
              moert_tensor_byte_size(t.get()));
    EXPECT_EQ(std::memcmp(moert_tensor_const_data(back.get()),
                          moert_tensor_const_data(t.get()),
                          moert_tensor_byte_size(t.get())),
              0);
  }
}

TEST(Npy, WrittenHeaderLooksLikeNumpy) {
  TempDir dir;
  TensorPtr t(F32({3}, {1, 2, 3}));
  std::string path = dir.File("a.npy");
  ASSERT_TRUE(IsOk(moert_npy_write(path.c_str(), t.get())));
  std::string image = ReadFile(path);
  EXPECT_NE(image.find("{'descr': '<f4', 'fortran_order': False, "
                       "'shape': (3,), }"),
            std::string::npos);
  TensorPtr m;
  const int64_t s[] = {2, 3};
  ASSERT_TRUE(IsOk(moert_tensor_create(MOERT_DTYPE_I64, 2, s, m.out())));
  ASSERT_TRUE(IsOk(moert_npy_write(path.c_str(), m.get())));
  EXPECT_NE(ReadFile(path).find("'descr': '<i8', 'fortran_order': False, "
                                "'shape': (2, 3), }"),
            std::string::npos);
  ASSERT_TRUE(IsOk(moert_tensor_create(MOERT_DTYPE_F16, 0, nullptr, m.out())));
  ASSERT_TRUE(IsOk(moert_npy_write(path.c_str(), m.get())));
  EXPECT_NE(ReadFile(path).find("'shape': (), }"), std::string::npos);
}

TEST(Npy, ReadsNumpyStyleHeaders) {
  std::string data = Bytes<float>({1, 2, 3, 4, 5, 6});
  TensorPtr t;
  std::string v1 =
      Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data);
  ASSERT_TRUE(IsOk(moert_npy_parse(v1.data(), v1.size(), t.out())));
  EXPECT_EQ(Shape(t.get()), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(Values<float>(t.get())[5], 6.0f);
  // Version 2.0, other key order, double quotes, no trailing comma.
  std::string v2 = Npy(
      "{\"shape\": (6,), \"fortran_order\": False, \"descr\": '<f4'}", data, 2);
  ASSERT_TRUE(IsOk(moert_npy_parse(v2.data(), v2.size(), t.out())));
  EXPECT_EQ(Shape(t.get()), (std::vector<int64_t>{6}));
  // Python 2 long suffix.
  std::string py2 =
      Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (6L,), }", data);
  ASSERT_TRUE(IsOk(moert_npy_parse(py2.data(), py2.size(), t.out())));
  // f16 and scalar i64.
  std::string f16 = Npy(
      "{'descr': '<f2', 'fortran_order': False, 'shape': (1,), }",
      Bytes<uint16_t>({0x3c00}));
  ASSERT_TRUE(IsOk(moert_npy_parse(f16.data(), f16.size(), t.out())));
  EXPECT_EQ(moert_tensor_dtype(t.get()), MOERT_DTYPE_F16);
  std::string i64 = Npy("{'descr': '<i8', 'fortran_order': False, 'shape': (), }",
                        Bytes<int64_t>({-5}));
  ASSERT_TRUE(IsOk(moert_npy_parse(i64.data(), i64.size(), t.out())));
  EXPECT_EQ(moert_tensor_rank(t.get()), 0);
  EXPECT_EQ(Values<int64_t>(t.get())[0], -5);
}

TEST(Npy, Bf16CannotBeWritten) {
  TempDir dir;
  TensorPtr t;
  const int64_t s[] = {2};
  ASSERT_TRUE(IsOk(moert_tensor_create(MOERT_DTYPE_BF16, 1, s, t.out())));
  std::string path = dir.File("b.npy");
  EXPECT_TRUE(IsError(moert_npy_write(path.c_str(), t.get()),
                      MOERT_STATUS_UNIMPLEMENTED, {"bf16", path}));
}

TEST(Npy, WriteToMissingDirectory) {
  TempDir dir;
  TensorPtr t(F32({1}, {1}));
  std::string path = dir.File("no/such/dir.npy");
  EXPECT_TRUE(IsError(moert_npy_write(path.c_str(), t.get()),
                      MOERT_STATUS_UNAVAILABLE, {path}));
}

TEST(Npy, MissingFile) {
  TempDir dir;
  std::string path = dir.File("missing.npy");
  moert_tensor_t *t;
  EXPECT_TRUE(IsError(moert_npy_read(path.c_str(), &t), MOERT_STATUS_NOT_FOUND,
                      {path}));
}

TEST(Npy, CorruptFileNamesThePath) {
  TempDir dir;
  std::string path = dir.File("bad.npy");
  WriteFile(path, "not numpy at all");
  moert_tensor_t *t;
  EXPECT_TRUE(IsError(moert_npy_read(path.c_str(), &t), MOERT_STATUS_DATA_LOSS,
                      {path, "magic"}));
}

TEST(Npy, Truncated) {
  std::string data = Bytes<float>({1, 2, 3, 4, 5, 6});
  std::string ok =
      Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data);
  EXPECT_TRUE(ParseFails(ok.substr(0, ok.size() - 1), MOERT_STATUS_DATA_LOSS,
                         {"truncated", "needs 24", "only 23"}));
  EXPECT_TRUE(ParseFails(ok.substr(0, 40), MOERT_STATUS_DATA_LOSS,
                         {"header length", "truncated"}));
  EXPECT_TRUE(ParseFails(ok.substr(0, 9), MOERT_STATUS_DATA_LOSS,
                         {"header length"}));
  EXPECT_TRUE(ParseFails(ok.substr(0, 3), MOERT_STATUS_DATA_LOSS, {"magic"}));
  EXPECT_TRUE(ParseFails("", MOERT_STATUS_DATA_LOSS, {"magic"}));
  EXPECT_TRUE(ParseFails(ok + "xx", MOERT_STATUS_DATA_LOSS,
                         {"2 unexpected bytes"}));
}

TEST(Npy, CorruptHeaders) {
  std::string d4 = Bytes<float>({1});
  EXPECT_TRUE(ParseFails(Npy("'descr': '<f4'", d4), MOERT_STATUS_DATA_LOSS,
                         {"not a Python dict"}));
  EXPECT_TRUE(ParseFails(Npy("{'descr': '<f4', 'fortran_order': False}", d4),
                         MOERT_STATUS_DATA_LOSS, {"no 'shape'"}));
  EXPECT_TRUE(ParseFails(
      Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}",
          d4),
      MOERT_STATUS_DATA_LOSS, {"unexpected key"}));
  EXPECT_TRUE(ParseFails(
      Npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
          "'shape': (1,)}",
          d4),
      MOERT_STATUS_DATA_LOSS, {"duplicate key"}));
  EXPECT_TRUE(ParseFails(
      Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", d4),
      MOERT_STATUS_DATA_LOSS, {"non-negative integers"}));
  EXPECT_TRUE(ParseFails(
      Npy("{'descr': '<f4', 'fortran_order': False, 'shape': [1]}", d4),
      MOERT_STATUS_UNIMPLEMENTED, {"structured"}));
  EXPECT_TRUE(ParseFails(
      Npy("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}", d4),
      MOERT_STATUS_DATA_LOSS, {"unsupported value"}));
  EXPECT_TRUE(ParseFails(
      Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,) junk", d4),
      MOERT_STATUS_DATA_LOSS, {"expected ','"}));
  EXPECT_TRUE(ParseFails(
      Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} junk", d4),
      MOERT_STATUS_DATA_LOSS, {"after the header dict"}));
  EXPECT_TRUE(ParseFails(
      Npy("{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}", d4),
      MOERT_STATUS_DATA_LOSS, {"malformed header"}));
  EXPECT_TRUE(ParseFails(
      Npy("{'descr': True, 'fortran_order': False, 'shape': (1,)}", d4),
      MOERT_STATUS_DATA_LOSS, {"'descr' is not a string"}));
  EXPECT_TRUE(ParseFails(
      Npy("{'descr': '<f4', 'fortran_order': False, 'shape': '1'}", d4),
      MOERT_STATUS_DATA_LOSS, {"'shape' is not a tuple"}));
  EXPECT_TRUE(ParseFails(
      Npy("{'descr': '<f4', 'fortran_order': False, "
          "'shape': (99999999999999999999,)}",
          d4),
      MOERT_STATUS_DATA_LOSS, {"non-negative integers"}));
  EXPECT_TRUE(ParseFails(
      Npy("{'descr': '<f4', 'fortran_order': False, "
          "'shape': (4294967296, 4294967296)}",
          d4),
      MOERT_STATUS_DATA_LOSS, {"overflows"}));
}

TEST(Npy, UnsupportedButWellFormed) {
  std::string d4 = Bytes<float>({1});
  EXPECT_TRUE(ParseFails(
      Npy("{'descr': '>f4', 'fortran_order': False, 'shape': (1,)}", d4),
      MOERT_STATUS_UNIMPLEMENTED, {"big-endian", "'>f4'"}));
  EXPECT_TRUE(ParseFails(
      Npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)}",
          Bytes<double>({1})),
      MOERT_STATUS_UNIMPLEMENTED, {"'<f8'", "not supported"}));
  EXPECT_TRUE(ParseFails(
      Npy("{'descr': '<f4', 'fortran_order': True, 'shape': (1,)}", d4),
      MOERT_STATUS_UNIMPLEMENTED, {"Fortran"}));
  EXPECT_TRUE(ParseFails(
      Npy("{'descr': '<f4', 'fortran_order': False, "
          "'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1)}",
          d4),
      MOERT_STATUS_UNIMPLEMENTED, {"more than 8"}));
  std::string v3 =
      Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", d4, 3);
  EXPECT_TRUE(ParseFails(v3, MOERT_STATUS_UNIMPLEMENTED, {"3.0"}));
  std::string v9 = v3;
  v9[6] = 9;
  EXPECT_TRUE(ParseFails(v9, MOERT_STATUS_DATA_LOSS, {"version 9.0"}));
}
