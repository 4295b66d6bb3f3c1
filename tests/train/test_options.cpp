// The options table (train/options.h): parsing, JSON round trips, the usage text, domain checks
// with PyTorch's wording for every numeric option and every choice, and the --data policy.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "apps/tasks/classify.h"
#include "launch_util.h"
#include "test_util.h"
#include "toy_task.h"
#include "train/cli.h"
#include "train/data_util.h"

namespace fs = std::filesystem;
using rg::test::contains;
using rg::test::error_of;
using rg::test::ToyConfig;
using rg::train::Options;

namespace {
std::string check_error(ToyConfig c) {
  return error_of<std::exception>([&] { c.bind().check(); }, "(no error)");
}
// The error of checking a config after parsing `args` into it.
std::string domain_error(const std::vector<std::string>& args) {
  ToyConfig c;
  Options o = c.bind();
  o.apply(o.parse(args, "toy"));
  return check_error(c);
}
}  // namespace

TEST_CASE("options: switches, values, --name=value, negations, optional values; the last occurrence wins") {
  ToyConfig c;
  Options o = c.bind();
  o.apply(o.parse({"--epochs", "3", "--lr=0.5", "--ema", "--no-decay-norm-bias", "--milestones", "2,4", "--epochs",
                   "5", "--make-data", "--resume", "--seed", "7", "--samples", "40", "--lr", "-1", "--device=cpu,cpu"},
                  "toy"));
  CHECK(c.epochs == 5);
  REQUIRE(c.lr.has_value());
  CHECK(*c.lr == -1.0);  // parsed; the domain check refuses it later
  CHECK(c.ema);
  CHECK_FALSE(c.decay_norm_bias);
  CHECK(c.milestones == std::vector<int64_t>{2, 4});
  CHECK(c.make_data == std::optional<bool>(true));
  CHECK(c.resume == "last");  // bare: the trainer's OUT/last.safetensors
  CHECK(c.seed == 7);
  CHECK(c.samples == 40);
  CHECK(c.device == "cpu,cpu");
  o.apply(o.parse({"--no-make-data", "--resume", "ck.safetensors", "--ema=false", "--decay-norm-bias"}, "toy"));
  CHECK(c.make_data == std::optional<bool>(false));
  CHECK(c.resume == "ck.safetensors");
  CHECK_FALSE(c.ema);
  CHECK(c.decay_norm_bias);
  o.apply(o.parse({"--resume"}, "toy"));  // bare at the end
  CHECK(c.resume == "last");
}

TEST_CASE("options: unknown flags, missing values and malformed numbers are errors naming them") {
  ToyConfig c;
  Options o = c.bind();
  auto err = [&](const std::vector<std::string>& a) {
    return error_of<std::exception>([&] { o.apply(o.parse(a, "toy")); }, "(no error)");
  };
  CHECK(contains(err({"--epoch", "3"}), "toy: unknown argument '--epoch' (see `ringgrad toy --help`)"));
  CHECK(contains(err({"stray"}), "unknown argument 'stray'"));
  CHECK(contains(err({"--no-epochs"}), "unknown argument '--no-epochs'"));  // not a switch
  CHECK(contains(err({"--epochs"}), "toy: option --epochs needs a value"));
  CHECK(contains(err({"--epochs", "3x"}), "option --epochs expects an integer, got '3x'"));
  CHECK(contains(err({"--epochs", "99999999999999999999"}), "expects an integer"));
  CHECK(contains(err({"--lr", "1e"}), "option --lr expects a finite number, got '1e'"));
  CHECK(contains(err({"--lr", "nan"}), "expects a finite number, got 'nan'"));
  CHECK(contains(err({"--momentum=inf"}), "expects a finite number"));
  CHECK(contains(err({"--ema=maybe"}), "option --ema expects true or false, got 'maybe'"));
  CHECK(contains(err({"--no-ema=1"}), "--no-ema takes no value"));
  CHECK(contains(err({"--milestones", "1,x"}), "--milestones expects comma-separated integers, got '1,x'"));
}

TEST_CASE("options: out-of-domain values name the option, with PyTorch's wording where it has one") {
  CHECK(contains(domain_error({"--lr", "-1"}), "Invalid learning rate: -1 (--lr must be >= 0)"));
  CHECK(contains(domain_error({"--weight-decay", "-0.1"}), "Invalid weight_decay value: -0.1 (--weight-decay must be >= 0)"));
  CHECK(contains(domain_error({"--momentum", "1"}), "Invalid momentum value: 1 (--momentum must be in [0, 1))"));
  CHECK(contains(domain_error({"--epochs", "0"}), "Invalid --epochs: 0 (must be an integer >= 1)"));
  CHECK(contains(domain_error({"--ema-decay", "1"}), "Invalid --ema-decay: 1 (must be in (0, 1))"));
  CHECK(contains(domain_error({"--gamma", "0"}), "Invalid --gamma: 0 (must be > 0)"));
  CHECK(contains(domain_error({"--verbosity", "3"}), "Invalid --verbosity: 3 (must be an integer in [0, 2])"));
  CHECK(contains(domain_error({"--milestones", "3,-1"}), "Invalid --milestones: -1"));
  CHECK(contains(domain_error({"--samples", "1"}), "Invalid --samples: 1 (must be an integer >= 2)"));  // a task row
  CHECK(contains(domain_error({"--optimizer", "sgdd"}), "Invalid --optimizer: 'sgdd' (one of sgd, adam, adamw)"));
  CHECK(contains(domain_error({"--mode", "fsdp"}), "Invalid --mode: 'fsdp' (one of ddp, dp)"));
  CHECK(domain_error({"--lr", "0", "--epochs", "1", "--momentum", "0.999"}) == "(no error)");  // edges inside
}

