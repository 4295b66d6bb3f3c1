// dist_worker's fault scenarios (fault_scenarios.cpp): steps, hang-loop, stuck.
#pragma once

#include <map>
#include <string>

using FaultOpts = std::map<std::string, std::string>;

// Runs the named scenario after init_process_group and returns its exit code; -1 when `name` is
// not one of them.
int run_fault_scenario(const std::string& name, const FaultOpts& opts);
