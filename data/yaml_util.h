// yaml-cpp helpers shared by data.yaml and the augmentation hyperparameter files: loading with
// errors that name the file and line, and typed reads that name the key.
#pragma once

#include <string>

#include <yaml-cpp/yaml.h>

namespace rg::data {

// Parses a YAML file; errors read "<file>: line L, column C: <what>" (or name the unreadable file).
YAML::Node load_yaml_file(const std::string& path);

// "<file>:<line>" of a node (1-based), or the file alone when the node has no mark.
std::string yaml_where(const std::string& file, const YAML::Node& node);

// Typed scalar reads; throw naming file, line, key and the value found.
double yaml_double(const YAML::Node& node, const std::string& key, const std::string& file);
int64_t yaml_int(const YAML::Node& node, const std::string& key, const std::string& file);
std::string yaml_string(const YAML::Node& node, const std::string& key, const std::string& file);

}  // namespace rg::data
