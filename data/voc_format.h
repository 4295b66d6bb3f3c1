// Pascal VOC: one Annotations/<id>.xml per image (object/name, object/difficult, object/bndbox in
// 1-based pixels), read with expat, checked (Note [Bad labels]) and cached (Note [Label cache]).
#pragma once

#include <string>
#include <vector>

#include "data/detection.h"

namespace rg::data {

// The 20 PASCAL VOC classes in their customary order (aeroplane, bicycle, bird, ... tvmonitor).
const std::vector<std::string>& voc_classes();

// Reads ROOT/Annotations/<id>.xml for the ids of ROOT/ImageSets/Main/<image_set>.txt (every xml of
// Annotations/ when image_set is empty); images are ROOT/JPEGImages/<filename> (<id>.jpg without a
// filename element). classes: the class list, index = class id; empty: the sorted names found in
// the xml files. Boxes map to Note [Box coordinates] as x1 = xmin - 1, x2 = xmax; difficult
// objects are left out unless opts.keep_difficult. The label cache is ROOT/Annotations.<image_set>.cache
// (ROOT/Annotations.cache without an image set).
DetectionDataset load_voc(const std::string& root, const std::string& image_set, std::vector<std::string> classes = {},
                          const LabelCheckOptions& opts = {});

}  // namespace rg::data
