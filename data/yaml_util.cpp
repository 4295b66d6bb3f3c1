// yaml-cpp loading and typed reads with errors naming file, line and key.
#include "data/yaml_util.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include "core/error.h"

namespace rg::data {

YAML::Node load_yaml_file(const std::string& path) {
  std::ifstream f(path);
  RG_CHECK(f, "cannot read '", path, "': ", std::strerror(errno));
  try {
    return YAML::Load(f);
  } catch (const YAML::Exception& e) {
    RG_THROW("'", path, "': line ", e.mark.line + 1, ", column ", e.mark.column + 1, ": ", e.msg);
  }
}

std::string yaml_where(const std::string& file, const YAML::Node& node) {
  if (!node.IsDefined()) return file;
  const YAML::Mark m = node.Mark();
  if (m.is_null()) return file;
  return file + ":" + std::to_string(m.line + 1);
}

namespace {
YAML::Node required(const YAML::Node& node, const std::string& key, const std::string& file) {
  RG_CHECK(node.IsMap(), yaml_where(file, node), ": expected a mapping with '", key, "'");
  const YAML::Node v = node[key];
  RG_CHECK(v.IsDefined() && !v.IsNull(), yaml_where(file, node), ": missing '", key, "'");
  return v;
}

std::string scalar_text(const YAML::Node& v) { return v.IsScalar() ? "'" + v.Scalar() + "'" : "a non-scalar value"; }
}  // namespace

double yaml_double(const YAML::Node& node, const std::string& key, const std::string& file) {
  const YAML::Node v = required(node, key, file);
  double d = 0;
  const bool ok = v.IsScalar() && YAML::convert<double>::decode(v, d) && std::isfinite(d);
  RG_CHECK(ok, yaml_where(file, v), ": '", key, "' must be a number, got ", scalar_text(v));
  return d;
}

int64_t yaml_int(const YAML::Node& node, const std::string& key, const std::string& file) {
  const YAML::Node v = required(node, key, file);
  long long i = 0;
  const bool ok = v.IsScalar() && YAML::convert<long long>::decode(v, i);
  RG_CHECK(ok, yaml_where(file, v), ": '", key, "' must be an integer, got ", scalar_text(v));
  return i;
}

std::string yaml_string(const YAML::Node& node, const std::string& key, const std::string& file) {
  const YAML::Node v = required(node, key, file);
  RG_CHECK(v.IsScalar(), yaml_where(file, v), ": '", key, "' must be a string");
  return v.Scalar();
}

}  // namespace rg::data
