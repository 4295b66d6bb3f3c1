// The CUDA ring's schedules -- which block and chunk each step of allreduce, reduce_scatter,
// allgather and broadcast moves -- written against an abstract Ops so that the host can check them
// (tests/distributed/test_cuda_ring_schedule.cpp). No CUDA here; distributed/cuda_ring.cpp runs them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "distributed/process_group.h"

namespace rg::dist {

// Every rank of a group must use the same values (checked when the group is made).
struct CudaRingConfig {
  int64_t slot_bytes = int64_t{8} << 20;         // one IPC slot: the largest chunk a step moves
  int slots = 4;                                 // slots per receive buffer (2..16)
  int64_t min_chunk_bytes = int64_t{256} << 10;  // smaller blocks are not split into chunks
  // RINGGRAD_CUDA_RING_SLOT_KB, RINGGRAD_CUDA_RING_SLOTS, RINGGRAD_CUDA_RING_MIN_CHUNK_KB override.
  static CudaRingConfig from_env();
};

// Note [CUDA ring reduction order]
// allreduce cuts its n elements into rounds of at most size * (slots - 1) * slot elements; a round
// of len elements is cut into `size` blocks of `block` elements (ceil(len / size) rounded up to
// 16 bytes; the last blocks may be short or empty), block b = [base + b*block, base + (b+1)*block).
// Block b's reduction is a left fold over the ranks in ring order starting at rank b+1:
//   acc = x[b+1]; acc = op(acc, x[b+2]); ...; acc = op(acc, x[b+size]) (ranks mod size),
// each step rounded to the tensor's dtype (Note [Ring reduction arithmetic] in cuda_kernels/comm.h);
// for avg the last step also divides by size before its rounding. Rank b holds the result and the
// allgather phase copies it bit for bit to every rank. reduce_scatter folds block b (= rank b's
// output slice) in the same order. The rounds, for tests that rebuild this order on the host:
struct RingRound {
  int64_t base = 0;     // first element of the round
  int64_t len = 0;      // elements in the round
  int64_t block = 0;    // elements per block (the last blocks may be shorter or empty)
  int64_t chunk = 0;    // elements per pipelined message
  int64_t nchunks = 0;  // messages per block and step (<= slots - 1)
};

namespace ring_detail {
inline constexpr int kMaxSlots = 16;
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t m) { return ceil_div(a, m) * m; }
inline int ring_mod(int64_t a, int n) { return static_cast<int>(((a % n) + n) % n); }

inline int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  RG_CHECK(end && *end == '\0' && x > 0, name, "=", v, " is not a positive integer");
  return x;
}

inline void validate(const CudaRingConfig& c) {
  RG_CHECK(c.slots >= 2 && c.slots <= kMaxSlots, "cuda ring: slots must be in [2, ", kMaxSlots, "], got ", c.slots);
  RG_CHECK(c.slot_bytes >= 16 && c.slot_bytes % 16 == 0, "cuda ring: slot_bytes must be a positive multiple of 16, got ",
           c.slot_bytes);
  RG_CHECK(c.min_chunk_bytes >= 16, "cuda ring: min_chunk_bytes must be >= 16, got ", c.min_chunk_bytes);
}

// Chunk length for `len` elements to be sent in at most `max_chunks` messages of at most
// slot_elems elements each, not smaller than min_elems, a multiple of align_elems when possible.
// ceil(len / chunk) <= max_chunks whenever len <= max_chunks * slot_elems.
inline int64_t chunk_for(int64_t len, int64_t max_chunks, int64_t slot_elems, int64_t min_elems, int64_t align_elems) {
  const int64_t even = round_up(ceil_div(std::max<int64_t>(len, 1), max_chunks), align_elems);
  return std::min(slot_elems, std::max(even, min_elems));
}
}  // namespace ring_detail

