// The options table machinery (train/options.h, Note [Options table]): strict parsing, JSON,
// usage text and domain checks for any set of bound table rows; and the engine's own rows.
#include "train/options.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "core/error.h"

namespace rg::train {

RG_DEFINE_OPTIONS(TrainOptions, RG_TRAIN_OPTIONS)

namespace {

template <OptKind K>
OptType<K>& ref(void* field) {
  return *static_cast<OptType<K>*>(field);
}

bool is_switch(OptKind k) { return k == OptKind::Bool || k == OptKind::Tri; }

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep)) out.push_back(item);
  return out;
}

int64_t to_int(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  RG_CHECK(!v.empty() && end && *end == '\0' && errno != ERANGE, "option ", flag, " expects an integer, got '", v,
           "'");
  return x;
}

double to_real(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  RG_CHECK(!v.empty() && end && *end == '\0' && std::isfinite(x), "option ", flag, " expects a finite number, got '",
           v, "'");
  return x;
}

bool to_bool(const std::string& flag, const std::string& v) {
  if (v == "true" || v == "1" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "0" || v == "no" || v == "off") return false;
  RG_THROW("option ", flag, " expects true or false, got '", v, "'");
}

std::string range_text(const Domain& d, bool integer) {
  const std::string lo = format_number(d.lo), hi = format_number(d.hi);
  const std::string kind = integer ? "an integer " : "";
  const bool has_lo = std::isfinite(d.lo), has_hi = std::isfinite(d.hi);
  if (has_lo && has_hi) {
    return kind + "in " + (d.lo_open ? "(" : "[") + lo + ", " + hi + (d.hi_open ? ")" : "]");
  }
  if (has_lo) return kind + (d.lo_open ? "> " : ">= ") + lo;
  if (has_hi) return kind + (d.hi_open ? "< " : "<= ") + hi;
  return integer ? "an integer" : "a number";
}

bool in_range(const Domain& d, double v) {
  if (d.lo_open ? !(v > d.lo) : !(v >= d.lo)) return false;
  if (d.hi_open ? !(v < d.hi) : !(v <= d.hi)) return false;
  return true;
}

void check_number(const OptionSpec& s, double v) {
  if (in_range(s.domain, v)) return;
  const std::string range = range_text(s.domain, s.kind == OptKind::Int || s.kind == OptKind::IntList);
  if (s.domain.what) RG_THROW("Invalid ", s.domain.what, ": ", format_number(v), " (", s.flag(), " must be ", range, ")");
  RG_THROW("Invalid ", s.flag(), ": ", format_number(v), " (must be ", range, ")");
}

std::string choices_text(const char* choices) {
  std::string out;
  for (const auto& c : split(choices, '|')) out += (out.empty() ? "" : ", ") + c;
  return out;
}

std::string kind_name(OptKind k) {
  switch (k) {
    case OptKind::Bool: return "a boolean";
    case OptKind::Tri: return "a boolean or null";
    case OptKind::Int: return "an integer";
    case OptKind::Real: return "a number";
    case OptKind::OptReal: return "a number or null";
    case OptKind::Text: return "a string";
    case OptKind::IntList: return "an array of integers";
  }
  return "?";
}

// Word-wraps `text` (which starts at column `indent`) to lines of at most `width` characters.
std::string wrap(const std::string& text, size_t indent, size_t width) {
  std::string out;
  size_t col = indent;
  bool first = true;
  for (const auto& word : split(text, ' ')) {
    if (word.empty()) continue;
    if (!first && col + 1 + word.size() > width) {
      out += "\n" + std::string(indent, ' ');
      col = indent;
    } else if (!first) {
      out += ' ';
      ++col;
    }
    out += word;
    col += word.size();
    first = false;
  }
  return out;
}

}  // namespace

