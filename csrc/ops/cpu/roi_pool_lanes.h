// The CPU kernels' per-(box, channel block) bodies: RoIAlign of a box from a channels-last copy
// of the pixels it touches, and the transpose for the backward (see roi_pool_kernel.cpp).
//
// No include guard: this file is compiled once per instruction set, into the namespace that
// LIDPLUG_LANES_ISA names -- for the baseline by roi_pool_kernel.cpp, and for AVX2 and
// AVX-512 by roi_pool_kernel_avx2.cpp / _avx512.cpp, which also set LIDPLUG_LANES_TARGET (the
// target attribute for this copy's functions) -- and each copy defines that namespace's
// `kLaneKernels`. Its includers include roi_pool_plan.h (and through it everything used here)
// first, outside the target. Keep to plain loops, memcpy, intrinsics and the inline functions
// of roi_geometry.h here: see roi_pool_plan.h for why.
//
// A block of kLanes channels is one 64-byte vector value (GCC's and Clang's vector extension):
// the compiler lowers it to the registers of the instruction set the copy is compiled for, and
// each lane (channel) goes through the same operations, so channels give the same bits in
// whichever block, lane or thread they are.

#ifndef LIDPLUG_LANES_ISA
#error "define LIDPLUG_LANES_ISA (the namespace of this copy) before including roi_pool_lanes.h"
#endif

#if defined(__GNUC__) && !defined(__clang__)
// GCC notes that a 64-byte vector passed by value has another ABI where the instruction set
// lacks 64-byte registers. Here such values pass only between the inlined helpers of this file,
// which have internal linkage: no call that crosses a file passes one.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#ifdef LIDPLUG_LANES_TARGET
#define LIDPLUG_PRAGMA(...) _Pragma(#__VA_ARGS__)
#if defined(__clang__)
#define LIDPLUG_TARGET_PUSH(t) \
  LIDPLUG_PRAGMA(clang attribute push(__attribute__((target(t))), apply_to = function))
#define LIDPLUG_TARGET_POP LIDPLUG_PRAGMA(clang attribute pop)
#else
#define LIDPLUG_TARGET_PUSH(t) LIDPLUG_PRAGMA(GCC push_options) LIDPLUG_PRAGMA(GCC target(t))
#define LIDPLUG_TARGET_POP LIDPLUG_PRAGMA(GCC pop_options)
#endif
LIDPLUG_TARGET_PUSH(LIDPLUG_LANES_TARGET)
#endif

