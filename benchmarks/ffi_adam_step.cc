// An experiment, not part of adaptix: Adam as one XLA FFI custom call that reads p, g, m, v once
// and writes p, m, v once (28 bytes per float32 parameter), in place (the outputs alias the
// inputs). benchmarks/ffi_adam_experiment.py compiles it with the system C++ compiler against
// the XLA FFI headers that ship with jaxlib, and times it against adaptix.adam.
//
// Arithmetic in the chain's order: m, v, 1/(sqrt(v/bc2) + eps), m * that, / bc1, * -lr, + p.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <thread>
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

// One pass of Adam over a chunk: reads p, g, m, v once and writes p, m, v once.
static void adam_chunk(float* p, const float* g, float* m, float* v, int64_t lo, int64_t hi,
                       float b1, float b2, float lr, float eps, float bc1, float bc2, float w1, float w2) {
  for (int64_t i = lo; i < hi; ++i) {
    float gi = g[i];
    float mi = w1 * gi + b1 * m[i];
    float vi = w2 * (gi * gi) + b2 * v[i];
    m[i] = mi;
    v[i] = vi;
    float scale = 1.0f / (std::sqrt(vi / bc2) + eps);
    p[i] = p[i] + (-lr) * ((mi * scale) / bc1);
  }
}

static ffi::Error AdamImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> p, ffi::Buffer<ffi::F32> g,
                           ffi::Buffer<ffi::F32> m, ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::F32> scalars,
                           ffi::ResultBuffer<ffi::F32> p_out, ffi::ResultBuffer<ffi::F32> m_out,
                           ffi::ResultBuffer<ffi::F32> v_out) {
  const int64_t n = p.element_count();
  const float* s = scalars.typed_data();  // b1, b2, lr, eps, bc1, bc2, 1 - b1, 1 - b2
  float* P = p_out->typed_data();
  float* M = m_out->typed_data();
  float* V = v_out->typed_data();
  const float* G = g.typed_data();
  // Work sharing that cannot deadlock: the caller and any pool thread that gets to run take
  // cache-sized chunks from a shared counter; the caller waits only for chunks already taken.
  // XLA may run several of these calls at once on the same pool, so a helper task may start
  // after the call has returned: the shared state lives on the heap.
  constexpr int64_t kChunk = 1 << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  struct Shared {
    std::atomic<int64_t> next{0}, finished{0};
  };
  auto shared = std::make_shared<Shared>();
  auto work = [=]() {
    for (int64_t c; (c = shared->next.fetch_add(1)) < chunks;) {
      adam_chunk(P, G, M, V, c * kChunk, std::min(n, (c + 1) * kChunk), s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
      shared->finished.fetch_add(1, std::memory_order_release);
    }
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), chunks - 1);
  for (int64_t t = 0; t < helpers; ++t) {
    auto task = work;
    pool.Schedule(std::move(task));
  }
  work();
  while (shared->finished.load(std::memory_order_acquire) < chunks) std::this_thread::yield();
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(AdamStep, AdamImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
