// Samplers and the DataLoader: worker threads decode and augment samples into u8 (B, C, H, W)
// batches (pinned for CUDA), in order, through a bounded prefetch queue; the consumer moves a batch
// to its device asynchronously and normalises it there. Classification and detection batches
// (data/detection_loader.h) come from the same loader through a batch function.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/tensor.h"
#include "data/box.h"
#include "data/dataset.h"
#include "data/distributed_sampler.h"
#include "data/image.h"
#include "data/sample_rng.h"

namespace rg::data {

// ---- samplers: the dataset indices of one epoch, in order.
class Sampler {
 public:
  virtual ~Sampler() = default;
  virtual std::vector<int64_t> indices(int64_t epoch) const = 0;
  virtual int64_t size() const = 0;  // len(sampler): the length of indices(epoch) for every epoch
};

// 0, 1, ..., n-1 every epoch.
class SequentialSampler : public Sampler {
 public:
  explicit SequentialSampler(int64_t n) : n_(n) {}
  std::vector<int64_t> indices(int64_t epoch) const override;
  int64_t size() const override { return n_; }

 private:
  int64_t n_;
};

// A permutation keyed by seed + epoch (shuffled_indices, the same one DistributedSampler uses,
// so a one-rank DistributedSampler and a RandomSampler with the same seed agree).
class RandomSampler : public Sampler {
 public:
  RandomSampler(int64_t n, uint64_t seed) : n_(n), seed_(seed) {}
  std::vector<int64_t> indices(int64_t epoch) const override;
  int64_t size() const override { return n_; }
  uint64_t seed() const { return seed_; }

 private:
  int64_t n_;
  uint64_t seed_;
};

// This rank's share (Note [DistributedSampler semantics]); the epoch passed in replaces set_epoch.
class DistributedSamplerAdapter : public Sampler {
 public:
  explicit DistributedSamplerAdapter(DistributedSampler s) : s_(std::move(s)) {}
  std::vector<int64_t> indices(int64_t epoch) const override;
  int64_t size() const override { return s_.num_samples(); }
  const DistributedSampler& sampler() const { return s_; }

