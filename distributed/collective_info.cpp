// Names of reduce ops and the one-line description of a collective used in errors.
#include "distributed/process_group.h"

namespace rg::dist {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Avg: return "avg";
    case ReduceOp::Max: return "max";
  }
  return "?";
}

std::string CollectiveInfo::describe() const {
  if (std::string(op) == "barrier") return "barrier #" + std::to_string(seq) + " " + device.str();
  return std::string(op) + " #" + std::to_string(seq) + " " + dtype_name(dtype) + shape_str(shape) + " " +
         device.str();
}

}  // namespace rg::dist
