// rg::Error construction: appends the current op, its inputs and file:line to a message.
#include "core/error.h"

#include "core/tensor.h"

namespace rg {

namespace {
thread_local OpScope* g_scope = nullptr;
}

OpScope::OpScope(const char* op_name, std::initializer_list<const Tensor*> a) : op(op_name), prev(g_scope) {
  for (const Tensor* t : a) {
    if (nargs < kMaxArgs) args[nargs++] = t;
  }
  g_scope = this;
}
OpScope::~OpScope() { g_scope = prev; }

const char* current_op_name() { return g_scope ? g_scope->op : ""; }

namespace detail {
void throw_error(const char* file, int line, const std::string& msg) {
  // __FILE__ is repository-relative: CMake passes -ffile-prefix-map.
  const std::string where = std::string(file) + ":" + std::to_string(line);
  std::string full = msg;
  std::string op;
  if (g_scope) {
    op = g_scope->op;
    full += " [in op '" + op + "'";
    if (g_scope->nargs) {
      full += " with inputs: ";
      for (int i = 0; i < g_scope->nargs; ++i) {
        if (i) full += ", ";
        const Tensor* t = g_scope->args[i];
        full += (t && t->defined()) ? t->describe() : std::string("undefined");
      }
    }
    full += "]";
  }
  full += " (" + where + ")";
  throw Error(full, op, where);
}
}  // namespace detail

}  // namespace rg
