// Devices and modes (train/devices.h, Note [Training devices]): --device parsing, what launchers
// put in the environment, the plans (one process, a rank, DataParallel, one rank per device), the
// backend choice; DataParallel over virtual CPU devices through the engine; the self-launch.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>

#include "data/synthetic.h"
#include "launch_util.h"
#include "test_util.h"
#include "toy_task.h"
#include "train/devices.h"

using rg::Device;
using rg::test::contains;
using rg::test::error_of;
using rg::train::RunKind;

namespace {
rg::train::LaunchEnv env_of(const std::map<std::string, std::string>& vars) {
  return rg::train::launch_env([&](const char* k) -> const char* {
    auto it = vars.find(k);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}
rg::dist::VisibleGpus gpus(std::vector<std::string> physical) { return rg::dist::VisibleGpus{std::move(physical)}; }
const rg::train::LaunchEnv kAlone{};
}  // namespace

TEST_CASE("--device: cpu, cuda, cuda:N, GPU numbers and lists; errors name the entry") {
  using rg::train::parse_device_list;
  CHECK(parse_device_list("cpu").devices == std::vector<Device>{rg::kCPU});
  const auto bare = parse_device_list("cuda");
  CHECK(bare.devices == std::vector<Device>{Device::cuda(0)});
  CHECK(bare.bare_cuda);
  CHECK(parse_device_list("cuda:3").devices == std::vector<Device>{Device::cuda(3)});
  CHECK_FALSE(parse_device_list("cuda:3").bare_cuda);
  CHECK(parse_device_list("2").devices == std::vector<Device>{Device::cuda(2)});
  CHECK(parse_device_list("0, 1,2,3").devices ==
        std::vector<Device>{Device::cuda(0), Device::cuda(1), Device::cuda(2), Device::cuda(3)});
  CHECK(parse_device_list("cuda:1,cuda:0").devices == std::vector<Device>{Device::cuda(1), Device::cuda(0)});
  CHECK(parse_device_list("cpu,cpu").devices == std::vector<Device>{rg::kCPU, rg::kCPU});
  CHECK(contains(error_of<std::exception>([] { parse_device_list("0,gpu1"); }), "--device 0,gpu1: 'gpu1' is not"));
  CHECK(contains(error_of<std::exception>([] { parse_device_list("cpu,0"); }), "mixes CPU and CUDA"));
  CHECK(contains(error_of<std::exception>([] { parse_device_list(""); }), "--device is empty"));
  CHECK(contains(error_of<std::exception>([] { parse_device_list("0,,1"); }), "'' is not"));
}

TEST_CASE("launch environment: torchrun's, Slurm's and Open MPI's variables, in init_process_group's order") {
  CHECK_FALSE(env_of({}).launched());
  auto t = env_of({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "4"}});
  CHECK(t.launched());
  CHECK((t.rank == 3 && t.world == 8 && t.local_rank == 1 && t.local_world == 4));
  CHECK_FALSE(env_of({{"RANK", "0"}, {"WORLD_SIZE", "1"}}).launched());  // a launcher of one: one process
  auto s = env_of({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "6"}, {"SLURM_LOCALID", "2"}, {"SLURM_STEP_TASKS_PER_NODE", "3(x2)"}});
  CHECK(s.launcher == "Slurm (srun)");
  CHECK((s.rank == 5 && s.world == 6 && s.local_rank == 2 && s.local_world == 3));
  auto m = env_of({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                   {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}, {"SLURM_PROCID", "0"}});
  CHECK(m.launcher == "Slurm (srun)");  // Slurm's variables come before Open MPI's
  auto m2 = env_of({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}});
  CHECK((m2.launcher == "Open MPI (mpirun)" && m2.rank == 1 && m2.local_world == 2));
  CHECK(contains(error_of<std::exception>([] { env_of({{"RANK", "x"}, {"WORLD_SIZE", "2"}}); }),
                 "RANK=x is not a non-negative integer"));
}

