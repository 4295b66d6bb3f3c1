// JSON values (see json.h): parsing through nlohmann-json's SAX parser straight into rg::Json (one
// tree, not two), writing through nlohmann's serializer. Note [JSON on nlohmann].
#include "core/json.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace rg {

// Note [JSON on nlohmann]
// The hand-written parser is gone: text goes through nlohmann::json::sax_parse (strict RFC 8259,
// UTF-8 checked, no comments), whose events build rg::Json directly, so a parse costs one tree.
// Numbers: integers that fit int64 (or uint64 up to INT64_MAX) become exact integers, everything
// else a double. Objects keep file order; a repeated key is kept twice and find() returns the
// first, as before. Nesting deeper than kMaxDepth is refused (the tree's destructor recurses).
// Errors read "JSON parse error at byte N: <what>", N the 0-based offset of the offending byte
// (the text's length for an unexpected end). dump() converts to nlohmann::ordered_json and
// serialises it: integral numbers below 2^53 print as integers (as before), other finite doubles
// in the shortest form that reads back to the same double, non-finite ones as null, and invalid
// UTF-8 in strings is replaced by U+FFFD instead of failing the write.

namespace {
constexpr int kMaxDepth = 256;

const char* type_name(Json::Type t) {
  switch (t) {
    case Json::Type::Null: return "null";
    case Json::Type::Bool: return "bool";
    case Json::Type::Number: return "number";
    case Json::Type::String: return "string";
    case Json::Type::Array: return "array";
    case Json::Type::Object: return "object";
  }
  return "?";
}
}  // namespace

#define RG_JSON_EXPECT(t) RG_CHECK(type_ == (t), "JSON: expected ", type_name(t), ", got ", type_name(type_))

bool Json::as_bool() const {
  RG_JSON_EXPECT(Type::Bool);
  return bool_;
}
double Json::as_double() const {
  RG_JSON_EXPECT(Type::Number);
  return num_;
}
int64_t Json::as_int() const {
  RG_JSON_EXPECT(Type::Number);
  if (is_int_) return int_;
  RG_CHECK(std::floor(num_) == num_ && std::fabs(num_) < 9.007199254740992e15, "JSON: expected an integer, got ",
           num_);
  return static_cast<int64_t>(num_);
}
const std::string& Json::as_string() const {
  RG_JSON_EXPECT(Type::String);
  return str_;
}
const std::vector<Json>& Json::as_array() const {
  RG_JSON_EXPECT(Type::Array);
  return arr_;
}
const std::vector<std::pair<std::string, Json>>& Json::as_object() const {
  RG_JSON_EXPECT(Type::Object);
  return obj_;
}

const Json* Json::find(const std::string& key) const {
  if (type_ != Type::Object) return nullptr;
  for (const auto& [k, v] : obj_) {
    if (k == key) return &v;
  }
  return nullptr;
}
const Json& Json::operator[](const std::string& key) const {
  RG_JSON_EXPECT(Type::Object);
  const Json* v = find(key);
  RG_CHECK(v, "JSON: missing key \"", key, "\"");
  return *v;
}
Json& Json::set(const std::string& key, Json value) {
  if (type_ == Type::Null) type_ = Type::Object;
  RG_JSON_EXPECT(Type::Object);
  for (auto& [k, v] : obj_) {
    if (k == key) {
      v = std::move(value);
      return v;
    }
  }
  obj_.emplace_back(key, std::move(value));
  return obj_.back().second;
}
const Json& Json::operator[](size_t i) const {
  RG_JSON_EXPECT(Type::Array);
  RG_CHECK(i < arr_.size(), "JSON: index ", i, " out of range for an array of ", arr_.size());
  return arr_[i];
}
Json& Json::push_back(Json value) {
  if (type_ == Type::Null) type_ = Type::Array;
  RG_JSON_EXPECT(Type::Array);
  arr_.push_back(std::move(value));
  return arr_.back();
}
size_t Json::size() const {
  if (type_ == Type::Array) return arr_.size();
  if (type_ == Type::Object) return obj_.size();
  return 0;
}