namespace lidplug {
namespace ops {
namespace LIDPLUG_LANES_ISA {
namespace {

#if defined(__GNUC__)
template <typename T>
struct VectorOf;
template <>
struct VectorOf<float> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct VectorOf<double> {
  typedef double type __attribute__((vector_size(64)));
};
template <typename T>
using Lanes = typename VectorOf<T>::type;
#else
// Other compilers: the same block as an array, left to the auto-vectoriser.
template <typename T>
struct Lanes {
  T v[kLanes<T>];
  T& operator[](int i) { return v[i]; }
  T operator[](int i) const { return v[i]; }
#define LIDPLUG_LANES_OP(op)                                        \
  friend Lanes operator op(Lanes a, const Lanes& b) {               \
    for (int i = 0; i < kLanes<T>; ++i) a.v[i] = a.v[i] op b.v[i]; \
    return a;                                                       \
  }
  LIDPLUG_LANES_OP(+)
  LIDPLUG_LANES_OP(*)
  LIDPLUG_LANES_OP(/)
#undef LIDPLUG_LANES_OP
  Lanes& operator+=(const Lanes& b) { return *this = *this + b; }
};
#endif

template <typename T>
inline Lanes<T> load(const T* p) {
  Lanes<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <typename T>
inline void store(T* p, const Lanes<T>& v) {
  std::memcpy(p, &v, sizeof v);
}

// A hint to fetch the line at p into the caches ahead of its use (no-op where not available).
inline void prefetch(const void* p) {
#if defined(__GNUC__)
  __builtin_prefetch(p);
#else
  (void)p;
#endif
}

template <typename T>
inline Lanes<T> splat(T s) {
  Lanes<T> v;
  for (int i = 0; i < kLanes<T>; ++i) v[i] = s;
  return v;
}

// Copies a run of n pixels of four channel rows (at f + c * hw, c < 4, minus those at r when
// Diff) into a box's buffer: pixel q's four channels to b + q * kLanes.
template <bool Diff, typename scalar_t, typename acc_t>
inline void transpose_in(const scalar_t* f, const scalar_t* r, int64_t hw, int n, acc_t* b) {
  constexpr int L = kLanes<acc_t>;
  int q = 0;
#if LIDPLUG_SSE
  if constexpr (std::is_same_v<scalar_t, float>) {
    for (; q + 4 <= n; q += 4) {
      __m128 a0 = _mm_loadu_ps(f + q), a1 = _mm_loadu_ps(f + hw + q);
      __m128 a2 = _mm_loadu_ps(f + 2 * hw + q), a3 = _mm_loadu_ps(f + 3 * hw + q);
      if (Diff) {
        a0 = _mm_sub_ps(a0, _mm_loadu_ps(r + q));
        a1 = _mm_sub_ps(a1, _mm_loadu_ps(r + hw + q));
        a2 = _mm_sub_ps(a2, _mm_loadu_ps(r + 2 * hw + q));
        a3 = _mm_sub_ps(a3, _mm_loadu_ps(r + 3 * hw + q));
      }
      _MM_TRANSPOSE4_PS(a0, a1, a2, a3);
      _mm_storeu_ps(b + q * L, a0);
      _mm_storeu_ps(b + (q + 1) * L, a1);
      _mm_storeu_ps(b + (q + 2) * L, a2);
      _mm_storeu_ps(b + (q + 3) * L, a3);
    }
  }
#endif
  for (; q < n; ++q) {
    for (int c = 0; c < 4; ++c) {
      b[q * L + c] = Diff ? static_cast<acc_t>(f[c * hw + q]) - static_cast<acc_t>(r[c * hw + q])
                          : static_cast<acc_t>(f[c * hw + q]);
    }
  }
}

// The transpose of transpose_in, adding: row c < 4 at d + c * hw gets pixel q's channel c of
// the buffer (at b + q * kLanes + c) added at q, for a run of n pixels.
template <typename acc_t>
inline void transpose_add(const acc_t* b, int n, int64_t hw, acc_t* d) {
  constexpr int L = kLanes<acc_t>;
  int q = 0;
#if LIDPLUG_SSE
  if constexpr (std::is_same_v<acc_t, float>) {
    for (; q + 4 <= n; q += 4) {
      __m128 a0 = _mm_loadu_ps(b + q * L), a1 = _mm_loadu_ps(b + (q + 1) * L);
      __m128 a2 = _mm_loadu_ps(b + (q + 2) * L), a3 = _mm_loadu_ps(b + (q + 3) * L);
      _MM_TRANSPOSE4_PS(a0, a1, a2, a3);
      _mm_storeu_ps(d + q, _mm_add_ps(_mm_loadu_ps(d + q), a0));
      _mm_storeu_ps(d + hw + q, _mm_add_ps(_mm_loadu_ps(d + hw + q), a1));
      _mm_storeu_ps(d + 2 * hw + q, _mm_add_ps(_mm_loadu_ps(d + 2 * hw + q), a2));
      _mm_storeu_ps(d + 3 * hw + q, _mm_add_ps(_mm_loadu_ps(d + 3 * hw + q), a3));
    }
  }
#endif
  for (; q < n; ++q) {
    for (int c = 0; c < 4; ++c) d[c * hw + q] += b[q * L + c];
  }
}

// Copies the pixels the box touches of nc channel planes into buf, channels-last (pixel
// (i, q) of the box's rows and columns at buf + (i * nq + q) * kLanes), as f - r when Diff;
// lanes from nc on get zeros.
template <bool Diff, typename scalar_t, typename acc_t>
void gather(const BoxView<acc_t>& p, const scalar_t* f, const scalar_t* r, int64_t hw, int nc,
            acc_t* buf) {
  constexpr int L = kLanes<acc_t>;
  // Boxes up to a few bins per pixel touch a run of columns, copied four channels at a time.
  const bool run = p.cols[p.nq - 1] - p.cols[0] + 1 == p.nq;
  const int run_channels = run ? nc / 4 * 4 : 0;
  // Row by row, each row through all the block's planes: the planes' lines are independent
  // loads that overlap, and the rows two ahead are fetched while these are copied (the copy
  // waits on memory: it is the only pass over the maps).
  constexpr int kAhead = 2;
  const int64_t last = p.cols[p.nq - 1] - p.cols[0];
  for (int i = 0; i < p.nr; ++i) {
    const int64_t row = int64_t(p.rows[i]) * p.W + p.cols[0];
    if (i + kAhead < p.nr) {
      const int64_t ahead = int64_t(p.rows[i + kAhead]) * p.W + p.cols[0];
      for (int c = 0; c < nc; ++c) {
        prefetch(f + c * hw + ahead);
        prefetch(f + c * hw + ahead + last);
        if (Diff) {
          prefetch(r + c * hw + ahead);
          prefetch(r + c * hw + ahead + last);
        }
      }
    }
    acc_t* b = buf + int64_t(i) * p.nq * L;
    for (int c = 0; c < run_channels; c += 4) {
      transpose_in<Diff>(f + c * hw + row, Diff ? r + c * hw + row : r, hw, p.nq, b + c);
    }
    for (int c = run_channels; c < nc; ++c) {
      const scalar_t* fs = f + c * hw + row;
      const scalar_t* rs = Diff ? r + c * hw + row : nullptr;
      for (int q = 0; q < p.nq; ++q) {
        const int64_t at = p.cols[q] - p.cols[0];
        b[q * L + c] = Diff ? static_cast<acc_t>(fs[at]) - static_cast<acc_t>(rs[at])
                            : static_cast<acc_t>(fs[at]);
      }
    }
  }
  if (nc < L) {
    for (int64_t pix = 0; pix < int64_t(p.nr) * p.nq; ++pix) {
      for (int c = nc; c < L; ++c) buf[pix * L + c] = acc_t(0);
    }
  }
}

// Calls fn(corners) for every sample point of bin (ph, pw) that falls on the map, with the
// corners' offsets into the box's buffer.
template <typename acc_t, typename Fn>
inline void for_each_sample(const BoxView<acc_t>& p, int ph, int pw, const Fn& fn) {
  const int gh = p.g.grid_h, gw = p.g.grid_w;
  for (int iy = 0; iy < gh; ++iy) {
    const Tap<acc_t>& ty = p.y[ph * gh + iy];
    if (!ty.inside) continue;
    for (int ix = 0; ix < gw; ++ix) {
      const Tap<acc_t>& tx = p.x[pw * gw + ix];
      if (!tx.inside) continue;
      Corners<acc_t> c = corners(ty, tx, p.nq);
      for (int j = 0; j < 4; ++j) c.offset[j] *= kLanes<acc_t>;
      fn(c);
    }
  }
}

// PoolBlockFn (roi_pool_plan.h). The formula of roi_geometry.h's interpolate, on vectors.
template <typename scalar_t, typename acc_t>
acc_t pool_block(const BoxView<acc_t>& p, const scalar_t* f, const scalar_t* r, int64_t hw,
                 int nc, int pooled_h, int pooled_w, int64_t C, acc_t* buf, acc_t* out) {
  constexpr int L = kLanes<acc_t>;
  if (r != nullptr) {
    gather<true>(p, f, r, hw, nc, buf);
  } else {
    gather<false>(p, f, r, hw, nc, buf);
  }
  const int samples = p.g.grid_h * p.g.grid_w;
  const Lanes<acc_t> count = splat(static_cast<acc_t>(samples > 1 ? samples : 1));
  Lanes<acc_t> squares = splat(acc_t(0));
  for (int ph = 0; ph < pooled_h; ++ph) {
    for (int pw = 0; pw < pooled_w; ++pw) {
      Lanes<acc_t> sum = splat(acc_t(0));
      for_each_sample(p, ph, pw, [&](const Corners<acc_t>& c) {
        sum += splat(c.weight[0]) * load(buf + c.offset[0]) +
               splat(c.weight[1]) * load(buf + c.offset[1]) +
               splat(c.weight[2]) * load(buf + c.offset[2]) +
               splat(c.weight[3]) * load(buf + c.offset[3]);
      });
      const Lanes<acc_t> v = sum / count;
      squares += v * v;
      acc_t* o = out + (int64_t(ph) * pooled_w + pw) * C;
      if (nc == L) {
        store(o, v);
      } else {
        for (int j = 0; j < nc; ++j) o[j] = v[j];
      }
    }
  }
  acc_t total = 0;
  for (int j = 0; j < nc; ++j) total += squares[j];
  return total;
}

// ScatterBlockFn (roi_pool_plan.h). The formula of roi_geometry.h's scatter, on vectors, into
// the box's buffer; then the buffer is added to the planes, pixel by pixel.
template <typename acc_t>
void scatter_block(const BoxView<acc_t>& p, const acc_t* grad, acc_t scale, int64_t hw, int nc,
                   int pooled_h, int pooled_w, int64_t C, acc_t* buf, acc_t* dst) {
  constexpr int L = kLanes<acc_t>;
  // The box's gradient is one line per bin, C values apart: ask for all of them at once rather
  // than wait for each in turn.
  for (int b = 0; b < pooled_h * pooled_w; ++b) prefetch(grad + b * C);
  std::memset(buf, 0, sizeof(acc_t) * L * p.nr * p.nq);
  const Lanes<acc_t> count = splat(static_cast<acc_t>(p.g.grid_h * p.g.grid_w));
  const Lanes<acc_t> times = splat(scale);
  for (int ph = 0; ph < pooled_h; ++ph) {
    for (int pw = 0; pw < pooled_w; ++pw) {
      const acc_t* gb = grad + (int64_t(ph) * pooled_w + pw) * C;
      Lanes<acc_t> g = splat(acc_t(0));
      if (nc == L) {
        g = load(gb);
      } else {
        for (int j = 0; j < nc; ++j) g[j] = gb[j];
      }
      g = g * times / count;
      for_each_sample(p, ph, pw, [&](const Corners<acc_t>& c) {
        for (int j = 0; j < 4; ++j) {
          acc_t* at = buf + c.offset[j];
          store(at, load(at) + g * splat(c.weight[j]));
        }
      });
    }
  }
  const bool run = p.cols[p.nq - 1] - p.cols[0] + 1 == p.nq;
  const int run_channels = run ? nc / 4 * 4 : 0;
  for (int i = 0; i < p.nr; ++i) {
    acc_t* row = dst + int64_t(p.rows[i]) * p.W;
    const acc_t* b = buf + int64_t(i) * p.nq * L;
    for (int c = 0; c < run_channels; c += 4) {
      transpose_add(b + c, p.nq, hw, row + c * hw + p.cols[0]);
    }
    for (int c = run_channels; c < nc; ++c) {
      for (int q = 0; q < p.nq; ++q) row[c * hw + p.cols[q]] += b[q * L + c];
    }
  }
}

}  // namespace

const LaneKernels kLaneKernels{
    &pool_block<float, float>,     &pool_block<double, double>,
    &pool_block<c10::Half, float>, &pool_block<c10::BFloat16, float>,
    &scatter_block<float>,         &scatter_block<double>,
};

}  // namespace LIDPLUG_LANES_ISA
}  // namespace ops
}  // namespace lidplug

#ifdef LIDPLUG_LANES_TARGET
LIDPLUG_TARGET_POP
#undef LIDPLUG_TARGET_PUSH
#undef LIDPLUG_TARGET_POP
#undef LIDPLUG_PRAGMA
#undef LIDPLUG_LANES_TARGET
#endif
#undef LIDPLUG_LANES_ISA

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
