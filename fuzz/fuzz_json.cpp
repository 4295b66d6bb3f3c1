// Fuzzes rg::Json::parse (core/json.cpp): it agrees with nlohmann's own validator on what is JSON (up
// to the nesting limit), every typed accessor returns or throws rg::Error, and dump() is a fixed point.
#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

#include "core/json.h"
#include "fuzz/fuzz_util.h"

namespace {

// Walks the tree: typed reads of the wrong type and int reads of any number return or throw rg::Error.
void walk(const rg::Json& j, int depth) {
  using rg::fuzz::returns_or_rg_error;
  RG_FUZZ_CHECK(depth <= 256, "deeper than the parser's limit");
  switch (j.type()) {
    case rg::Json::Type::Number: {
      const double d = j.as_double();
      int64_t i = 0;
      if (returns_or_rg_error([&] { i = j.as_int(); })) {
        RG_FUZZ_CHECK(std::isfinite(d), "as_int of ", d);
        RG_FUZZ_CHECK(std::fabs(static_cast<double>(i) - d) <= std::fabs(d) * 1e-15, "as_int ", i, " of ", d);
      }
      break;
    }
    case rg::Json::Type::Array:
      RG_FUZZ_CHECK(j.size() == j.as_array().size(), "size");
      for (const rg::Json& v : j.as_array()) walk(v, depth + 1);
      returns_or_rg_error([&] { (void)j[j.size()]; });  // one past the end: an error
      break;
    case rg::Json::Type::Object:
      for (const auto& [k, v] : j.as_object()) {
        RG_FUZZ_CHECK(j.find(k) != nullptr, "find of a key it has");
        walk(v, depth + 1);
      }
      break;
    default: break;
  }
  returns_or_rg_error([&] { (void)j.as_string(); });
  returns_or_rg_error([&] { (void)j.as_bool(); });
  returns_or_rg_error([&] { (void)j["key"]; });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  rg::Json v;
  std::string error;
  const bool ok = rg::fuzz::returns_or_rg_error([&] {
    try {
      v = rg::Json::parse(text);
    } catch (const rg::Error& e) {
      error = e.what();
      throw;
    }
  }, "JSON parse error");
  // nlohmann's DOM validator is the reference for what RFC 8259 accepts; ours refuses deeper nesting.
  const bool valid = nlohmann::json::accept(text);
  if (!ok) {
    RG_FUZZ_CHECK(!valid || error.find("nesting deeper than") != std::string::npos,
                  "valid JSON refused for another reason than its depth: ", error);
    return 0;
  }
  RG_FUZZ_CHECK(valid, "accepted text that nlohmann rejects");
  walk(v, 0);
  // dump() writes JSON that parses back to a value with the same dump.
  const std::string once = v.dump();
  rg::Json again;
  RG_FUZZ_CHECK(rg::fuzz::returns_or_rg_error([&] { again = rg::Json::parse(once); }), "its own dump does not parse: ",
                once);
  RG_FUZZ_CHECK(again.dump() == once, "dump is not a fixed point:\n", once, "\n", again.dump());
  RG_FUZZ_CHECK(again.type() == v.type() || v.is_number(), "type changed through dump");
  return 0;
}
