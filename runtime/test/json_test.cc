//===- json_test.cc - the internal JSON parser ----------------------------===//

#include "json.h"

#include <gtest/gtest.h>

using moert::json::Kind;
using moert::json::Parse;
using moert::json::Value;

namespace {

Value MustParse(const std::string &text) {
  Value v;
  std::string error;
  EXPECT_TRUE(Parse(text, &v, &error)) << text << ": " << error;
  return v;
}

std::string ParseError(const std::string &text, int depth = 64) {
  Value v;
  std::string error;
  EXPECT_FALSE(Parse(text, &v, &error, depth)) << text;
  return error;
}

} // namespace

TEST(Json, Scalars) {
  EXPECT_EQ(MustParse("null").kind, Kind::Null);
  Value t = MustParse(" true ");
  EXPECT_EQ(t.kind, Kind::Bool);
  EXPECT_TRUE(t.boolean);
  EXPECT_FALSE(MustParse("false").boolean);
  Value n = MustParse("-42");
  EXPECT_EQ(n.kind, Kind::Number);
  EXPECT_TRUE(n.is_integer);
  EXPECT_EQ(n.integer, -42);
  Value big = MustParse("9223372036854775807");
  EXPECT_TRUE(big.is_integer);
  EXPECT_EQ(big.integer, INT64_MAX);
  Value over = MustParse("9223372036854775808");
  EXPECT_EQ(over.kind, Kind::Number);
  EXPECT_FALSE(over.is_integer);
  Value f = MustParse("1.5e3");
  EXPECT_FALSE(f.is_integer);
  EXPECT_DOUBLE_EQ(f.number, 1500.0);
  EXPECT_FALSE(MustParse("2.0").is_integer);
  EXPECT_DOUBLE_EQ(MustParse("-0.25E-2").number, -0.0025);
}

TEST(Json, StringsAndEscapes) {
  Value s = MustParse(R"("a\"b\\c\/d\b\f\n\r\t")");
  EXPECT_EQ(s.kind, Kind::String);
  EXPECT_EQ(s.string, "a\"b\\c/d\b\f\n\r\t");
  EXPECT_EQ(MustParse(R"("\u0041\u00e9\u20ac")").string,
            "A\xc3\xa9\xe2\x82\xac");
  // U+1F600 as a surrogate pair.
  EXPECT_EQ(MustParse(R"("\ud83d\ude00")").string, "\xf0\x9f\x98\x80");
  EXPECT_EQ(MustParse(R"("\u0000x")").string, std::string("\0x", 2));
  // Raw UTF-8 passes through.
  EXPECT_EQ(MustParse("\"caf\xc3\xa9\"").string, "caf\xc3\xa9");
}

TEST(Json, ObjectsAndArraysKeepOrderAndDuplicates) {
  Value v = MustParse(R"({"b": [1, 2, [3]], "a": {}, "b": "again"})");
  ASSERT_EQ(v.kind, Kind::Object);
  ASSERT_EQ(v.keys.size(), 3u);
  EXPECT_EQ(v.keys[0], "b");
  EXPECT_EQ(v.keys[1], "a");
  EXPECT_EQ(v.keys[2], "b");
  const Value *b = v.Find("b");
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(b->kind, Kind::Array);
  ASSERT_EQ(b->items.size(), 3u);
  EXPECT_EQ(b->items[1].integer, 2);
  EXPECT_EQ(b->items[2].items[0].integer, 3);
  EXPECT_EQ(v.Find("a")->kind, Kind::Object);
  EXPECT_EQ(v.Find("zz"), nullptr);
  EXPECT_EQ(MustParse("[]").items.size(), 0u);
  EXPECT_EQ(MustParse("{ }").keys.size(), 0u);
}

TEST(Json, Errors) {
  EXPECT_NE(ParseError("").find("unexpected end"), std::string::npos);
  EXPECT_NE(ParseError("{").find("expected a string key"), std::string::npos);
  EXPECT_NE(ParseError(R"({"a" 1})").find("expected ':'"), std::string::npos);
  EXPECT_NE(ParseError(R"({"a": 1,})").find("expected a string key"),
            std::string::npos);
  EXPECT_NE(ParseError("[1 2]").find("expected ',' or ']'"), std::string::npos);
  EXPECT_NE(ParseError("[1,]").find("expected a value"), std::string::npos);
  EXPECT_NE(ParseError(R"("abc)").find("unterminated"), std::string::npos);
  EXPECT_NE(ParseError("\"a\nb\"").find("control character"),
            std::string::npos);
  EXPECT_NE(ParseError(R"("\x")").find("invalid escape"), std::string::npos);
  EXPECT_NE(ParseError(R"("\u12")").find("\\u"), std::string::npos);
  EXPECT_NE(ParseError(R"("\u12g4")").find("hex digit"), std::string::npos);
  EXPECT_NE(ParseError(R"("\ud83d")").find("surrogate"), std::string::npos);
  EXPECT_NE(ParseError(R"("\ude00")").find("surrogate"), std::string::npos);
  EXPECT_NE(ParseError("01").find("after the JSON value"), std::string::npos);
  EXPECT_NE(ParseError("-").find("number"), std::string::npos);
  EXPECT_NE(ParseError("1.").find("decimal point"), std::string::npos);
  EXPECT_NE(ParseError("1e").find("exponent"), std::string::npos);
  EXPECT_NE(ParseError("tru").find("literal"), std::string::npos);
  EXPECT_NE(ParseError("{} {}").find("after the JSON value"),
            std::string::npos);
  EXPECT_NE(ParseError("[1] x").find("at byte 4"), std::string::npos);
}

TEST(Json, DepthLimit) {
  std::string deep(100000, '[');
  EXPECT_NE(ParseError(deep).find("too deep"), std::string::npos);
  MustParse("[[[[1]]]]");
  EXPECT_NE(ParseError("[[[[1]]]]", 3).find("too deep"), std::string::npos);
}
