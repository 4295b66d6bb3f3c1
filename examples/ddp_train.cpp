// A DistributedDataParallel training loop with the shape of PyTorch's DDP tutorial: process group
// from the environment, device from LOCAL_RANK, DDP wrap, DistributedSampler with set_epoch,
// backward + step, rank 0 saving an unprefixed checkpoint. Runs on CPU or GPU:
//   build/apps/ringgrad launch --nproc-per-node 2 -- build/examples/ddp_train [--epochs 5] [--amp f16|bf16]
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "autograd/autocast.h"
#include "core/cuda_api.h"
#include "core/random.h"
#include "data/distributed_sampler.h"
#include "distributed/ddp.h"
#include "nn/amp/grad_scaler.h"
#include "nn/checkpoint.h"
#include "nn/functional.h"
#include "nn/layers.h"
#include "nn/optim/sgd.h"

using namespace rg;

namespace {

struct Args {
  int epochs = 5;
  int64_t samples = 1024;
  int64_t batch_size = 32;  // per rank, as in PyTorch's DDP examples
  double lr = 0.05;
  std::string amp = "off";  // off, f16 (with a GradScaler), bf16 (no scaler needed)
  std::string checkpoint = "ddp_train.safetensors";
  bool stats = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "ddp_train: %s needs a value\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--epochs") a.epochs = std::atoi(value().c_str());
    else if (k == "--samples") a.samples = std::atoll(value().c_str());
    else if (k == "--batch-size") a.batch_size = std::atoll(value().c_str());
    else if (k == "--lr") a.lr = std::atof(value().c_str());
    else if (k == "--amp") a.amp = value();
    else if (k == "--checkpoint") a.checkpoint = value();
    else if (k == "--stats") a.stats = true;
    else {
      std::fprintf(stderr,
                   "usage: ddp_train [--epochs N] [--samples N] [--batch-size B] [--lr LR] [--amp off|f16|bf16]\n"
                   "                 [--checkpoint PATH ('' = none)] [--stats]\n");
      std::exit(k == "-h" || k == "--help" ? 0 : 2);
    }
  }
  return a;
}

// Four classes of 3x16x16 images: a fixed random template per class plus noise. Every rank makes
// the same dataset from the same seed; the sampler decides who reads what.
struct Dataset {
  Tensor images;  // (N, 3, 16, 16) f32, CPU
  Tensor labels;  // (N) i64, CPU
};

Dataset make_dataset(int64_t n) {
  Generator gen(1234);
  const Tensor templates = randn({4, 3, 16, 16}, {}, &gen);
  std::vector<int64_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[static_cast<size_t>(i)] = i % 4;
  Dataset d;
  d.labels = from_vector<int64_t>(y, {n});
  d.images = index_select(templates, 0, d.labels) + randn({n, 3, 16, 16}, {}, &gen) * 0.8;
  return d;
}

