// `ringgrad make-data classify --out DIR [...]`: writes the synthetic shapes classification dataset
// (torchvision ImageFolder layout) with data/synthetic.h; idempotent for the same options.
#include <chrono>
#include <cstdio>

#include "apps/arg_utils.h"
#include "apps/commands.h"
#include "core/error.h"
#include "data/synthetic.h"

namespace rg::app {

namespace {
void make_data_usage() {
  std::printf(
      "usage: ringgrad make-data classify --out DIR [--classes 6] [--train-per-class 200]\n"
      "                 [--val-per-class 50] [--size 32] [--format png|jpg] [--seed 0]\n\n"
      "Writes DIR/train/<class>/*.png and DIR/val/<class>/*.png: coloured shapes (the class is the\n"
      "shape: circle, square, triangle, cross, ring, star, bar, hexagon; --classes takes the first N)\n"
      "on textured, noisy backgrounds, and DIR/dataset.json with the options. Re-running with the\n"
      "same options keeps the files already there.\n");
}
}  // namespace

int cmd_make_data(const Args& args) {
  if (args.empty() || has_flag(args, "-h") || has_flag(args, "--help")) {
    make_data_usage();
    return args.empty() ? 2 : 0;
  }
  const std::string kind = args[0];
  RG_CHECK(kind == "classify", "unknown dataset kind '", kind, "' (known: classify)");
  const Args rest(args.begin() + 1, args.end());
  check_known_flags(rest, {"--out", "--classes", "--train-per-class", "--val-per-class", "--size", "--format", "--seed"},
                    {}, "make-data classify");
  data::ClassifyDataOptions o;
  o.out = last_opt(rest, "--out", "");
  RG_CHECK(!o.out.empty(), "make-data classify: --out DIR is required");
  o.classes = parse_int(rest, "--classes", o.classes);
  o.train_per_class = parse_int(rest, "--train-per-class", o.train_per_class);
  o.val_per_class = parse_int(rest, "--val-per-class", o.val_per_class);
  o.size = parse_int(rest, "--size", o.size);
  o.format = last_opt(rest, "--format", o.format);
  o.seed = static_cast<uint64_t>(parse_int(rest, "--seed", 0));
  const auto t0 = std::chrono::steady_clock::now();
  const data::MakeDataResult r = data::make_classify_dataset(o, true);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("make-data: %s ready (%lld written, %lld kept) in %.1fs\n", o.out.c_str(),
              static_cast<long long>(r.written), static_cast<long long>(r.kept), s);
  return 0;
}

}  // namespace rg::app