// Every numeric row of every table has a bounded domain, and a value just outside it is refused
// naming the option; every text row is a choice unless it is free text by nature.
TEST_CASE("options: every numeric option's domain and every choice of the classifier's command is checked") {
  rg::app::ClassifyConfig cfg;
  Options o = cfg.bind();
  const std::vector<std::string> free_text = {"data", "device", "out", "resume", "task"};
  int numeric = 0, choices = 0;
  for (size_t r = 0; r < o.size(); ++r) {
    const rg::train::OptionSpec& s = o.spec_at(r);
    const rg::train::Domain& d = s.domain;
    std::string bad;
    switch (s.kind) {
      case rg::train::OptKind::Int:
      case rg::train::OptKind::Real:
      case rg::train::OptKind::OptReal:
      case rg::train::OptKind::IntList: {
        const bool lo = std::isfinite(d.lo), hi = std::isfinite(d.hi);
        INFO(s.name);
        REQUIRE_MESSAGE((lo || hi), s.name, " has no bound");
        const bool integer = s.kind == rg::train::OptKind::Int || s.kind == rg::train::OptKind::IntList;
        const double step = integer ? 1.0 : 1e-3;
        const double v = lo ? (d.lo_open ? d.lo : d.lo - step) : (d.hi_open ? d.hi : d.hi + step);
        char buf[64];
        std::snprintf(buf, sizeof(buf), integer ? "%.0f" : "%.17g", v);
        bad = buf;
        ++numeric;
        break;
      }
      case rg::train::OptKind::Text:
        if (!d.choices) {
          CHECK_MESSAGE(std::find(free_text.begin(), free_text.end(), s.name) != free_text.end(), s.name,
                        " is free text but not listed as such");
          continue;
        }
        bad = "no-such-choice";
        ++choices;
        break;
      default: continue;
    }
    rg::app::ClassifyConfig c;
    Options oc = c.bind();
    oc.apply(oc.parse({s.flag(), bad}, "train-classifier"));
    const std::string e = error_of<std::exception>([&] { oc.check(); }, "(no error)");
    INFO(s.flag(), " ", bad);
    CHECK(contains(e, "Invalid "));
    CHECK((contains(e, s.flag()) || (d.what && contains(e, d.what))));
  }
  MESSAGE(numeric, " numeric options and ", choices, " choices checked");
  CHECK(numeric >= 20);
  CHECK(choices >= 7);
}

TEST_CASE("options: the Saved options round-trip through JSON; RunOnly ones are not saved") {
  ToyConfig c;
  c.epochs = 7;
  c.lr = 0.125;
  c.momentum = 0.937;
  c.milestones = {3, 5};
  c.ema = true;
  c.optimizer = "adamw";
  c.samples = 12;
  c.stop_after_epochs = 2;  // RunOnly
  c.resume = "x.safetensors";
  c.verbosity = 1;
  const rg::Json j = c.bind().to_json();
  CHECK(j.find("stop_after_epochs") == nullptr);
  CHECK(j.find("resume") == nullptr);
  CHECK(j.find("verbosity") == nullptr);
  CHECK(j["lr"].as_double() == 0.125);
  CHECK(j["weight_decay"].is_null());  // unset: chosen by the task
  CHECK(j["samples"].as_int() == 12);  // the task's table too
  ToyConfig d;
  d.bind().from_json(rg::Json::parse(j.dump()), "test");
  CHECK(d.bind().to_json().dump() == j.dump());
  CHECK(d.epochs == 7);
  CHECK(d.milestones == std::vector<int64_t>{3, 5});
  CHECK(d.stop_after_epochs == 0);  // not inherited
  CHECK_FALSE(d.weight_decay.has_value());

  rg::Json bad = rg::Json::object();
  bad.set("epochz", int64_t{3});
  CHECK(contains(error_of<std::exception>([&] { d.bind().from_json(bad, "ck.safetensors"); }),
                 "ck.safetensors: unknown option 'epochz' in the saved options"));
  rg::Json wrong = rg::Json::object();
  wrong.set("epochs", "three");
  CHECK(contains(error_of<std::exception>([&] { d.bind().from_json(wrong, "ck"); }),
                 "ck: saved option 'epochs' = \"three\" is not an integer"));
}