 private:
  DistributedSampler s_;
};

// Note [Corrupt samples]
// A sample whose image fails to load (a truncated JPEG, an unreadable file) must not kill a long
// run. The dataset's load throws SampleLoadError naming the file (ImageFolder, and the detection
// pipeline around DetectionDataset::load); the batch function then replaces the sample by
// replacement_index(...): another index of the same rank's shard of the epoch (the loader's order,
// BatchRequest::shard), drawn from SampleRng(mix(seed ^ tag), epoch, index) -- a function of
// (seed, epoch, index) and the shard alone, so a resumed run and any worker count make the same
// batch. The replacement is loaded and transformed as that index is normally (its own label,
// boxes and SampleRng); should it fail as well, the next draw is taken (at most 16). Each failure
// is recorded in Batch::corrupt, which the DataLoader collects for take_corrupt() (the training
// engine names them in the epoch summary and counts them in results.csv). With strict (the
// engine's --strict-data) the first failure is an error naming the file.
class SampleLoadError : public Error {
 public:
  SampleLoadError(const std::string& path, const std::string& why)
      : Error(why, "", ""), path_(path) {}
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct CorruptSample {
  int64_t index = 0;        // the dataset index that failed
  int64_t replacement = -1; // what replaced it (-1: nothing could)
  std::string path;         // its file
  std::string error;        // why
};

// The index that stands in for `index` after `attempt` (1, 2, ...) failed loads: an element of
// `shard` other than `index` when it has one (Note [Corrupt samples]).
int64_t replacement_index(uint64_t seed, int64_t epoch, int64_t index, int attempt, const std::vector<int64_t>& shard);
inline constexpr int kMaxReplacements = 16;

// The per-sample transform: the image and its SampleRng(seed, epoch, index).
using ImageTransform = std::function<Image(const Image&, SampleRng&)>;

// One batch. On the host, in pinned memory when asked: images (B, C, H, W) u8 and, for
// classification, labels (B) i64; for detection, targets (N, 6) f32 and one ImageInfo per image
// (Note [Detection batches]). After to_device: the tensors on the device; host copies stay alive
// (in `hold`) until the copies have finished (Note [Async batch copies]).
struct Batch {
  Tensor images;                 // (B, C, H, W) u8
  Tensor labels;                 // (B) i64 (classification; undefined for detection)
  Tensor targets;                // (N, 6) f32 [image in batch, class, cx, cy, w, h] (detection; else undefined)
  std::vector<ImageInfo> info;   // per image (detection)
  std::vector<int64_t> indices;  // the dataset indices, in batch order
  int64_t batch_index = 0;       // position in the epoch
  std::shared_ptr<void> hold;
  std::vector<CorruptSample> corrupt;  // samples replaced in this batch (Note [Corrupt samples])
};

// A host tensor for a batch, page-locked when `pinned` (through the pinned caching allocator, which
// reuses blocks of equal size). round_up: a pinned block of the next power of two bytes (>= 4 KiB),
// so that tensors whose size changes every batch (detection targets) reuse a few cached blocks.
Tensor empty_host(const Shape& shape, DType dtype, bool pinned, bool round_up = false);

// What a batch function is asked for: batch `batch_index` of `epoch`, made of these dataset
// indices (Note [Loader determinism]); `seed` is the loader's; `pinned` asks for page-locked tensors.
struct BatchRequest {
  const std::vector<int64_t>& indices;
  int64_t epoch = 0;
  int64_t batch_index = 0;
  uint64_t seed = 0;
  bool pinned = false;
  const std::vector<int64_t>* shard = nullptr;  // the loader's indices of this epoch (replacements)
  bool strict = false;                          // a sample that fails to load is an error
};
// Builds a batch; called concurrently from the worker threads.
using BatchFn = std::function<Batch(const BatchRequest&)>;

// Note [Async batch copies]
// to_device issues both host-to-device copies with async = true on the device's current stream
// (pinned source memory makes them truly asynchronous), records an event after them, and keeps
// the host tensors in Batch::hold, whose destructor waits for that event: the pinned block can
// only go back to the pinned cache (and be refilled by a worker) once the copy has read it. Kernels
// that use the device tensors are queued on the same stream, so they see the data without a host wait.
Batch to_device(const Batch& b, Device device);

struct DataLoaderOptions {
  int64_t batch_size = 32;
  bool drop_last = false;
  int workers = 2;          // 0: load in the calling thread
  int prefetch_batches = 0; // batches made ahead of the consumer; 0 = 2 * max(workers, 1)
  bool pin_memory = false;  // page-locked host batches (for CUDA), Note [Pinned batches' device]
  uint64_t seed = 0;        // the augmentation seed (Note [Per-sample randomness])
  bool strict_data = false; // a sample that fails to load is an error instead of replaced (Note [Corrupt samples])
};

// Note [Pinned batches' device]
// cudaHostAlloc runs in the thread that builds a batch, and a thread's current device is cuda:0
// until it sets one: a worker allocating there would create a CUDA context on cuda:0 for every
// process (hundreds of MiB each on GPU 0 when each rank trains on its own GPU). The loader
// therefore records the current device of the thread that constructs it (with pin_memory and a
// GPU present) and makes it the current device of each worker thread (workers = 0 builds in the
// calling thread, under its own current device).

// Note [Loader determinism]
// Batch b of epoch e holds the samples sampler.indices(e)[b*B, (b+1)*B), each transformed with
// SampleRng(seed, e, dataset index), and whatever the batch as a whole needs (a detection batch's
// multi-scale size, Note [Multi-scale]) comes from (seed, e, b): its content depends on nothing
// else -- not on the worker count, on which worker made it, on timing, or on whether the epoch was
// started at batch b by a resumed run. Workers claim batch numbers in increasing order and the
// consumer receives them in that order; a worker's exception is rethrown to the consumer at that batch.
class DataLoader {
 public:
  // Classification: (image, label) samples through `transform`, collated into images + labels.
  DataLoader(std::shared_ptr<const ClassifyDataset> dataset, std::shared_ptr<const Sampler> sampler,
             ImageTransform transform, DataLoaderOptions options);
  // Any batch kind: `make` builds each batch from its indices (detection: detection_batch_fn).
  DataLoader(std::shared_ptr<const Sampler> sampler, BatchFn make, DataLoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t num_batches() const;  // per epoch
  int64_t num_samples() const { return sampler_->size(); }
  const DataLoaderOptions& options() const { return opts_; }

  // Starts epoch `epoch` at batch `start_batch` (stopping any epoch in progress).
  void start_epoch(int64_t epoch, int64_t start_batch = 0);
  // The next batch of the current epoch, in order; false at its end.
  bool next(Batch* out);

  // Makes batch `b` of `epoch` synchronously, as a worker would (tests compare against it).
  Batch make_batch(int64_t epoch, int64_t b) const;

  // The samples replaced in the batches next() returned since the last call (Note [Corrupt samples]).
  std::vector<CorruptSample> take_corrupt();

 private:
  Batch build(const std::vector<int64_t>& order, int64_t epoch, int64_t b) const;
  void stop_workers();
  void worker_loop();

  std::shared_ptr<const Sampler> sampler_;
  BatchFn make_;
  DataLoaderOptions opts_;
  int pin_device_ = -1;  // the CUDA device pinned batches are allocated under; -1: none

  // the current epoch
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  int64_t nbatches_ = 0;
  int64_t next_claim_ = 0;    // next batch number a worker takes
  int64_t next_consume_ = 0;  // next batch number the consumer returns
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };
  std::map<int64_t, Slot> ready_;
  std::vector<CorruptSample> corrupt_;  // the consumer's (next() and take_corrupt() run on one thread)
  std::mutex mu_;
  std::condition_variable cv_work_, cv_ready_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace rg::data