inline CudaRingConfig CudaRingConfig::from_env() {
  CudaRingConfig c;
  c.slot_bytes = ring_detail::env_int("RINGGRAD_CUDA_RING_SLOT_KB", c.slot_bytes >> 10) << 10;
  c.slots = static_cast<int>(ring_detail::env_int("RINGGRAD_CUDA_RING_SLOTS", c.slots));
  c.min_chunk_bytes = ring_detail::env_int("RINGGRAD_CUDA_RING_MIN_CHUNK_KB", c.min_chunk_bytes >> 10) << 10;
  return c;
}

inline std::vector<RingRound> cuda_ring_allreduce_rounds(int64_t n, int size, int64_t elem_size,
                                                         const CudaRingConfig& cfg) {
  using namespace ring_detail;
  validate(cfg);
  RG_CHECK(size >= 1 && elem_size >= 1 && 16 % elem_size == 0, "cuda_ring_allreduce_rounds: bad arguments");
  const int64_t align = 16 / elem_size;
  const int64_t slot_elems = cfg.slot_bytes / elem_size;
  const int64_t k = cfg.slots - 1;
  const int64_t min_elems = std::max<int64_t>(1, cfg.min_chunk_bytes / elem_size);
  const int64_t cap = static_cast<int64_t>(size) * k * slot_elems;
  std::vector<RingRound> rounds;
  for (int64_t base = 0; base < n; base += cap) {
    RingRound r;
    r.base = base;
    r.len = std::min(cap, n - base);
    r.block = round_up(ceil_div(r.len, size), align);  // <= k * slot_elems: slot_elems is a multiple of align
    r.chunk = chunk_for(r.block, k, slot_elems, min_elems, align);
    r.nchunks = ceil_div(r.block, r.chunk);
    rounds.push_back(r);
  }
  return rounds;
}

