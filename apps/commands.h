// The subcommands of the `ringgrad` command line. Each returns the process exit code.
#pragma once

#include <string>
#include <vector>

namespace rg::app {

using Args = std::vector<std::string>;

int cmd_info(const Args& args);
int cmd_demo_mlp(const Args& args);
int cmd_launch(const Args& args);
int cmd_make_data(const Args& args);
int cmd_train_classifier(const Args& args);
int cmd_train(const Args& args);
int cmd_train_detector(const Args& args);
int cmd_val(const Args& args);
int cmd_detect(const Args& args);
int cmd_bench(const Args& args);
int cmd_model(const Args& args);

// Small argument helpers: "--name value" or "--name=value".
bool has_flag(const Args& args, const std::string& name);
std::string get_opt(const Args& args, const std::string& name, const std::string& fallback);

}  // namespace rg::app