TEST_CASE("options: a classifier config saved before the engine existed loads with the same values") {
  // The "config" of a checkpoint written by the classifier before train/ (every key it had, none since).
  const char* old = R"({"data":"data_gen/shapes-classify","model":"resnet34","small_input":true,"width":16,)"
                    R"("num_classes":0,"img_size":0,"epochs":12,"batch_size":32,"lr":0.003,"momentum":0.9,)"
                    R"("weight_decay":0.01,"optimizer":"adamw","scheduler":"multistep","milestones":[4,8],)"
                    R"("step_size":0,"gamma":0.1,"warmup_epochs":0.5,"label_smoothing":0.1,"augment":false,)"
                    R"("device":"cpu","amp":"none","workers":2,"seed":5,"ema":true,"ema_decay":0.99,)"
                    R"("flush_denormal":false,"out":"runs/classify","sync_bn":false,"bucket_cap_mb":25,)"
                    R"("find_unused_parameters":false})";
  rg::app::ClassifyConfig c;
  c.bind().from_json(rg::Json::parse(old), "old");
  CHECK(c.model == "resnet34");
  CHECK(c.width == 16);
  CHECK(*c.lr == 0.003);
  CHECK(*c.weight_decay == 0.01);
  CHECK(c.milestones == std::vector<int64_t>{4, 8});
  CHECK(c.label_smoothing == 0.1);
  CHECK_FALSE(c.augment);
  CHECK(c.ema_decay == 0.99);
  CHECK(c.seed == 5);
  // The keys added since take the classifier's defaults, which are its behaviour before them.
  CHECK(c.decay_norm_bias);
  CHECK(c.warmup == "linear");
  CHECK(c.accumulate == 0);
  CHECK(c.lrf == 0.0);
  CHECK(c.mode == "ddp");
  CHECK(c.bind().to_json().find("label_smoothing") != nullptr);
  CHECK_NOTHROW(c.bind().check());
}

TEST_CASE("options: the usage lists every option, with the task's defaults") {
  rg::app::ClassifyConfig cfg;
  rg::train::CommandSpec spec;
  spec.command = "train-classifier";
  spec.synopsis = "usage: ringgrad train-classifier [options]\n";
  spec.help_override = {{"batch_size", "images per micro-batch, per rank"}};
  const Options o = cfg.bind();
  const std::string u = rg::train::command_usage(spec, o);
  for (size_t r = 0; r < o.size(); ++r) {
    const auto& s = o.spec_at(r);
    CHECK_MESSAGE(contains(u, "  " + s.flag()), s.flag());
    if (s.kind == rg::train::OptKind::Tri) CHECK(contains(u, "--no-" + s.flag().substr(2)));
  }
  CHECK(contains(u, "--no-augment"));
  CHECK(contains(u, "--optimizer sgd|adam|adamw"));
  CHECK(contains(u, "(default adamw)"));          // the classifier's default, not the engine's sgd
  CHECK(contains(u, "(default runs/classify)"));
  CHECK(contains(u, "images per micro-batch, per rank (default 32)"));
  CHECK(contains(u, "\ndistributed\n"));
}

TEST_CASE("--data policy: a missing path is an error naming it; synthetic data only at the default location or on request") {
  using rg::train::should_make_data;
  const std::string def = "data_gen/shapes-classify";
  CHECK_FALSE(should_make_data("/data/x", true, def, std::nullopt, "X"));
  CHECK_FALSE(should_make_data("/data/x", true, def, true, "X"));
  CHECK(should_make_data(def, false, def, std::nullopt, "X"));
  CHECK(should_make_data("./data_gen//shapes-classify", false, def, std::nullopt, "X"));
  CHECK(should_make_data("/tmp/mine", false, def, true, "X"));
  const std::string e = error_of<std::exception>([&] { should_make_data("/nonexistent/shapes", false, def, std::nullopt, "E"); });
  CHECK(contains(e, "no dataset at '/nonexistent/shapes' (expected E)"));
  CHECK(contains(e, "--make-data"));
  CHECK(contains(error_of<std::exception>([&] { should_make_data(def, false, def, false, "E"); }), "--no-make-data"));
}

TEST_CASE("--data: train-classifier on a mistyped path fails naming it and creates nothing (API and command line)") {
  rg::test::ScratchDir d("rg_train_data_");
  const std::string typo = d / "shapes-clasify";
  rg::app::ClassifyConfig c;
  c.data = typo;
  c.out = d / "run";
  c.verbosity = 0;
  const std::string e = error_of<std::exception>([&] { rg::app::train_classifier(c); });
  CHECK(contains(e, "no dataset at '" + typo + "'"));
  CHECK_FALSE(fs::exists(typo));

  const std::string cmd = rg::test::ringgrad_bin() + " train-classifier --data " + typo + " --out " + (d / "run") + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof(buf), p)) out += buf;
  const int status = ::pclose(p);
  CHECK(WEXITSTATUS(status) == 1);
  CHECK(contains(out, "ringgrad train-classifier: error: no dataset at '" + typo + "'"));
  CHECK_FALSE(fs::exists(typo));
  CHECK_FALSE(fs::exists(d / "run"));
}