std::string format_number(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[40];
  for (int prec = 1; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof(buf), "%.*g", prec, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

std::string OptionSpec::flag() const {
  std::string f = std::string("--") + name;
  for (auto& c : f) c = c == '_' ? '-' : c;
  return f;
}

void Options::add(const std::vector<OptionSpec>& specs, void* target) {
  for (const auto& s : specs) {
    for (const auto& r : rows_) RG_CHECK(std::string(r.spec->name) != s.name, "option '", s.name, "' is defined twice");
    rows_.push_back(Row{&s, target});
  }
}

size_t Options::row_of(const std::string& name) const {
  for (size_t i = 0; i < rows_.size(); ++i) {
    if (name == rows_[i].spec->name) return i;
  }
  RG_THROW("no option named '", name, "'");
}

std::vector<Options::Assignment> Options::parse(const Args& args, const std::string& command) const {
  auto find_flag = [&](const std::string& flag) -> int {
    for (size_t i = 0; i < rows_.size(); ++i) {
      if (rows_[i].spec->flag() == flag) return static_cast<int>(i);
    }
    return -1;
  };
  std::vector<Assignment> out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const size_t eq = a.find('=');
    const std::string flag = a.substr(0, eq);
    const bool has_value = eq != std::string::npos;
    int row = a.rfind("--", 0) == 0 ? find_flag(flag) : -1;
    bool negated = false;
    if (row < 0 && flag.rfind("--no-", 0) == 0) {
      row = find_flag("--" + flag.substr(5));
      negated = row >= 0 && is_switch(rows_[static_cast<size_t>(row)].spec->kind);
      if (!negated) row = -1;
    }
    RG_CHECK(row >= 0, command, ": unknown argument '", a, "' (see `ringgrad ", command, " --help`)");
    const OptionSpec& s = *rows_[static_cast<size_t>(row)].spec;
    Assignment asg{static_cast<size_t>(row), ""};
    if (is_switch(s.kind)) {
      RG_CHECK(!(negated && has_value), command, ": ", flag, " takes no value");
      asg.value = negated ? "false" : (has_value ? (to_bool(flag, a.substr(eq + 1)) ? "true" : "false") : "true");
    } else if (has_value) {
      asg.value = a.substr(eq + 1);
    } else if (i + 1 < args.size() && !(s.domain.implicit && args[i + 1].rfind("--", 0) == 0)) {
      asg.value = args[++i];
    } else {
      RG_CHECK(s.domain.implicit != nullptr, command, ": option ", flag, " needs a value");
      asg.value = s.domain.implicit;
    }
    out.push_back(std::move(asg));
  }
  return out;
}

void Options::apply(const std::vector<Assignment>& assignments) const {
  for (const auto& a : assignments) {
    const Row& r = rows_.at(a.row);
    const std::string flag = r.spec->flag();
    void* f = r.field();
    switch (r.spec->kind) {
      case OptKind::Bool: ref<OptKind::Bool>(f) = to_bool(flag, a.value); break;
      case OptKind::Tri: ref<OptKind::Tri>(f) = to_bool(flag, a.value); break;
      case OptKind::Int: ref<OptKind::Int>(f) = to_int(flag, a.value); break;
      case OptKind::Real: ref<OptKind::Real>(f) = to_real(flag, a.value); break;
      case OptKind::OptReal: ref<OptKind::OptReal>(f) = to_real(flag, a.value); break;
      case OptKind::Text: ref<OptKind::Text>(f) = a.value; break;
      case OptKind::IntList: {
        std::vector<int64_t> v;
        for (const auto& item : split(a.value, ',')) {
          if (item.empty()) continue;
          char* end = nullptr;
          const long long x = std::strtoll(item.c_str(), &end, 10);
          RG_CHECK(end && *end == '\0', "option ", flag, " expects comma-separated integers, got '", a.value, "'");
          v.push_back(x);
        }
        ref<OptKind::IntList>(f) = std::move(v);
        break;
      }
    }
  }
}

void Options::check() const {
  for (const auto& r : rows_) {
    const OptionSpec& s = *r.spec;
    void* f = r.field();
    switch (s.kind) {
      case OptKind::Int: check_number(s, static_cast<double>(ref<OptKind::Int>(f))); break;
      case OptKind::Real: check_number(s, ref<OptKind::Real>(f)); break;
      case OptKind::OptReal:
        if (ref<OptKind::OptReal>(f)) check_number(s, *ref<OptKind::OptReal>(f));
        break;
      case OptKind::IntList:
        for (int64_t x : ref<OptKind::IntList>(f)) check_number(s, static_cast<double>(x));
        break;
      case OptKind::Text: {
        if (!s.domain.choices) break;
        const std::string& v = ref<OptKind::Text>(f);
        bool ok = false;
        for (const auto& c : split(s.domain.choices, '|')) ok = ok || c == v;
        RG_CHECK(ok, "Invalid ", s.flag(), ": '", v, "' (one of ", choices_text(s.domain.choices), ")");
        break;
      }
      case OptKind::Bool:
      case OptKind::Tri: break;
    }
  }
}

Json Options::to_json() const {
  Json j = Json::object();
  for (const auto& r : rows_) {
    const OptionSpec& s = *r.spec;
    if (s.persist != Persist::Saved) continue;
    void* f = r.field();
    switch (s.kind) {
      case OptKind::Bool: j.set(s.name, ref<OptKind::Bool>(f)); break;
      case OptKind::Tri: {
        const auto& v = ref<OptKind::Tri>(f);
        j.set(s.name, v ? Json(*v) : Json(nullptr));
        break;
      }
      case OptKind::Int: j.set(s.name, ref<OptKind::Int>(f)); break;
      case OptKind::Real: j.set(s.name, ref<OptKind::Real>(f)); break;
      case OptKind::OptReal: {
        const auto& v = ref<OptKind::OptReal>(f);
        j.set(s.name, v ? Json(*v) : Json(nullptr));
        break;
      }
      case OptKind::Text: j.set(s.name, ref<OptKind::Text>(f)); break;
      case OptKind::IntList: {
        Json a = Json::array();
        for (int64_t x : ref<OptKind::IntList>(f)) a.push_back(x);
        j.set(s.name, a);
        break;
      }
    }
  }
  return j;
}

void Options::from_json(const Json& j, const std::string& source) const {
  RG_CHECK(j.is_object(), source, ": the saved options are not a JSON object");
  for (const auto& [key, v] : j.as_object()) {
    size_t row = rows_.size();
    for (size_t i = 0; i < rows_.size(); ++i) {
      if (key == rows_[i].spec->name) row = i;
    }
    RG_CHECK(row < rows_.size(), source, ": unknown option '", key, "' in the saved options");
    const OptionSpec& s = *rows_[row].spec;
    void* f = rows_[row].field();
    bool ok = true;
    switch (s.kind) {
      case OptKind::Bool:
        if ((ok = v.is_bool())) ref<OptKind::Bool>(f) = v.as_bool();
        break;
      case OptKind::Tri:
        if ((ok = v.is_bool() || v.is_null())) {
          ref<OptKind::Tri>(f) = v.is_null() ? std::nullopt : std::optional<bool>(v.as_bool());
        }
        break;
      case OptKind::Int:
        if ((ok = v.is_number())) ref<OptKind::Int>(f) = v.as_int();
        break;
      case OptKind::Real:
        if ((ok = v.is_number())) ref<OptKind::Real>(f) = v.as_double();
        break;
      case OptKind::OptReal:
        if ((ok = v.is_number() || v.is_null())) {
          ref<OptKind::OptReal>(f) = v.is_null() ? std::nullopt : std::optional<double>(v.as_double());
        }
        break;
      case OptKind::Text:
        if ((ok = v.is_string())) ref<OptKind::Text>(f) = v.as_string();
        break;
      case OptKind::IntList: {
        ok = v.is_array();
        std::vector<int64_t> xs;
        for (size_t i = 0; ok && i < v.size(); ++i) {
          ok = v[i].is_number();
          if (ok) xs.push_back(v[i].as_int());
        }
        if (ok) ref<OptKind::IntList>(f) = std::move(xs);
        break;
      }
    }
    RG_CHECK(ok, source, ": saved option '", key, "' = ", v.dump(), " is not ", kind_name(s.kind));
  }
}

std::string Options::value_text(size_t row) const {
  const Row& r = rows_.at(row);
  void* f = r.field();
  switch (r.spec->kind) {
    case OptKind::Bool: return ref<OptKind::Bool>(f) ? "true" : "false";
    case OptKind::Tri: {
      const auto& v = ref<OptKind::Tri>(f);
      return v ? (*v ? "true" : "false") : "auto";
    }
    case OptKind::Int: return std::to_string(ref<OptKind::Int>(f));
    case OptKind::Real: return format_number(ref<OptKind::Real>(f));
    case OptKind::OptReal: {
      const auto& v = ref<OptKind::OptReal>(f);
      return v ? format_number(*v) : "(unset)";
    }
    case OptKind::Text: return ref<OptKind::Text>(f);
    case OptKind::IntList: {
      std::string s;
      for (int64_t x : ref<OptKind::IntList>(f)) {
        if (!s.empty()) s += ',';
        s += std::to_string(x);
      }
      return s.empty() ? "(none)" : s;
    }
  }
  return "";
}

std::string Options::usage(const std::vector<std::string>& group_order,
                           const std::vector<std::pair<std::string, std::string>>& help_override) const {
  std::vector<std::string> groups = group_order;
  for (const auto& r : rows_) {
    bool known = false;
    for (const auto& g : groups) known = known || g == r.spec->group;
    if (!known) groups.push_back(r.spec->group);
  }
  constexpr size_t kHelpCol = 28, kWidth = 110;
  std::string out;
  for (const auto& g : groups) {
    std::string body;
    for (size_t i = 0; i < rows_.size(); ++i) {
      const OptionSpec& s = *rows_[i].spec;
      if (g != s.group) continue;
      std::string left = "  ";
      if (s.kind == OptKind::Bool) {
        // A switch that is on by default is shown with its negation, which is what a user types.
        left += ref<OptKind::Bool>(rows_[i].field()) ? s.flag() + ", --no-" + s.flag().substr(2) : s.flag();
      } else if (s.kind == OptKind::Tri) {
        left += s.flag() + ", --no-" + s.flag().substr(2);
      } else {
        left += s.flag() + " " + (s.domain.choices ? s.domain.choices : s.metavar);
      }
      std::string help = s.help;
      for (const auto& [name, text] : help_override) {
        if (name == s.name) help = text;
      }
      const std::string value = value_text(i);
      const bool show_default = !is_switch(s.kind) && s.kind != OptKind::OptReal && !value.empty() &&
                                value != "(none)" && !s.domain.implicit;
      if (show_default) help += " (default " + value + ")";
      if (s.kind == OptKind::Bool && value == "true") help += " (default on)";
      if (left.size() + 1 > kHelpCol) {
        left += "\n" + std::string(kHelpCol, ' ');
      } else {
        left += std::string(kHelpCol - left.size(), ' ');
      }
      body += left + wrap(help, kHelpCol, kWidth) + "\n";
    }
    if (!body.empty()) out += g + "\n" + body;
  }
  return out;
}

}  // namespace rg::train