// ---- the schedules (Note [CUDA ring protocol] in distributed/cuda_ring.cpp)
// Ops moves messages over the rank's two links and runs the elementwise work:
//   char* recv_begin();  // the slot holding the next message from the left neighbour (waits for it)
//   void recv_end();     // done with that slot
//   char* send_begin();  // the right neighbour's slot for our next message (waits until it is free)
//   void send_end();     // the message is written
//   void reduce(void* y1, void* y2, const void* a, const void* b, int64_t n, DType t, ReduceOp op, int divisor);
//                        // y1 (and y2 unless null) = op(a, b) [/ divisor]; avg arrives as op Avg
//   void copy(void* y1, void* y2, const void* src, int64_t nbytes);  // y1 (unless null or src), y2 (unless null)
// Every rank runs the same sequence of ops, receiving and sending at most one message per op.
namespace ring_schedule {
using ring_detail::ceil_div;
using ring_detail::chunk_for;
using ring_detail::ring_mod;

// Rounds of `size` blocks; per round: reduce-scatter steps s = 0..N-1, then allgather steps.
//   RS 0:            send block r-1 (a copy of the local values)
//   RS s, 1<=s<=N-2: receive block r-1-s, forward op(local, received)
//   RS N-1:          receive block r; local = op(local, received) [/ N]; forward it (AG step 0)
//   AG s, 1<=s<=N-2: receive block r-s; store it and forward it
//   AG N-1:          receive block r-(N-1) = r+1; store it
// Left (r-1) sends at RS s the block (r-1)-1-s = r-1-(s+1): what r receives at RS s+1. Block b is
// thus folded by ranks b+1, b+2, ..., b+N (Note [CUDA ring reduction order]).
template <class Ops>
void allreduce(Ops& ops, int r, int N, const CudaRingConfig& cfg, char* data, int64_t n, DType t, ReduceOp op) {
  const int64_t es = static_cast<int64_t>(dtype_size(t));
  const int divisor = op == ReduceOp::Avg ? N : 1;
  for (const RingRound& rd : cuda_ring_allreduce_rounds(n, N, es, cfg)) {
    // Piece j of block b: [lo, hi) in elements, clamped to the round.
    auto piece = [&](int b, int64_t j, int64_t* count) -> char* {
      const int64_t blo = std::min(static_cast<int64_t>(b) * rd.block, rd.len);
      const int64_t bhi = std::min(blo + rd.block, rd.len);
      const int64_t lo = std::min(blo + j * rd.chunk, bhi);
      const int64_t hi = std::min(lo + rd.chunk, bhi);
      *count = hi - lo;
      return data + (rd.base + lo) * es;
    };
    int64_t cnt = 0;
    for (int64_t j = 0; j < rd.nchunks; ++j) {  // RS 0
      char* src = piece(ring_mod(r - 1, N), j, &cnt);
      char* out = ops.send_begin();
      ops.copy(out, nullptr, src, cnt * es);
      ops.send_end();
    }
    for (int st = 1; st <= N - 2; ++st) {  // RS 1..N-2
      const int b = ring_mod(r - 1 - st, N);
      for (int64_t j = 0; j < rd.nchunks; ++j) {
        char* mine = piece(b, j, &cnt);
        char* in = ops.recv_begin();
        char* out = ops.send_begin();
        ops.reduce(out, nullptr, mine, in, cnt, t, op, 1);
        ops.recv_end();
        ops.send_end();
      }
    }
    for (int64_t j = 0; j < rd.nchunks; ++j) {  // RS N-1 + AG 0
      char* mine = piece(r, j, &cnt);
      char* in = ops.recv_begin();
      char* out = ops.send_begin();
      ops.reduce(mine, out, mine, in, cnt, t, op, divisor);
      ops.recv_end();
      ops.send_end();
    }
    for (int st = 1; st <= N - 2; ++st) {  // AG 1..N-2
      const int b = ring_mod(r - st, N);
      for (int64_t j = 0; j < rd.nchunks; ++j) {
        char* mine = piece(b, j, &cnt);
        char* in = ops.recv_begin();
        char* out = ops.send_begin();
        ops.copy(mine, out, in, cnt * es);
        ops.recv_end();
        ops.send_end();
      }
    }
    for (int64_t j = 0; j < rd.nchunks; ++j) {  // AG N-1
      char* mine = piece(ring_mod(r + 1, N), j, &cnt);
      char* in = ops.recv_begin();
      ops.copy(mine, nullptr, in, cnt * es);
      ops.recv_end();
    }
  }
}

// Rounds cut each rank's slice (m elements) into spans of at most (slots-1) * slot elements;
// the steps are allreduce's RS 0..N-1 with shift 1, reading `in` and writing only `out`.
template <class Ops>
void reduce_scatter(Ops& ops, int r, int N, const CudaRingConfig& cfg, char* out, const char* in, int64_t m, DType t,
                    ReduceOp op) {
  const int64_t es = static_cast<int64_t>(dtype_size(t));
  const int64_t slot_elems = cfg.slot_bytes / es;
  const int64_t k = cfg.slots - 1;
  const int64_t span = k * slot_elems;
  const int64_t min_elems = std::max<int64_t>(1, cfg.min_chunk_bytes / es);
  const int divisor = op == ReduceOp::Avg ? N : 1;
  for (int64_t o = 0; o < m; o += span) {
    const int64_t len = std::min(span, m - o);
    const int64_t chunk = chunk_for(len, k, slot_elems, min_elems, 16 / es);
    const int64_t nchunks = ceil_div(len, chunk);
    auto lo_of = [&](int64_t j) { return std::min(j * chunk, len); };
    auto count_of = [&](int64_t j) { return std::min(lo_of(j) + chunk, len) - lo_of(j); };
    auto in_piece = [&](int b, int64_t j) { return in + (static_cast<int64_t>(b) * m + o + lo_of(j)) * es; };
    for (int64_t j = 0; j < nchunks; ++j) {  // RS 0: send block r-1
      char* dst = ops.send_begin();
      ops.copy(dst, nullptr, in_piece(ring_mod(r - 1, N), j), count_of(j) * es);
      ops.send_end();
    }
    for (int st = 1; st <= N - 2; ++st) {  // RS 1..N-2: receive block r-1-s, forward the partial
      const int b = ring_mod(r - 1 - st, N);
      for (int64_t j = 0; j < nchunks; ++j) {
        char* src = ops.recv_begin();
        char* dst = ops.send_begin();
        ops.reduce(dst, nullptr, in_piece(b, j), src, count_of(j), t, op, 1);
        ops.recv_end();
        ops.send_end();
      }
    }
    for (int64_t j = 0; j < nchunks; ++j) {  // RS N-1: receive block r, the result
      char* src = ops.recv_begin();
      ops.reduce(out + (o + lo_of(j)) * es, nullptr, in_piece(r, j), src, count_of(j), t, op, divisor);
      ops.recv_end();
    }
  }
}

// out block b = rank b's `in` (m elements). AG 0 sends our own block (and stores it); AG s
// receives block r-s, stores it and forwards it unless s = N-1.
template <class Ops>
void allgather(Ops& ops, int r, int N, const CudaRingConfig& cfg, char* out, const char* in, int64_t m, DType t) {
  const int64_t es = static_cast<int64_t>(dtype_size(t));
  const int64_t slot_elems = cfg.slot_bytes / es;
  const int64_t k = cfg.slots - 1;
  const int64_t span = k * slot_elems;
  const int64_t min_elems = std::max<int64_t>(1, cfg.min_chunk_bytes / es);
  for (int64_t o = 0; o < m; o += span) {
    const int64_t len = std::min(span, m - o);
    const int64_t chunk = chunk_for(len, k, slot_elems, min_elems, 16 / es);
    const int64_t nchunks = ceil_div(len, chunk);
    auto lo_of = [&](int64_t j) { return std::min(j * chunk, len); };
    auto count_of = [&](int64_t j) { return std::min(lo_of(j) + chunk, len) - lo_of(j); };
    auto out_piece = [&](int b, int64_t j) { return out + (static_cast<int64_t>(b) * m + o + lo_of(j)) * es; };
    for (int64_t j = 0; j < nchunks; ++j) {  // AG 0
      char* dst = ops.send_begin();
      ops.copy(out_piece(r, j), dst, in + (o + lo_of(j)) * es, count_of(j) * es);
      ops.send_end();
    }
    for (int st = 1; st <= N - 1; ++st) {
      const int b = ring_mod(r - st, N);
      const bool forward = st < N - 1;
      for (int64_t j = 0; j < nchunks; ++j) {
        char* src = ops.recv_begin();
        char* dst = forward ? ops.send_begin() : nullptr;
        ops.copy(out_piece(b, j), dst, src, count_of(j) * es);
        ops.recv_end();
        if (forward) ops.send_end();
      }
    }
  }
}

// A pipelined chain root -> root+1 -> ... -> root+N-1 in slot-sized chunks; the link into the
// root carries nothing (both of its ends know it).
template <class Ops>
void broadcast(Ops& ops, int rank, int N, const CudaRingConfig& cfg, char* data, int64_t n, DType t, int root) {
  const int64_t es = static_cast<int64_t>(dtype_size(t));
  const int64_t chunk = cfg.slot_bytes / es;
  const int64_t nchunks = ceil_div(n, chunk);
  const int pos = ring_mod(rank - root, N);  // 0 = root, N-1 = end of the chain
  for (int64_t j = 0; j < nchunks; ++j) {
    const int64_t lo = j * chunk;
    const int64_t bytes = (std::min(lo + chunk, n) - lo) * es;
    char* mine = data + lo * es;
    if (pos == 0) {
      char* dst = ops.send_begin();
      ops.copy(dst, nullptr, mine, bytes);
      ops.send_end();
    } else {
      char* src = ops.recv_begin();
      char* dst = pos < N - 1 ? ops.send_begin() : nullptr;
      ops.copy(mine, dst, src, bytes);
      ops.recv_end();
      if (dst) ops.send_end();
    }
  }
}

}  // namespace ring_schedule
}  // namespace rg::dist
