// Samplers, batch collation, the worker pool with its ordered bounded queue (Note [Loader
// determinism]) and the asynchronous host-to-device batch copy (Note [Async batch copies]).
#include "data/dataloader.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "core/allocator.h"
#include "core/cuda_api.h"
#include "core/native.h"

namespace rg::data {

// ---- samplers
std::vector<int64_t> SequentialSampler::indices(int64_t) const {
  std::vector<int64_t> v(static_cast<size_t>(n_));
  std::iota(v.begin(), v.end(), int64_t{0});
  return v;
}

std::vector<int64_t> RandomSampler::indices(int64_t epoch) const {
  return shuffled_indices(n_, seed_ + static_cast<uint64_t>(epoch));
}

std::vector<int64_t> DistributedSamplerAdapter::indices(int64_t epoch) const {
  DistributedSampler s = s_;
  s.set_epoch(epoch);
  return s.indices();
}

// ---- corrupt samples (Note [Corrupt samples])
int64_t replacement_index(uint64_t seed, int64_t epoch, int64_t index, int attempt, const std::vector<int64_t>& shard) {
  RG_CHECK(!shard.empty() && attempt >= 1, "replacement_index: empty shard or attempt ", attempt);
  SampleRng rng(SampleRng::mix(seed ^ 0x636F727275707421ull), static_cast<uint64_t>(epoch), static_cast<uint64_t>(index));
  const auto n = static_cast<int64_t>(shard.size());
  int64_t pick = index;
  for (int a = 0; a < attempt; ++a) {
    for (int tries = 0; tries < 64; ++tries) {  // another index when the shard has one
      pick = shard[static_cast<size_t>(rng.randint(0, n))];
      if (pick != index) break;
    }
  }
  return pick;
}

// ---- batches
Tensor empty_host(const Shape& shape, DType dtype, bool pinned, bool round_up) {
  if (!pinned) return empty(shape, dtype);
  size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  if (round_up) {
    size_t cap = 4096;
    while (cap < bytes) cap *= 2;
    bytes = cap;
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = allocate_pinned_storage(bytes);
  impl->sizes = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

namespace {
struct HostHold {
  Tensor images, labels, targets;
  cuda::Event copied;
  ~HostHold() {
    try {
      copied.synchronize();
    } catch (...) {  // a failing device is reported by the next op; never throw from a destructor
    }
  }
};

// Issues an asynchronous host-to-device copy of a contiguous host tensor (undefined stays undefined).
Tensor copy_async(const Tensor& host, Device device) {
  if (!host.defined()) return host;
  Tensor dev = empty(host.sizes(), TensorOptions(host.dtype()).device(device));
  if (host.nbytes() > 0) {
    cuda::memcpy(dev.data_ptr(), host.data_ptr(), host.nbytes(), cuda::CopyKind::HostToDevice, true);
  }
  return dev;
}

// Loads sample *idx; when that fails, the replacements of Note [Corrupt samples] until one loads
// (*idx becomes it), each failure recorded in *corrupt.
Image load_or_replace(const ClassifyDataset& dataset, const BatchRequest& req, int64_t* idx,
                      std::vector<CorruptSample>* corrupt) {
  const int64_t original = *idx;
  for (int attempt = 1;; ++attempt) {
    try {
      return dataset.load(*idx);
    } catch (const SampleLoadError& e) {
      if (req.strict) throw;
      RG_CHECK(attempt <= kMaxReplacements, "DataLoader: ", kMaxReplacements, " replacements of sample ", original,
               " failed to load too; the last: ", e.what());
      const int64_t next = replacement_index(req.seed, req.epoch, original, attempt,
                                             req.shard ? *req.shard : req.indices);
      corrupt->push_back(CorruptSample{*idx, next, e.path(), e.what()});
      *idx = next;
    }
  }
}

// Classification collation: (B, C, H, W) u8 images and (B) i64 labels from the samples.
Batch collate_classify(const ClassifyDataset& dataset, const ImageTransform& transform, const BatchRequest& req) {
  const auto n = static_cast<int64_t>(req.indices.size());
  Batch out;
  out.labels = empty_host({n}, DType::i64, req.pinned);
  int64_t* lab = out.labels.data<int64_t>();
  int64_t C = 0, H = 0, W = 0;
  uint8_t* dst = nullptr;
  for (int64_t i = 0; i < n; ++i) {
    int64_t idx = req.indices[static_cast<size_t>(i)];
    Image img = load_or_replace(dataset, req, &idx, &out.corrupt);
    SampleRng rng(req.seed, static_cast<uint64_t>(req.epoch), static_cast<uint64_t>(idx));
    if (transform) img = transform(img, rng);
    if (i == 0) {
      C = img.channels, H = img.height, W = img.width;
      out.images = empty_host({n, C, H, W}, DType::u8, req.pinned);
      dst = out.images.data<uint8_t>();
    }
    RG_CHECK(img.channels == C && img.height == H && img.width == W, "DataLoader: sample ", idx, " is ", img.height,
             "x", img.width, "x", img.channels, " after its transform but the batch's first is ", H, "x", W, "x", C,
             "; give the transform a fixed size");
    lab[i] = dataset.label(idx);
    uint8_t* o = dst + i * C * H * W;
    const uint8_t* src = img.pixels.data();
    const int64_t hw = H * W;
    for (int64_t p = 0; p < hw; ++p) {
      for (int64_t c = 0; c < C; ++c) o[c * hw + p] = src[p * C + c];
    }
  }
  return out;
}
BatchFn classify_batch_fn(std::shared_ptr<const ClassifyDataset> dataset, ImageTransform transform) {
  RG_CHECK(dataset, "DataLoader: dataset and sampler are required");
  return [dataset = std::move(dataset), transform = std::move(transform)](const BatchRequest& req) {
    return collate_classify(*dataset, transform, req);
  };
}
}  // namespace

Batch to_device(const Batch& b, Device device) {
  if (device.is_cpu()) return b;
  for (const Tensor* t : {&b.images, &b.labels, &b.targets}) {
    RG_CHECK(!t->defined() || (t->is_cpu() && t->is_contiguous()), "to_device: expected a contiguous host batch, got ",
             t->describe());
  }
  cuda::DeviceGuard guard(device.index);
  Batch out;
  out.indices = b.indices;
  out.batch_index = b.batch_index;
  out.info = b.info;
  out.images = copy_async(b.images, device);
  out.labels = copy_async(b.labels, device);
  out.targets = copy_async(b.targets, device);
  auto hold = std::make_shared<HostHold>();
  hold->images = b.images;
  hold->labels = b.labels;
  hold->targets = b.targets;
  hold->copied.record(cuda::current_stream(device.index));
  out.hold = std::move(hold);
  return out;
}

// ---- the loader
DataLoader::DataLoader(std::shared_ptr<const ClassifyDataset> dataset, std::shared_ptr<const Sampler> sampler,
                       ImageTransform transform, DataLoaderOptions options)
    : DataLoader(std::move(sampler), classify_batch_fn(std::move(dataset), std::move(transform)), options) {}

DataLoader::DataLoader(std::shared_ptr<const Sampler> sampler, BatchFn make, DataLoaderOptions options)
    : sampler_(std::move(sampler)), make_(std::move(make)), opts_(options) {
  RG_CHECK(sampler_ && make_, "DataLoader: dataset and sampler are required");
  RG_CHECK(opts_.batch_size >= 1, "DataLoader: batch_size must be >= 1, got ", opts_.batch_size);
  RG_CHECK(opts_.workers >= 0, "DataLoader: workers must be >= 0, got ", opts_.workers);
  if (opts_.prefetch_batches <= 0) opts_.prefetch_batches = 2 * std::max(opts_.workers, 1);
  if (opts_.pin_memory && cuda::is_available()) pin_device_ = cuda::current_device();  // Note [Pinned batches' device]
}

DataLoader::~DataLoader() { stop_workers(); }

int64_t DataLoader::num_batches() const {
  const int64_t n = sampler_->size(), b = opts_.batch_size;
  return opts_.drop_last ? n / b : (n + b - 1) / b;
}

Batch DataLoader::make_batch(int64_t epoch, int64_t b) const {
  RG_CHECK(b >= 0 && b < num_batches(), "DataLoader: batch ", b, " out of range [0, ", num_batches(), ")");
  return build(sampler_->indices(epoch), epoch, b);
}

Batch DataLoader::build(const std::vector<int64_t>& order, int64_t epoch, int64_t b) const {
  const auto begin = static_cast<size_t>(b * opts_.batch_size);
  const size_t end = std::min(order.size(), begin + static_cast<size_t>(opts_.batch_size));
  const std::vector<int64_t> indices(order.begin() + static_cast<std::ptrdiff_t>(begin),
                                     order.begin() + static_cast<std::ptrdiff_t>(end));
  Batch out = make_(BatchRequest{indices, epoch, b, opts_.seed, opts_.pin_memory, &order, opts_.strict_data});
  out.batch_index = b;
  out.indices = indices;
  return out;
}

void DataLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_work_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
  std::lock_guard<std::mutex> lk(mu_);
  ready_.clear();
  stop_ = false;
}

void DataLoader::start_epoch(int64_t epoch, int64_t start_batch) {
  stop_workers();
  epoch_ = epoch;
  order_ = sampler_->indices(epoch);
  RG_CHECK(static_cast<int64_t>(order_.size()) == sampler_->size(), "DataLoader: the sampler gave ", order_.size(),
           " indices for epoch ", epoch, " but its size is ", sampler_->size());
  nbatches_ = num_batches();
  RG_CHECK(start_batch >= 0 && start_batch <= nbatches_, "DataLoader: start batch ", start_batch, " not in [0, ",
           nbatches_, "]");
  next_claim_ = next_consume_ = start_batch;
  const int64_t remaining = nbatches_ - start_batch;
  const int nthreads = static_cast<int>(std::min<int64_t>(opts_.workers, remaining));
  for (int i = 0; i < nthreads; ++i) threads_.emplace_back([this] { worker_loop(); });
}

void DataLoader::worker_loop() {
  // Note [Pinned batches' device]. Set for good, not with a DeviceGuard: restoring cuda:0 on exit
  // would create the very context on cuda:0 this avoids. A failure is reported at the first batch.
  std::exception_ptr device_error;
  if (pin_device_ >= 0) {
    try {
      cuda::set_device(pin_device_);
    } catch (...) {
      device_error = std::current_exception();
    }
  }
  for (;;) {
    int64_t b = 0;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_work_.wait(lk, [&] {
        return stop_ || next_claim_ >= nbatches_ || next_claim_ < next_consume_ + opts_.prefetch_batches;
      });
      if (stop_ || next_claim_ >= nbatches_) return;
      b = next_claim_++;
    }
    Slot slot;
    try {
      if (device_error) std::rethrow_exception(device_error);
      slot.batch = build(order_, epoch_, b);  // order_ and epoch_ are fixed while workers run
    } catch (...) {
      slot.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      ready_[b] = std::move(slot);
    }
    cv_ready_.notify_all();
  }
}

bool DataLoader::next(Batch* out) {
  if (next_consume_ >= nbatches_) return false;
  if (threads_.empty()) {
    *out = build(order_, epoch_, next_consume_++);
    corrupt_.insert(corrupt_.end(), out->corrupt.begin(), out->corrupt.end());
    return true;
  }
  Slot slot;
  {
    std::unique_lock<std::mutex> lk(mu_);
    cv_ready_.wait(lk, [&] { return ready_.count(next_consume_) > 0; });
    auto it = ready_.find(next_consume_);
    slot = std::move(it->second);
    ready_.erase(it);
    ++next_consume_;
  }
  cv_work_.notify_all();
  if (slot.error) std::rethrow_exception(slot.error);
  *out = std::move(slot.batch);
  corrupt_.insert(corrupt_.end(), out->corrupt.begin(), out->corrupt.end());
  return true;
}

std::vector<CorruptSample> DataLoader::take_corrupt() {
  std::vector<CorruptSample> out;
  out.swap(corrupt_);
  return out;
}

}  // namespace rg::data
