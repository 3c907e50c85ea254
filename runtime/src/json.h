//===- json.h - a small JSON parser for safetensors headers ------*- C++ -*-===//
//
// RFC 8259 JSON: objects, arrays, strings (all escapes, \u surrogate pairs
// decoded to UTF-8), numbers, true, false, null. Object members keep their
// file order and duplicates (callers decide whether duplicates are errors).
// Numbers without fraction or exponent that fit int64 are integers.
// Nesting is limited (default 64 levels) so hostile input cannot exhaust the
// stack. Internal to libmoert.
//
//===----------------------------------------------------------------------===//

#ifndef MOERT_SRC_JSON_H
#define MOERT_SRC_JSON_H

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moert::json {

enum class Kind { Null, Bool, Number, String, Array, Object };

struct Value {
  Kind kind = Kind::Null;
  bool boolean = false;
  bool is_integer = false; // Number: exact int64 value in `integer`
  int64_t integer = 0;
  double number = 0;       // Number: value as double
  std::string string;      // String
  std::vector<Value> items;        // Array elements, or Object values
  std::vector<std::string> keys;   // Object keys (parallel to items)

  /// The first member named `key` of an object, or NULL.
  const Value *Find(std::string_view key) const;
};

const char *KindName(Kind kind);

/// Parses `text`, which must hold exactly one value (surrounded by optional
/// whitespace). On failure returns false and sets `*error` to a message of
/// the form "at byte N: what".
bool Parse(std::string_view text, Value *out, std::string *error,
           int max_depth = 64);

} // namespace moert::json

#endif // MOERT_SRC_JSON_H
