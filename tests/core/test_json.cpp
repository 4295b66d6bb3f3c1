// rg::Json on nlohmann (Note [JSON on nlohmann]): values, file order, integers vs doubles, the
// writer's number forms, error messages (byte offsets, missing keys, wrong types), nesting limit.
#include <cmath>
#include <limits>

#include "core/json.h"
#include "test_util.h"

using namespace rg;
using rg::test::contains;
using rg::test::error_of;

TEST_CASE("Json: parses every value kind, objects in file order") {
  const Json j = Json::parse(R"( {"b": [1, -2, 3.5, 1e3, true, false, null], "a": {"x": "y\u00e9\n"}, "c": ""} )");
  REQUIRE(j.is_object());
  const auto& o = j.as_object();
  REQUIRE(o.size() == 3);
  CHECK(o[0].first == "b");
  CHECK(o[1].first == "a");
  CHECK(o[2].first == "c");
  const Json& b = j["b"];
  REQUIRE(b.size() == 7);
  CHECK(b[0].as_int() == 1);
  CHECK(b[1].as_int() == -2);
  CHECK(b[2].as_double() == 3.5);
  CHECK(b[3].as_int() == 1000);  // an integral double still reads as an integer
  CHECK(b[4].as_bool());
  CHECK(!b[5].as_bool());
  CHECK(b[6].is_null());
  CHECK(j["a"]["x"].as_string() == "y\xC3\xA9\n");
  CHECK(j["c"].as_string().empty());
  CHECK(j.find("zzz") == nullptr);
}

TEST_CASE("Json: 64-bit integers are exact, beyond int64 they become doubles") {
  const Json j = Json::parse("[9007199254740993, -9223372036854775808, 18446744073709551615]");
  CHECK(j[0].as_int() == 9007199254740993LL);  // 2^53 + 1: not representable as a double
  CHECK(j[1].as_int() == std::numeric_limits<int64_t>::min());
  CHECK(j[2].as_double() == 18446744073709551615.0);
  CHECK(contains(error_of([&] { (void)Json::parse("[1.5]")[0].as_int(); }), "expected an integer, got 1.5"));
}

TEST_CASE("Json: dump writes integers as integers, doubles in shortest round-trip form, NaN as null") {
  Json j = Json::object();
  j.set("i", int64_t{42});
  j.set("d", 0.1);
  j.set("whole", 3.0);
  j.set("big", 1e300);
  j.set("nan", std::nan(""));
  j.set("s", "q\"\\\x01");
  Json a = Json::array();
  a.push_back(Json(true));
  a.push_back(Json());
  j.set("a", a);
  CHECK(j.dump() == R"({"i":42,"d":0.1,"whole":3,"big":1e+300,"nan":null,"s":"q\"\\\u0001","a":[true,null]})");
  // set replaces in place; the text reads back to the same tree.
  j.set("i", int64_t{7});
  const Json back = Json::parse(j.dump());
  CHECK(back.dump() == j.dump());
  CHECK(back["i"].as_int() == 7);
  CHECK(back["d"].as_double() == 0.1);
}

TEST_CASE("Json: invalid UTF-8 is refused when read and replaced when written") {
  CHECK(contains(error_of([] { Json::parse("\"a\xFF\""); }), "JSON parse error at byte 2"));
  const Json s(std::string("a\xFF"));
  CHECK(s.dump() == "\"a\xEF\xBF\xBD\"");
}

TEST_CASE("Json: parse errors name the byte offset") {
  // offsets are 0-based: the byte where the text stops being JSON
  CHECK(contains(error_of([] { Json::parse(R"({"a": tru})"); }), "JSON parse error at byte 9:"));
  CHECK(contains(error_of([] { Json::parse("[1, 2,]"); }), "JSON parse error at byte 6:"));
  CHECK(contains(error_of([] { Json::parse("[1] x"); }), "JSON parse error at byte 4:"));
  const std::string eof = error_of([] { Json::parse("{\"a\": [1, 2"); });
  CHECK_MESSAGE(contains(eof, "JSON parse error at byte 11:"), eof);  // the text length
  CHECK(contains(eof, "end of input"));
  CHECK(contains(error_of([] { Json::parse(""); }), "JSON parse error at byte 0:"));
  CHECK(contains(error_of([] { Json::parse("{\"a\": 1} // comment"); }), "JSON parse error at byte 9:"));
}

TEST_CASE("Json: missing keys and wrong types are named") {
  const Json j = Json::parse(R"({"shape": [2, 3], "dtype": "F32"})");
  CHECK(contains(error_of([&] { (void)j["data_offsets"]; }), "JSON: missing key \"data_offsets\""));
  CHECK(contains(error_of([&] { (void)j["dtype"].as_int(); }), "JSON: expected number, got string"));
  CHECK(contains(error_of([&] { (void)j["shape"].as_object(); }), "JSON: expected object, got array"));
  CHECK(contains(error_of([&] { (void)j["shape"][2]; }), "index 2 out of range for an array of 2"));
}

TEST_CASE("Json: nesting is limited to 256 levels") {
  const std::string ok = std::string(256, '[') + std::string(256, ']');
  CHECK(Json::parse(ok).is_array());
  const std::string deep = std::string(257, '[') + std::string(257, ']');
  CHECK(contains(error_of([&] { Json::parse(deep); }), "nesting deeper than 256 levels"));
}

TEST_CASE("Json: a repeated key keeps both pairs and find returns the first") {
  const Json j = Json::parse(R"({"k": 1, "k": 2})");
  CHECK(j.size() == 2);
  CHECK(j["k"].as_int() == 1);
  CHECK(j.dump() == R"({"k":1,"k":2})");
}