// ---- writing
namespace {
nlohmann::ordered_json to_nlohmann(const Json& j) {
  switch (j.type()) {
    case Json::Type::Null: return nullptr;
    case Json::Type::Bool: return j.as_bool();
    case Json::Type::Number: {
      const double d = j.as_double();
      if (std::floor(d) == d && std::fabs(d) < 9.007199254740992e15) return j.as_int();
      return d;  // NaN and infinities serialise as null
    }
    case Json::Type::String: return j.as_string();
    case Json::Type::Array: {
      nlohmann::ordered_json a = nlohmann::ordered_json::array();
      for (const Json& v : j.as_array()) a.push_back(to_nlohmann(v));
      return a;
    }
    case Json::Type::Object: {
      nlohmann::ordered_json o = nlohmann::ordered_json::object();
      // ordered_json's operator[] would merge repeated keys; append the pairs as they are.
      for (const auto& [k, v] : j.as_object()) o.get_ref<nlohmann::ordered_json::object_t&>().emplace_back(k, to_nlohmann(v));
      return o;
    }
  }
  return nullptr;
}
}  // namespace

std::string Json::dump() const {
  return to_nlohmann(*this).dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

// ---- parsing: nlohmann SAX events -> rg::Json
class JsonParser {
 public:
  bool null() { return put(Json()); }
  bool boolean(bool b) { return put(Json(b)); }
  bool number_integer(int64_t v) { return put(Json(v)); }
  bool number_unsigned(uint64_t v) {
    if (v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return put(Json(static_cast<int64_t>(v)));
    return put(Json(static_cast<double>(v)));
  }
  bool number_float(double v, const std::string&) { return put(Json(v)); }
  bool string(std::string& s) { return put(Json(std::move(s))); }
  bool binary(std::vector<uint8_t>&) { return false; }  // not produced by the text parser
  bool start_object(size_t) { return open(Json::object()); }
  bool key(std::string& k) {
    keys_.push_back(std::move(k));
    return true;
  }
  bool end_object() { return close(); }
  bool start_array(size_t) { return open(Json::array()); }
  bool end_array() { return close(); }
  bool parse_error(size_t position, const std::string&, const nlohmann::detail::exception& ex) {
    error_ = json_parse_error_message(position, ex.what());
    return false;
  }

  Json parse(const char* begin, const char* end) {
    const bool ok = nlohmann::json::sax_parse(begin, end, this);
    if (too_deep_) RG_THROW("JSON parse error: nesting deeper than ", kMaxDepth, " levels");
    if (!ok || !error_.empty()) RG_THROW(error_.empty() ? std::string("JSON parse error") : error_);
    return std::move(root_);
  }

 private:
  // Places a finished value: into the open array or object, or as the root.
  bool put(Json v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return true;
    }
    Json& top = stack_.back();
    if (top.type_ == Json::Type::Array) {
      top.arr_.push_back(std::move(v));
    } else {
      top.obj_.emplace_back(std::move(keys_.back()), std::move(v));
      keys_.pop_back();
    }
    return true;
  }
  bool open(Json container) {
    if (static_cast<int>(stack_.size()) >= kMaxDepth) {
      too_deep_ = true;
      return false;
    }
    stack_.push_back(std::move(container));
    return true;
  }
  bool close() {
    Json done = std::move(stack_.back());
    stack_.pop_back();
    return put(std::move(done));
  }

  std::vector<Json> stack_;        // the open arrays and objects, innermost last
  std::vector<std::string> keys_;  // the pending key of each open object that awaits its value
  Json root_;
  std::string error_;
  bool too_deep_ = false;
};

Json Json::parse(const std::string& text) {
  JsonParser p;
  return p.parse(text.data(), text.data() + text.size());
}

std::string json_parse_error_message(size_t position, const std::string& what) {
  // what: "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ..."
  std::string reason = what;
  const size_t col = reason.find("column ");
  const size_t colon = col == std::string::npos ? std::string::npos : reason.find(": ", col);
  if (colon != std::string::npos) reason = reason.substr(colon + 2);
  return "JSON parse error at byte " + std::to_string(position > 0 ? position - 1 : 0) + ": " + reason;
}

}  // namespace rg
