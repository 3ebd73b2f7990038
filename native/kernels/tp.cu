// The tensor-parallel exchange of a decode step (issue 14): the ranks of a group are processes, one
// per GPU, and each maps every other rank's exchange buffer (CUDA IPC, peer memory over NVLink or
// PCIe), so one kernel of the captured step both says "my part is ready" and reads the others':
// no NCCL launch, no host round trip, and the sum is taken in rank order on every rank, so every
// rank holds the very same bits (and a one-process reference can reproduce them).
//
// Protocol. Each rank owns a 64-bit counter in its exchange buffer. Exchange number `e` of the group
// (the launch's sequence number, which the coordinator sends with every launch, times the
// exchanges per launch, plus this exchange's index, plus one) starts with one thread of block 0
// releasing counter = e (system scope, after a system fence: the part it publishes was written by
// the kernels before this one). Every block then waits, with one thread, until each peer's counter
// has reached e (acquire, system scope), and only then reads the peers' parts. Parts are double
// buffered by exchange index parity: a rank overwrites the buffer of exchange e only in exchange
// e + 2, which it reaches only after every peer has published e + 1, i.e. after every peer has
// finished reading e.
//
// A peer that never publishes (dead, stuck) must not hang the GPU: the wait gives up when the host
// raises the abort word (rank 0 watches its links to the shards: a shard's process that ends
// closes its socket) or after `timeout_ns` (the %globaltimer clock), sets the rank's error word,
// and every later exchange returns at once. The host reads the error word with the step's output
// and fails the group: the step's output (what the blocks that did not wait wrote) is not used.
#include "args.cuh"
#include "common.cuh"

namespace rbee {

__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__device__ __forceinline__ unsigned long long load_acquire(const unsigned long long* p) {
  unsigned long long v;
  asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ void store_release(unsigned long long* p, unsigned long long v) {
  asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

// Publishes this rank's part (block 0) and waits for every peer's; false after a timeout (or an
// earlier one), when the caller must write nothing. Every thread of the block returns the same.
__device__ bool tp_sync(const TpArgs& a, bool wait) {
  __shared__ int ok;
  const unsigned long long e = *a.seq * (unsigned long long)a.per_launch + (unsigned long long)a.index + 1ull;
  if (threadIdx.x == 0) {
    int good = *(volatile int*)a.err == 0;
    if (good && blockIdx.x == 0) {
      __threadfence_system();
      store_release(a.counter[a.rank], e);
    }
    if (good && wait) {
      const unsigned long long start = global_ns();
      for (int r = 0; r < a.world && good; ++r) {
        if (r == a.rank) continue;
        while (load_acquire(a.counter[r]) < e) {
          if ((a.abort && *(volatile const int*)a.abort) || global_ns() - start > (unsigned long long)a.timeout_ns) {
            atomicExch(a.err, 1);
            good = 0;
            break;
          }
          __nanosleep(32);
        }
      }
    }
    ok = good;
  }
  __syncthreads();
  return ok != 0;
}

}  // namespace rbee

using namespace rbee;

extern "C" __global__ void __launch_bounds__(256) rbee_tp_reduce(const TpArgs a) {
  pdl_enter();
  if (!tp_sync(a, true)) return;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < a.n; i += gridDim.x * blockDim.x) {
    float s = __ldcv(a.part[0] + i);
    for (int r = 1; r < a.world; ++r) s += __ldcv(a.part[r] + i);
    a.dst[i] = a.add ? a.dst[i] + s : s;
  }
}

extern "C" __global__ void __launch_bounds__(32) rbee_tp_argmax(const TpArgs a) {
  pdl_enter();
  if (!tp_sync(a, a.rank == 0) || a.rank != 0) return;
  const int row = blockIdx.x;
  if (row >= a.rows || threadIdx.x != 0) return;
  float bv = 0.0f;
  int bi = -1;
  for (int r = 0; r < a.world; ++r) {
    const int local = __ldcv(a.part_idx[r] + row);
    const float v = __ldcv(a.part[r] + row);
    const int i = local < 0 ? -1 : local + a.off[r];
    if (i >= 0 && (bi < 0 || v > bv || (v == bv && i < bi))) {
      bv = v;
      bi = i;
    }
  }
  a.token[row] = bi;
  if (a.pos) a.pos[row] += 1;
}