std::shared_ptr<nn::Module> make_model() {
  auto m = std::make_shared<nn::Sequential>();
  m->push_back(std::make_shared<nn::Conv2d>(3, 16, 3, nn::Conv2dOptions{.padding = 1}));
  m->push_back(std::make_shared<nn::ReLU>());
  m->push_back(std::make_shared<nn::MaxPool2d>(2));
  m->push_back(std::make_shared<nn::Conv2d>(16, 32, 3, nn::Conv2dOptions{.padding = 1}));
  m->push_back(std::make_shared<nn::ReLU>());
  m->push_back(std::make_shared<nn::AdaptiveAvgPool2d>(1));
  m->push_back(std::make_shared<nn::Flatten>());
  m->push_back(std::make_shared<nn::Linear>(32, 4));
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);

  // 1. Device from LOCAL_RANK, then the process group from the environment (MASTER_ADDR,
  //    MASTER_PORT, RANK, WORLD_SIZE, as `ringgrad launch` and torchrun set them).
  const int local_rank = dist::get_local_rank();
  Device device = kCPU;
  dist::InitOptions init;
  if (cuda::is_available()) {
    const int ngpu = cuda::device_count();
    const char* lws = std::getenv("LOCAL_WORLD_SIZE");
    const int local_world = lws ? std::atoi(lws) : 1;
    cuda::set_device(local_rank % ngpu);
    device = Device::cuda(local_rank % ngpu);
    // One GPU per rank: NCCL when built with it ("auto"); several ranks per GPU: our CUDA ring.
    init.backend = local_world <= ngpu ? "auto" : "ring";
  }
  init.device = device;
  dist::init_process_group(init);
  const int rank = dist::get_rank(), world = dist::get_world_size();

  // 2. The model on this rank's device (before wrapping), then DDP: parameters are broadcast from
  //    rank 0 and gradients averaged across ranks during backward.
  manual_seed(42);
  auto model = make_model();
  model->to(device);
  auto ddp = std::make_shared<dist::DistributedDataParallel>(model, dist::DDPOptions{});
  optim::SGD opt(ddp->parameters(), optim::SGDOptions{.lr = args.lr, .momentum = 0.9});

  // AMP: f16 needs a GradScaler whose skip decision all ranks share; bf16 needs none.
  const bool use_amp = args.amp == "f16" || args.amp == "bf16";
  amp::GradScaler scaler(amp::GradScalerOptions{.enabled = args.amp == "f16"});
  if (scaler.is_enabled()) dist::sync_grad_scaler(scaler);

  // 3. Each rank reads its shard; set_epoch reshuffles identically on every rank.
  const Dataset data = make_dataset(args.samples);
  data::DistributedSampler sampler(args.samples, world, rank);
  if (rank == 0) {
    std::printf("ddp_train: %d rank(s) on %s, %s backend, %lld samples, %lld per rank and step, amp %s\n", world,
                device.str().c_str(), ddp->process_group().backend().c_str(), static_cast<long long>(args.samples),
                static_cast<long long>(args.batch_size), args.amp.c_str());
  }

  for (int epoch = 0; epoch < args.epochs; ++epoch) {
    sampler.set_epoch(epoch);
    const std::vector<int64_t> indices = sampler.indices();
    double loss_sum = 0, correct = 0, seen = 0;
    for (size_t start = 0; start < indices.size(); start += static_cast<size_t>(args.batch_size)) {
      const size_t end = std::min(indices.size(), start + static_cast<size_t>(args.batch_size));
      const Tensor idx = from_vector<int64_t>(std::vector<int64_t>(indices.begin() + start, indices.begin() + end));
      const Tensor x = index_select(data.images, 0, idx).to(device);
      const Tensor y = index_select(data.labels, 0, idx).to(device);

      opt.zero_grad();
      Tensor logits, loss;
      {
        amp::AutocastGuard autocast(args.amp == "bf16" ? DType::bf16 : DType::f16, use_amp);
        logits = ddp->forward(x);
        loss = nn::functional::cross_entropy(logits, y);
      }
      scaler.scale(loss).backward();  // DDP's hooks allreduce the gradient buckets as they fill
      scaler.step(opt);               // a plain opt.step() without AMP
      scaler.update();

      const double n = static_cast<double>(end - start);
      loss_sum += loss.item() * n;
      const std::vector<float> l = logits.to(kCPU).to(DType::f32).to_vector<float>();
      const std::vector<int64_t> t = y.to(kCPU).to_vector<int64_t>();
      for (size_t i = 0; i < t.size(); ++i) {
        size_t best = 0;
        for (size_t c = 1; c < 4; ++c) best = l[i * 4 + c] > l[i * 4 + best] ? c : best;
        correct += best == static_cast<size_t>(t[i]);
      }
      seen += n;
    }
    // The epoch's figures over all ranks (a collective: every rank takes part).
    Tensor m = from_vector<float>({static_cast<float>(loss_sum), static_cast<float>(correct), static_cast<float>(seen)})
                   .to(device);
    ddp->process_group().allreduce(m, dist::ReduceOp::Sum)->wait();
    const std::vector<float> v = m.to(kCPU).to_vector<float>();
    if (rank == 0) std::printf("epoch %d: loss %.4f, accuracy %.3f\n", epoch, v[0] / v[2], v[1] / v[2]);
  }
  if (args.stats && rank == 0) std::printf("%s", ddp->last_stats().str().c_str());

  // 4. Rank 0 saves the WRAPPED module's weights: keys "0.weight", ..., never "module.0.weight".
  //    (A checkpoint saved from the DDP object itself loads through dist::strip_module_prefix.)
  if (!args.checkpoint.empty()) {
    if (rank == 0) {
      nn::save_safetensors(args.checkpoint, ddp->module()->state_dict());
      auto check = make_model();
      check->load_state_dict(nn::load_safetensors(args.checkpoint).tensors);  // strict: the keys match
      std::printf("saved %s (%zu tensors)\n", args.checkpoint.c_str(), ddp->module()->state_dict().size());
    }
    ddp->process_group().barrier()->wait();  // nobody leaves before the file exists
  }

  ddp.reset();
  dist::destroy_process_group();
  return 0;
}
