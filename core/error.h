// rg::Error and the checks that raise it. An error names the op that was running (from the
// thread's OpScope), its inputs' shapes, dtypes and devices, and the file:line of the check.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace rg {

class Tensor;

class Error : public std::runtime_error {
 public:
  Error(std::string msg, std::string op, std::string where)
      : std::runtime_error(msg), op_(std::move(op)), where_(std::move(where)) {}
  const std::string& op() const { return op_; }
  const std::string& where() const { return where_; }

 private:
  std::string op_, where_;
};

// Note [OpScope]
// Every native op opens an OpScope naming itself and (pointers to) its input tensors. It costs
// two stores; nothing is formatted unless a check fails, and then the message gets
// "in op 'add' (inputs: float32[2, 3] cpu, float32[4] cpu)". Scopes nest; the innermost wins.
struct OpScope {
  static constexpr int kMaxArgs = 4;
  OpScope(const char* op, std::initializer_list<const Tensor*> args = {});
  ~OpScope();
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

  const char* op;
  const Tensor* args[kMaxArgs] = {};
  int nargs = 0;
  OpScope* prev;
};
const char* current_op_name();  // "" outside any op

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
[[noreturn]] void throw_error(const char* file, int line, const std::string& msg);
}  // namespace detail

}  // namespace rg

#define RG_CHECK(cond, ...)                                                            \
  do {                                                                                 \
    if (!(cond)) ::rg::detail::throw_error(__FILE__, __LINE__, ::rg::detail::concat(__VA_ARGS__)); \
  } while (0)

#define RG_THROW(...) ::rg::detail::throw_error(__FILE__, __LINE__, ::rg::detail::concat(__VA_ARGS__))
