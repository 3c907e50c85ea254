//===- json.cc - a small JSON parser ---------------------------------------===//

#include "json.h"

#include <charconv>
#include <cstdio>
#include <new>

namespace moert::json {

const Value *Value::Find(std::string_view key) const {
  if (kind != Kind::Object)
    return nullptr;
  for (size_t i = 0; i < keys.size(); ++i)
    if (keys[i] == key)
      return &items[i];
  return nullptr;
}

const char *KindName(Kind kind) {
  switch (kind) {
  case Kind::Null: return "null";
  case Kind::Bool: return "boolean";
  case Kind::Number: return "number";
  case Kind::String: return "string";
  case Kind::Array: return "array";
  case Kind::Object: return "object";
  }
  return "value";
}

namespace {

class Parser {
public:
  Parser(std::string_view text, int max_depth)
      : text_(text), max_depth_(max_depth) {}

  bool ParseDocument(Value *out, std::string *error) {
    SkipSpace();
    bool ok = ParseValue(out, 0);
    if (ok) {
      SkipSpace();
      if (pos_ != text_.size())
        ok = Error("unexpected characters after the JSON value");
    }
    if (!ok) {
      char prefix[48];
      std::snprintf(prefix, sizeof prefix, "at byte %zu: ", error_pos_);
      *error = prefix + error_;
    }
    return ok;
  }

private:
  // Records the first error and returns false.
  bool Error(const char *what) {
    if (error_.empty()) {
      error_ = what;
      error_pos_ = pos_;
    }
    return false;
  }

  void SkipSpace() {
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
        break;
      ++pos_;
    }
  }

  bool Consume(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word)
      return false;
    pos_ += word.size();
    return true;
  }

  bool ParseValue(Value *out, int depth) {
    if (pos_ >= text_.size())
      return Error("unexpected end of input, expected a value");
    switch (text_[pos_]) {
    case '{': return ParseObject(out, depth);
    case '[': return ParseArray(out, depth);
    case '"':
      out->kind = Kind::String;
      return ParseString(&out->string);
    case 't':
      if (!Consume("true"))
        return Error("invalid literal");
      out->kind = Kind::Bool;
      out->boolean = true;
      return true;
    case 'f':
      if (!Consume("false"))
        return Error("invalid literal");
      out->kind = Kind::Bool;
      out->boolean = false;
      return true;
    case 'n':
      if (!Consume("null"))
        return Error("invalid literal");
      out->kind = Kind::Null;
      return true;
    default:
      if (text_[pos_] == '-' || (text_[pos_] >= '0' && text_[pos_] <= '9'))
        return ParseNumber(out);
      return Error("unexpected character, expected a value");
    }
  }

