// A small JSON value (safetensors headers, checkpoint metadata, benchmark output) parsed and written
// through nlohmann-json (Note [JSON on nlohmann] in json.cpp). Parse errors give the byte offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace rg {

class Json {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };

  Json() = default;
  Json(std::nullptr_t) {}                                        // NOLINT
  Json(bool b) : type_(Type::Bool), bool_(b) {}                  // NOLINT
  Json(double d) : type_(Type::Number), num_(d) {}               // NOLINT
  Json(int v) : type_(Type::Number), num_(v) {}                  // NOLINT
  Json(int64_t v) : type_(Type::Number), num_(static_cast<double>(v)), int_(v), is_int_(true) {}  // NOLINT
  Json(uint64_t v) : Json(static_cast<int64_t>(v)) {}            // NOLINT
  Json(const char* s) : type_(Type::String), str_(s) {}          // NOLINT
  Json(std::string s) : type_(Type::String), str_(std::move(s)) {}  // NOLINT
  static Json array() { Json j; j.type_ = Type::Array; return j; }
  static Json object() { Json j; j.type_ = Type::Object; return j; }

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_number() const { return type_ == Type::Number; }
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }
  bool is_bool() const { return type_ == Type::Bool; }

  // Typed access; throws rg::Error naming the expected and actual type.
  bool as_bool() const;
  double as_double() const;
  int64_t as_int() const;  // exact for integers written without fraction or exponent
  const std::string& as_string() const;
  const std::vector<Json>& as_array() const;
  const std::vector<std::pair<std::string, Json>>& as_object() const;  // in file order

  // Objects: get throws naming the missing key; find returns null when absent.
  const Json& operator[](const std::string& key) const;
  const Json* find(const std::string& key) const;
  Json& set(const std::string& key, Json value);  // replaces or appends
  // Arrays
  const Json& operator[](size_t i) const;
  Json& push_back(Json value);
  size_t size() const;

  std::string dump() const;  // compact, keys in insertion order
  // Strict RFC 8259 parse of the whole text; throws rg::Error "JSON parse error at byte N: ...".
  static Json parse(const std::string& text);

 private:
  Type type_ = Type::Null;
  bool bool_ = false;
  double num_ = 0;
  int64_t int_ = 0;
  bool is_int_ = false;
  std::string str_;
  std::vector<Json> arr_;
  std::vector<std::pair<std::string, Json>> obj_;
  friend class JsonParser;
};

// The message of an nlohmann SAX parse error worded as Json::parse words its own: "JSON parse error
// at byte N: <reason>" (nlohmann's what() without its "[json.exception...] ... column C: " prefix).
// For the other SAX readers of the project (the COCO reader).
std::string json_parse_error_message(size_t position, const std::string& what);

}  // namespace rg
