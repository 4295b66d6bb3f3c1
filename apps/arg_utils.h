// Strict option parsing for subcommands: unknown flags are errors (a typo must not silently train
// with a default), numbers are checked, and "--name value" / "--name=value" are both accepted.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "apps/commands.h"

namespace rg::app {

// Throws naming the first argument that is neither a known value flag (followed by its value, or
// written --flag=value) nor a known switch.
void check_known_flags(const Args& args, const std::vector<std::string>& value_flags,
                       const std::vector<std::string>& switches, const std::string& command);
// The value of the LAST occurrence of "--name value" / "--name=value" (so options appended to a
// script's defaults override them), or fallback.
std::string last_opt(const Args& args, const std::string& name, const std::string& fallback);
// True when the flag appears (as "--name", "--name value" or "--name=value").
bool flag_given(const Args& args, const std::string& name);
int64_t parse_int(const Args& args, const std::string& name, int64_t fallback);
double parse_double(const Args& args, const std::string& name, double fallback);

}  // namespace rg::app
