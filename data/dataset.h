// ClassifyDataset: what the DataLoader reads -- one (image, label) per index, thread-safe.
#pragma once

#include <cstdint>

#include "data/image.h"

namespace rg::data {

class ClassifyDataset {
 public:
  virtual ~ClassifyDataset() = default;
  virtual int64_t size() const = 0;
  virtual Image load(int64_t index) const = 0;  // errors name the sample's file
  virtual int64_t label(int64_t index) const = 0;
};

}  // namespace rg::data