TEST_CASE("device plans: one process, DataParallel, one rank per device, and a launched rank's device") {
  using rg::train::plan_devices;
  auto p = plan_devices("cpu", "ddp", false, kAlone, gpus({}));
  CHECK((p.kind == RunKind::Single && p.devices == std::vector<Device>{rg::kCPU}));
  CHECK(plan_devices("cpu", "ddp", true, kAlone, gpus({})).kind == RunKind::Rank);  // --distributed: a world of one
  CHECK(plan_devices("cuda", "ddp", false, kAlone, gpus({"0"})).devices == std::vector<Device>{Device::cuda(0)});

  // Several devices, not launched: ddp starts a rank per device; dp runs one process.
  const auto two = gpus({"3", "5"});  // CUDA_VISIBLE_DEVICES=3,5: renumbered 0, 1
  auto sl = plan_devices("0,1", "ddp", false, kAlone, two);
  CHECK(sl.kind == RunKind::SelfLaunch);
  CHECK(sl.devices == std::vector<Device>{Device::cuda(0), Device::cuda(1)});
  CHECK(contains(sl.table, "DDP: starting 2 ranks, one per device"));
  CHECK(contains(sl.table, "rank 1 -> cuda:1 (physical GPU 5)"));
  auto dp = plan_devices("1,0", "dp", false, kAlone, two);
  CHECK(dp.kind == RunKind::DataParallel);
  CHECK(dp.devices == std::vector<Device>{Device::cuda(1), Device::cuda(0)});
  CHECK(contains(dp.table, "replica 0 -> cuda:1 (physical GPU 5), holds the model"));
  CHECK(plan_devices("cpu,cpu", "ddp", false, kAlone, gpus({})).kind == RunKind::SelfLaunch);
  CHECK(plan_devices("cpu,cpu,cpu", "dp", false, kAlone, gpus({})).devices.size() == 3);
  CHECK(contains(error_of<std::exception>([&] { plan_devices("0,1,2", "ddp", false, kAlone, two); }),
                 "--device 0,1,2 names cuda:2 but 2 GPU(s) are visible (physical 3,5, renumbered from 0)"));

  // Launched: local rank r takes entry r; "cuda" is cuda:LOCAL_RANK mod the GPUs; one device is shared.
  const auto r1 = env_of({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"}});
  auto a = plan_devices("2,3", "ddp", false, r1, gpus({"0", "1", "2", "3"}));
  CHECK((a.kind == RunKind::Rank && a.devices == std::vector<Device>{Device::cuda(3)} && a.distinct_gpus));
  auto b = plan_devices("0,0", "ddp", false, r1, two);
  CHECK((b.devices == std::vector<Device>{Device::cuda(0)} && !b.distinct_gpus));  // two ranks share GPU 0
  const auto r3 = env_of({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "3"}, {"LOCAL_WORLD_SIZE", "4"}});
  auto c = plan_devices("cuda", "ddp", false, r3, two);
  CHECK((c.devices == std::vector<Device>{Device::cuda(1)} && !c.distinct_gpus));
  CHECK(plan_devices("cuda", "ddp", false, r1, two).distinct_gpus);
  CHECK(plan_devices("cpu,cpu", "ddp", false, r1, gpus({})).devices == std::vector<Device>{rg::kCPU});
  CHECK(contains(error_of<std::exception>([&] { plan_devices("0,1,2", "ddp", false, r1, gpus({"0", "1", "2"})); }),
                 "--device 0,1,2 names 3 devices for the 2 rank(s) on this node"));
  CHECK(contains(error_of<std::exception>([&] { plan_devices("cpu", "dp", false, r1, gpus({})); }),
                 "--mode dp runs DataParallel in one process, but this is rank 1 of 2"));
}

TEST_CASE("backend: ring on CPU, nccl when every rank has its own GPU and NCCL is built, else the CUDA ring") {
  using rg::train::choose_backend;
  CHECK(choose_backend("auto", rg::kCPU, false, true, "") == "ring");
  CHECK(choose_backend("auto", Device::cuda(0), true, true, "") == "nccl");
  CHECK(choose_backend("auto", Device::cuda(0), false, true, "") == "ring");
  CHECK(choose_backend("auto", Device::cuda(0), true, false, "") == "ring");
  CHECK(choose_backend("auto", Device::cuda(0), false, true, "nccl") == "nccl");  // ringgrad launch --backend nccl
  CHECK(choose_backend("ring", Device::cuda(0), true, true, "") == "ring");
  CHECK(contains(error_of<std::exception>([] { choose_backend("nccl", rg::kCPU, false, true, ""); }),
                 "--backend nccl needs CUDA devices"));
}

TEST_CASE("--mode dp over two virtual CPU devices takes the single-process steps (toy task, engine)") {
  rg::test::ScratchDir d("rg_train_dp_");
  rg::test::ToyConfig c;
  c.epochs = 2;
  c.batch_size = 8;
  c.lr = 0.1;
  c.out = d / "one";
  const auto one = rg::test::train_toy(c);
  c.device = "cpu,cpu";
  c.mode = "dp";
  c.out = d / "dp";
  const auto dp = rg::test::train_toy(c);
  CHECK(dp.global_step == one.global_step);
  const auto x = rg::nn::load_safetensors(one.last_path), y = rg::nn::load_safetensors(dp.last_path);
  double worst = 0;
  int64_t keys = 0;
  for (const auto& [k, t] : x.tensors) {
    if (k.rfind("optimizer.", 0) == 0) continue;
    const rg::Tensor* u = rg::nn::find(y.tensors, k);
    REQUIRE_MESSAGE(u != nullptr, k);  // no "module." prefix either
    const auto a = t.to_vector<double>(), b = u->to_vector<double>();
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / std::max(1e-3, std::abs(a[i])));
    ++keys;
  }
  MESSAGE("DataParallel(cpu, cpu) vs one process after 8 SGD steps: largest relative difference ", worst);
  CHECK(keys == 4);
  CHECK(worst < 1e-5);
}

TEST_CASE("train-classifier --device cpu,cpu starts one rank per device itself (command line)") {
  rg::test::ScratchDir d("rg_train_selflaunch_");
  rg::data::ClassifyDataOptions o;
  o.out = d / "data";
  o.classes = 3;
  o.train_per_class = 16;
  o.val_per_class = 5;
  o.size = 16;
  rg::data::make_classify_dataset(o, false);
  const std::string cmd = "OMP_NUM_THREADS=1 " + rg::test::ringgrad_bin() + " train-classifier --data " + (d / "data") +
                          " --small-input --width 4 --epochs 1 --batch-size 8 --workers 0 --quiet --device cpu,cpu --out " +
                          (d / "run") + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof(buf), p)) out += buf;
  const int status = ::pclose(p);
  INFO(out);
  REQUIRE(WEXITSTATUS(status) == 0);
  CHECK(contains(out, "DDP: starting 2 ranks, one per device:\n  rank 0 -> cpu\n  rank 1 -> cpu"));
  CHECK(contains(out, "distributed: 2 rank(s) (2 on this node), backend ring, device cpu, batch 8 per rank = 16 global"));
  const auto ck = rg::nn::load_safetensors(d / "run/last.safetensors");
  const rg::Json t = rg::Json::parse(*ck.meta("trainer"));
  CHECK(t["world_size"].as_int() == 2);
  CHECK(t["global_step"].as_int() == 3);  // 48 images over 2 ranks in batches of 8
  CHECK(t["config"]["device"].as_string() == "cpu,cpu");
}
