// CUDA greedy non-maximum suppression, the twin of core/cpu/nms.cpp: candidates sorted on the device
// (a stable radix sort), an IoU bitmask per block of 64 boxes as torchvision's CUDA nms, then the
// greedy reduction of that mask on the device as well (one block), so nothing but the candidate count
// crosses to the host. Same order and overlap test as the CPU: Note [NMS formulas] in core/nms_iou.h.
#include <cub/device/device_radix_sort.cuh>
#include <limits>

#include "core/native.h"
#include "core/nms_iou.h"
#include "cuda_kernels/common.cuh"

namespace rg {

using namespace cu;

namespace {
constexpr int kBlockBoxes = 64;  // boxes per mask word
}  // namespace

// ---- kernels

// keys[i] = the score when it is a candidate (score > threshold), else -inf; -0 becomes +0 so that the
// radix sort sees equal scores as equal. idx[i] = i. count gets the number of candidates.
template <typename T, typename A>
static __global__ void nms_keys_fwd_kernel(const T* scores, int64_t n, double score_threshold, A* keys, int64_t* idx,
                                           unsigned long long* count) {
  grid_stride(n, [&](int64_t i) {
    const A s = cast<A>(scores[i]);
    const bool cand = static_cast<double>(s) > score_threshold;
    keys[i] = cand ? (s == A(0) ? A(0) : s) : -std::numeric_limits<A>::infinity();
    idx[i] = i;
    if (cand) atomicAdd(count, 1ull);
  });
}

// The first n sorted candidates' boxes, converted to A, and their areas.
template <typename T, typename A>
static __global__ void nms_gather_fwd_kernel(const T* boxes, const int64_t* order, int64_t n, A* sorted, A* areas) {
  grid_stride(n, [&](int64_t k) {
    const T* b = boxes + 4 * order[k];
    A box[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      box[c] = cast<A>(b[c]);
      sorted[4 * k + c] = box[c];
    }
    areas[k] = nms::area(box);
  });
}

// mask[i * col_blocks + cb] bit t: sorted box i suppresses sorted box cb * 64 + t (> i). One block per
// (row block, column block) pair on or above the diagonal; thread t owns row box row_block * 64 + t.
template <typename A>
static __global__ void nms_mask_fwd_kernel(const A* sorted, const A* areas, int64_t n, double iou_threshold,
                                           uint64_t* mask, int64_t col_blocks) {
  const int64_t row_block = blockIdx.y, col_block = blockIdx.x;
  if (row_block > col_block) return;
  const int64_t row_left = n - row_block * kBlockBoxes, col_left = n - col_block * kBlockBoxes;
  const int64_t row_n = row_left < kBlockBoxes ? row_left : kBlockBoxes;
  const int64_t col_n = col_left < kBlockBoxes ? col_left : kBlockBoxes;
  __shared__ A col_boxes[kBlockBoxes * 4];
  __shared__ A col_areas[kBlockBoxes];
  const int t = threadIdx.x;
  if (t < col_n) {
    const int64_t j = col_block * kBlockBoxes + t;
#pragma unroll
    for (int c = 0; c < 4; ++c) col_boxes[4 * t + c] = sorted[4 * j + c];
    col_areas[t] = areas[j];
  }
  __syncthreads();
  if (t >= row_n) return;
  const int64_t i = row_block * kBlockBoxes + t;
  const A a[4] = {sorted[4 * i], sorted[4 * i + 1], sorted[4 * i + 2], sorted[4 * i + 3]};
  const A area_a = areas[i];
  uint64_t bits = 0;
  for (int k = row_block == col_block ? t + 1 : 0; k < col_n; ++k) {
    if (nms::suppresses(a, area_a, col_boxes + 4 * k, col_areas[k], iou_threshold)) bits |= 1ull << k;
  }
  mask[i * col_blocks + col_block] = bits;
}

// The greedy pass over the mask, in one block: thread 0 walks the 64 boxes of a column block in
// order (keeping a box no kept box removed, and removing what it suppresses inside the block), then
// every thread ORs the kept boxes' rows into the removed words of the later blocks.
static __global__ void nms_reduce_fwd_kernel(const uint64_t* mask, int64_t n, int64_t col_blocks, const int64_t* order,
                                             int64_t max_keep, uint64_t* removed, int64_t* keep, int64_t* num_kept) {
  __shared__ uint64_t kept_bits;
  __shared__ int64_t kept;
  __shared__ bool full;
  if (threadIdx.x == 0) {
    kept = 0;
    full = max_keep <= 0;
  }
  for (int64_t blk = 0; blk < col_blocks; ++blk) {
    __syncthreads();
    if (full) break;
    if (threadIdx.x == 0) {
      uint64_t rem = removed[blk], bits = 0;
      const int64_t left = n - blk * kBlockBoxes;
      const int64_t nb = left < kBlockBoxes ? left : kBlockBoxes;
      for (int b = 0; b < nb; ++b) {
        if ((rem >> b) & 1ull) continue;
        const int64_t i = blk * kBlockBoxes + b;
        keep[kept++] = order[i];
        bits |= 1ull << b;
        rem |= mask[i * col_blocks + blk];
        if (kept == max_keep) {
          full = true;
          break;
        }
      }
      kept_bits = bits;
    }
    __syncthreads();
    if (full) break;
    for (int64_t w = blk + 1 + threadIdx.x; w < col_blocks; w += blockDim.x) {
      uint64_t r = removed[w];
      for (uint64_t bits = kept_bits; bits; bits &= bits - 1) {
        const int64_t i = blk * kBlockBoxes + __ffsll(static_cast<long long>(bits)) - 1;
        r |= mask[i * col_blocks + w];
      }
      removed[w] = r;
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) *num_kept = kept;
}

// ---- launchers

namespace {

// Radix-sorts (keys, idx) by key, descending and stable; returns the sorted indices.
template <typename A>
Tensor sort_descending(const Tensor& keys, const Tensor& idx, int64_t n) {
  const Device d = keys.device();
  Tensor keys_out = empty({n}, TensorOptions(keys.dtype()).device(d));
  Tensor idx_out = empty({n}, TensorOptions(DType::i64).device(d));
  RG_CHECK(n <= std::numeric_limits<int>::max(), "nms: at most 2^31 - 1 boxes, got ", n);
  size_t temp_bytes = 0;
  RG_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(
      nullptr, temp_bytes, static_cast<const A*>(keys.data_ptr()), static_cast<A*>(keys_out.data_ptr()),
      static_cast<const int64_t*>(idx.data_ptr()), static_cast<int64_t*>(idx_out.data_ptr()), static_cast<int>(n), 0,
      static_cast<int>(sizeof(A) * 8), stream()));
  Tensor temp = empty({static_cast<int64_t>(temp_bytes) + 1}, TensorOptions(DType::u8).device(d));
  RG_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(
      temp.data_ptr(), temp_bytes, static_cast<const A*>(keys.data_ptr()), static_cast<A*>(keys_out.data_ptr()),
      static_cast<const int64_t*>(idx.data_ptr()), static_cast<int64_t*>(idx_out.data_ptr()), static_cast<int>(n), 0,
      static_cast<int>(sizeof(A) * 8), stream()));
  return idx_out;
}

template <typename T, typename A>
void nms_typed(const Tensor& keep, const Tensor& num_kept, const Tensor& boxes, const Tensor& scores,
               double iou_threshold, double score_threshold, int64_t max_candidates) {
  const Device d = boxes.device();
  const int64_t N = scores.numel();
  const DType acc = std::is_same_v<A, double> ? DType::f64 : DType::f32;
  Tensor keys = empty({N}, TensorOptions(acc).device(d));
  Tensor idx = empty({N}, TensorOptions(DType::i64).device(d));
  Tensor count = zeros({1}, TensorOptions(DType::i64).device(d));
  nms_keys_fwd_kernel<T, A><<<grid_for(N), kThreads, 0, stream()>>>(
      static_cast<const T*>(scores.data_ptr()), N, score_threshold, static_cast<A*>(keys.data_ptr()),
      static_cast<int64_t*>(idx.data_ptr()), static_cast<unsigned long long*>(count.data_ptr()));
  RG_CUDA_LAUNCH_CHECK("nms_keys_fwd_kernel");
  const Tensor order = sort_descending<A>(keys, idx, N);
  int64_t n = 0;  // the candidate count decides the mask's size: the one value read back
  RG_CUDA_CHECK(cudaMemcpyAsync(&n, count.data_ptr(), sizeof(n), cudaMemcpyDeviceToHost, stream()));
  RG_CUDA_CHECK(cudaStreamSynchronize(stream()));
  if (max_candidates > 0 && n > max_candidates) n = max_candidates;
  const int64_t col_blocks = (n + kBlockBoxes - 1) / kBlockBoxes;
  if (n == 0 || keep.numel() == 0) {
    RG_CUDA_CHECK(cudaMemsetAsync(num_kept.data_ptr(), 0, sizeof(int64_t), stream()));
    return;
  }
  RG_CHECK(col_blocks <= 65535, "nms: ", n,
           " candidates exceed the CUDA kernel's limit of 65535 * 64 (use max_candidates)");
  Tensor sorted = empty({n, 4}, TensorOptions(acc).device(d));
  Tensor areas = empty({n}, TensorOptions(acc).device(d));
  nms_gather_fwd_kernel<T, A><<<grid_for(n), kThreads, 0, stream()>>>(
      static_cast<const T*>(boxes.data_ptr()), static_cast<const int64_t*>(order.data_ptr()), n,
      static_cast<A*>(sorted.data_ptr()), static_cast<A*>(areas.data_ptr()));
  RG_CUDA_LAUNCH_CHECK("nms_gather_fwd_kernel");
  Tensor mask = empty({n * col_blocks}, TensorOptions(DType::i64).device(d));  // u64 words
  const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(col_blocks));
  nms_mask_fwd_kernel<A><<<grid, kBlockBoxes, 0, stream()>>>(static_cast<const A*>(sorted.data_ptr()),
                                                             static_cast<const A*>(areas.data_ptr()), n, iou_threshold,
                                                             static_cast<uint64_t*>(mask.data_ptr()), col_blocks);
  RG_CUDA_LAUNCH_CHECK("nms_mask_fwd_kernel");
  Tensor removed = zeros({col_blocks}, TensorOptions(DType::i64).device(d));
  nms_reduce_fwd_kernel<<<1, 256, 0, stream()>>>(
      static_cast<const uint64_t*>(mask.data_ptr()), n, col_blocks, static_cast<const int64_t*>(order.data_ptr()),
      keep.numel(), static_cast<uint64_t*>(removed.data_ptr()), static_cast<int64_t*>(keep.data_ptr()),
      static_cast<int64_t*>(num_kept.data_ptr()));
  RG_CUDA_LAUNCH_CHECK("nms_reduce_fwd_kernel");
}

}  // namespace

void nms_cuda(const Tensor& keep, const Tensor& num_kept, const Tensor& boxes, const Tensor& scores,
              double iou_threshold, double score_threshold, int64_t max_candidates) {
  // keep (K) i64, num_kept (1) i64, boxes (N, 4), scores (N): contiguous, checked by native::nms
  RG_CHECK(keep.is_contiguous() && boxes.is_contiguous() && scores.is_contiguous(),
           "nms: the kernel needs contiguous tensors");
  if (scores.numel() == 0) {
    RG_CUDA_CHECK(cudaMemsetAsync(num_kept.data_ptr(), 0, sizeof(int64_t), stream()));
    return;
  }
  RG_CU_DISPATCH_FLOAT(boxes.dtype(), "nms", [&] {
    using A = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    nms_typed<scalar_t, A>(keep, num_kept, boxes, scores, iou_threshold, score_threshold, max_candidates);
  });
}

}  // namespace rg