  bool ParseObject(Value *out, int depth) {
    if (depth >= max_depth_)
      return Error("nesting is too deep");
    out->kind = Kind::Object;
    ++pos_; // '{'
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      return true;
    }
    for (;;) {
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] != '"')
        return Error("expected a string key");
      std::string key;
      if (!ParseString(&key))
        return false;
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] != ':')
        return Error("expected ':' after an object key");
      ++pos_;
      SkipSpace();
      out->keys.push_back(std::move(key));
      out->items.emplace_back();
      if (!ParseValue(&out->items.back(), depth + 1))
        return false;
      SkipSpace();
      if (pos_ >= text_.size())
        return Error("unexpected end of input inside an object");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == '}') {
        ++pos_;
        return true;
      }
      return Error("expected ',' or '}' in an object");
    }
  }

  bool ParseArray(Value *out, int depth) {
    if (depth >= max_depth_)
      return Error("nesting is too deep");
    out->kind = Kind::Array;
    ++pos_; // '['
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == ']') {
      ++pos_;
      return true;
    }
    for (;;) {
      SkipSpace();
      out->items.emplace_back();
      if (!ParseValue(&out->items.back(), depth + 1))
        return false;
      SkipSpace();
      if (pos_ >= text_.size())
        return Error("unexpected end of input inside an array");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == ']') {
        ++pos_;
        return true;
      }
      return Error("expected ',' or ']' in an array");
    }
  }

  static int HexDigit(char c) {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return -1;
  }

  bool ParseHex4(uint32_t *out) {
    if (text_.size() - pos_ < 4)
      return Error("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      int d = HexDigit(text_[pos_ + i]);
      if (d < 0)
        return Error("invalid hex digit in a \\u escape");
      v = v * 16 + static_cast<uint32_t>(d);
    }
    pos_ += 4;
    *out = v;
    return true;
  }

  static void AppendUtf8(std::string *s, uint32_t cp) {
    if (cp < 0x80) {
      s->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      s->push_back(static_cast<char>(0xc0 | (cp >> 6)));
      s->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
      s->push_back(static_cast<char>(0xe0 | (cp >> 12)));
      s->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      s->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
      s->push_back(static_cast<char>(0xf0 | (cp >> 18)));
      s->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
      s->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      s->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
  }

  bool ParseString(std::string *out) {
    ++pos_; // '"'
    for (;;) {
      if (pos_ >= text_.size())
        return Error("unterminated string");
      unsigned char c = static_cast<unsigned char>(text_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20)
        return Error("unescaped control character in a string");
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        ++pos_;
        continue;
      }
      ++pos_;
      if (pos_ >= text_.size())
        return Error("unterminated escape in a string");
      char e = text_[pos_++];
      switch (e) {
      case '"': out->push_back('"'); break;
      case '\\': out->push_back('\\'); break;
      case '/': out->push_back('/'); break;
      case 'b': out->push_back('\b'); break;
      case 'f': out->push_back('\f'); break;
      case 'n': out->push_back('\n'); break;
      case 'r': out->push_back('\r'); break;
      case 't': out->push_back('\t'); break;
      case 'u': {
        uint32_t cp;
        if (!ParseHex4(&cp))
          return false;
        if (cp >= 0xdc00 && cp <= 0xdfff)
          return Error("unpaired low surrogate in a \\u escape");
        if (cp >= 0xd800 && cp <= 0xdbff) {
          if (!Consume("\\u"))
            return Error("unpaired high surrogate in a \\u escape");
          uint32_t lo;
          if (!ParseHex4(&lo))
            return false;
          if (lo < 0xdc00 || lo > 0xdfff)
            return Error("invalid low surrogate in a \\u escape");
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        AppendUtf8(out, cp);
        break;
      }
      default:
        --pos_;
        return Error("invalid escape in a string");
      }
    }
  }

  bool ParseNumber(Value *out) {
    size_t start = pos_;
    bool integral = true;
    if (text_[pos_] == '-')
      ++pos_;
    if (pos_ >= text_.size())
      return Error("truncated number");
    if (text_[pos_] == '0') {
      ++pos_;
    } else if (text_[pos_] >= '1' && text_[pos_] <= '9') {
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9')
        ++pos_;
    } else {
      return Error("invalid number");
    }
    if (pos_ < text_.size() && text_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9')
        return Error("expected a digit after the decimal point");
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9')
        ++pos_;
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-'))
        ++pos_;
      if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9')
        return Error("expected a digit in the exponent");
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9')
        ++pos_;
    }
    const char *first = text_.data() + start;
    const char *last = text_.data() + pos_;
    out->kind = Kind::Number;
    if (integral) {
      int64_t v;
      auto [ptr, ec] = std::from_chars(first, last, v);
      if (ec == std::errc() && ptr == last) {
        out->is_integer = true;
        out->integer = v;
        out->number = static_cast<double>(v);
        return true;
      }
    }
    double d = 0;
    auto [ptr, ec] = std::from_chars(first, last, d);
    if (ptr != last) // out of range still consumes everything
      return Error("invalid number");
    (void)ec;
    out->number = d;
    return true;
  }

  std::string_view text_;
  int max_depth_;
  size_t pos_ = 0;
  std::string error_;
  size_t error_pos_ = 0;
};

} // namespace

bool Parse(std::string_view text, Value *out, std::string *error,
           int max_depth) {
  *out = Value();
  try {
    Parser parser(text, max_depth);
    return parser.ParseDocument(out, error);
  } catch (const std::bad_alloc &) {
    *error = "out of memory while parsing JSON";
    return false;
  }
}

} // namespace moert::json
