// Strict option parsing helpers (apps/arg_utils.h).
#include "apps/arg_utils.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"

namespace rg::app {

void check_known_flags(const Args& args, const std::vector<std::string>& value_flags,
                       const std::vector<std::string>& switches, const std::string& command) {
  auto known = [](const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const size_t eq = a.find('=');
    const std::string name = a.substr(0, eq);
    if (known(value_flags, name)) {
      if (eq == std::string::npos) {
        RG_CHECK(i + 1 < args.size(), command, ": option ", name, " needs a value");
        ++i;
      }
      continue;
    }
    if (known(switches, a)) continue;
    RG_THROW(command, ": unknown argument '", a, "' (see `ringgrad ", command, " --help`)");
  }
}

std::string last_opt(const Args& args, const std::string& name, const std::string& fallback) {
  std::string v = fallback;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == name && i + 1 < args.size()) {
      v = args[i + 1];
      ++i;
    } else if (args[i].rfind(name + "=", 0) == 0) {
      v = args[i].substr(name.size() + 1);
    }
  }
  return v;
}

bool flag_given(const Args& args, const std::string& name) {
  for (const auto& a : args) {
    if (a == name || a.rfind(name + "=", 0) == 0) return true;
  }
  return false;
}

int64_t parse_int(const Args& args, const std::string& name, int64_t fallback) {
  const std::string v = last_opt(args, name, "");
  if (v.empty()) return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  RG_CHECK(end && *end == '\0', "option ", name, " expects an integer, got '", v, "'");
  return x;
}

double parse_double(const Args& args, const std::string& name, double fallback) {
  const std::string v = last_opt(args, name, "");
  if (v.empty()) return fallback;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  RG_CHECK(end && *end == '\0', "option ", name, " expects a number, got '", v, "'");
  return x;
}

}  // namespace rg::app
