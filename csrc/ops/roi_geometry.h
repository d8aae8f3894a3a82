// Geometry shared by the CPU and CUDA kernels: box -> FPN level, box -> sampling grid,
// and the bilinear taps of one sample point. Everything here follows torchvision's
// roi_align / MultiScaleRoIAlign exactly, because those are the op's oracle.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define LIDPLUG_HD __host__ __device__ __forceinline__
#else
#define LIDPLUG_HD inline
#endif

namespace lidplug {
namespace ops {

// Host and device spell the math functions differently; these two pick the right one.
template <typename T>
LIDPLUG_HD bool finite(T v) {
#if defined(__CUDA_ARCH__)
  return ::isfinite(v);
#else
  return std::isfinite(v);
#endif
}

#if defined(__CUDA_ARCH__)
#define LIDPLUG_MATH(name) ::name
#else
#define LIDPLUG_MATH(name) std::name
#endif
template <typename T>
LIDPLUG_HD T ceil_of(T v) { return LIDPLUG_MATH(ceil)(v); }
template <typename T>
LIDPLUG_HD T floor_of(T v) { return LIDPLUG_MATH(floor)(v); }
template <typename T>
LIDPLUG_HD T sqrt_of(T v) { return LIDPLUG_MATH(sqrt)(v); }
template <typename T>
LIDPLUG_HD T log2_of(T v) { return LIDPLUG_MATH(log2)(v); }
#undef LIDPLUG_MATH

// At most this many pyramid levels are passed to one launch (FPN has 4 or 5).
constexpr int kMaxLevels = 8;

// Per-launch description of the pyramid: sizes and scales of each level.
struct LevelInfo {
  int num_levels;
  int batch;
  int channels;
  int height[kMaxLevels];
  int width[kMaxLevels];
  float scale[kMaxLevels];
  // Level mapping of torchvision's LevelMapper: k_min = -log2(scale[0]), k_max = -log2(scale[L-1]).
  int k_min;
  int k_max;
};

// One box mapped onto its level: where its sampling grid starts and how it steps.
template <typename T>
struct RoiGeometry {
  bool valid;  // false for a non-finite box or an out-of-range batch index: contributes zero
  int batch;
  int level;
  T start_h, start_w;
  T bin_h, bin_w;
  int grid_h, grid_w;
};

// Level of a box (coordinates in input-image pixels), as torchvision's LevelMapper computes it:
// floor(4 + log2(sqrt(area) / 224) + 1e-6), clamped to [k_min, k_max], minus k_min. The math is
// in the boxes' dtype, in torchvision's order, so boxes on a level boundary land alike. A box of
// negative area (one side inverted) gets no level (-1): torchvision's NaN level matches none
// of the levels, so such a box pools zeros there too. So does a NaN area (a side that
// overflows to inf times a side of zero), which would otherwise reach the int conversion.
template <typename T>
LIDPLUG_HD int box_level(T x1, T y1, T x2, T y2, const LevelInfo& info) {
  if (info.num_levels == 1) return 0;
  const T area = (x2 - x1) * (y2 - y1);
  if (!(area >= T(0))) return -1;  // negative or NaN
  T lvl = floor_of(T(4) + log2_of(sqrt_of(area) / T(224)) + T(1e-6));
  // -inf (an empty box) clamps to k_min, as torch.clamp does.
  lvl = lvl < T(info.k_min) ? T(info.k_min) : (lvl > T(info.k_max) ? T(info.k_max) : lvl);
  const int idx = static_cast<int>(lvl) - info.k_min;
  // Only reachable when the levels are not consecutive, which the op's checks reject.
  return idx < 0 ? 0 : (idx >= info.num_levels ? info.num_levels - 1 : idx);
}

// Caps the adaptive sampling grid so a gigantic box cannot overflow `int` or loop for ages;
// torchvision has no cap, but no box smaller than 1024 bins of the level ever reaches it.
constexpr int kMaxGrid = 1024;

template <typename T>
LIDPLUG_HD RoiGeometry<T> roi_geometry(const T* roi, int pooled_h, int pooled_w,
                                       int sampling_ratio, bool aligned, const LevelInfo& info) {
  RoiGeometry<T> g;
  const T b = roi[0], x1 = roi[1], y1 = roi[2], x2 = roi[3], y2 = roi[4];
  g.valid = finite(b) && finite(x1) && finite(y1) && finite(x2) && finite(y2) &&
            b >= 0 && b < info.batch;
  g.batch = g.valid ? static_cast<int>(b) : 0;
  const int level = g.valid ? box_level(x1, y1, x2, y2, info) : -1;
  g.level = level < 0 ? 0 : level;
  const T scale = static_cast<T>(info.scale[g.level]);
  const T offset = aligned ? static_cast<T>(0.5) : static_cast<T>(0);
  g.start_w = x1 * scale - offset;
  g.start_h = y1 * scale - offset;
  T roi_w = x2 * scale - offset - g.start_w;
  T roi_h = y2 * scale - offset - g.start_h;
  if (!aligned) {
    // Legacy (aligned=False) behaviour: force malformed boxes to 1x1.
    roi_w = roi_w > T(1) ? roi_w : T(1);
    roi_h = roi_h > T(1) ? roi_h : T(1);
  }
  g.bin_h = roi_h / static_cast<T>(pooled_h);
  g.bin_w = roi_w / static_cast<T>(pooled_w);
  if (sampling_ratio > 0) {
    g.grid_h = sampling_ratio;
    g.grid_w = sampling_ratio;
  } else {
    const T gh = ceil_of(roi_h / static_cast<T>(pooled_h));
    const T gw = ceil_of(roi_w / static_cast<T>(pooled_w));
    // A negative-size aligned box gives 0 (or less) samples; count below becomes max(., 1).
    g.grid_h = gh > T(kMaxGrid) ? kMaxGrid : (gh > T(0) ? static_cast<int>(gh) : 0);
    g.grid_w = gw > T(kMaxGrid) ? kMaxGrid : (gw > T(0) ? static_cast<int>(gw) : 0);
  }
  if (level < 0) g.grid_h = g.grid_w = 0;  // contributes nothing: zeros out, no gradient
  return g;
}

// One axis of a bilinear tap: the two neighbouring indices and their weights.
// Out-of-map samples (beyond one pixel outside) give `inside == false` and weigh nothing. So do
// NaN samples (a box whose size overflows to inf samples 0 * inf in its first bin): the test is
// written so that NaN fails it, since a NaN reaching the int conversion below is undefined
// behaviour and an out-of-bounds read.
template <typename T>
struct Tap {
  bool inside;
  int low, high;
  T w_low, w_high;
};

template <typename T>
LIDPLUG_HD Tap<T> axis_tap(T v, int size) {
  Tap<T> t;
  t.inside = v >= T(-1) && v <= static_cast<T>(size);
  if (!t.inside) {
    t.low = t.high = 0;
    t.w_low = t.w_high = T(0);
    return t;
  }
  if (v <= T(0)) v = T(0);
  t.low = static_cast<int>(v);
  if (t.low >= size - 1) {
    t.low = t.high = size - 1;
    v = static_cast<T>(t.low);
  } else {
    t.high = t.low + 1;
  }
  const T l = v - static_cast<T>(t.low);
  t.w_low = T(1) - l;
  t.w_high = l;
  return t;
}

// The four pixels one sample reads (offsets into its plane, rows of W) and their bilinear
// weights. This is the one place the four-tap arithmetic is written: the CUDA kernel bodies
// (roi_pool_bodies.h) interpolate and scatter through it and the two functions below, and the
// CPU bodies (cpu/roi_pool_lanes.h) take its corners and apply the same two formulas to vectors
// of channels.
template <typename T>
struct Corners {
  int64_t offset[4];
  T weight[4];
};

template <typename T>
LIDPLUG_HD Corners<T> corners(const Tap<T>& ty, const Tap<T>& tx, int W) {
  const int64_t lo = static_cast<int64_t>(ty.low) * W, hi = static_cast<int64_t>(ty.high) * W;
  return {{lo + tx.low, lo + tx.high, hi + tx.low, hi + tx.high},
          {ty.w_low * tx.w_low, ty.w_low * tx.w_high, ty.w_high * tx.w_low,
           ty.w_high * tx.w_high}};
}

// The value at one sample: sum over the corners of weight * f, or weight * (f - r) when a
// reference plane r is given (the fused loss pools the difference of two pyramids), in acc_t.
template <typename acc_t, typename scalar_t>
LIDPLUG_HD acc_t interpolate(const Corners<acc_t>& c, const scalar_t* f,
                             const scalar_t* r = nullptr) {
  acc_t v[4];
  for (int j = 0; j < 4; ++j) {
    v[j] = static_cast<acc_t>(f[c.offset[j]]);
    if (r != nullptr) v[j] -= static_cast<acc_t>(r[c.offset[j]]);
  }
  return c.weight[0] * v[0] + c.weight[1] * v[1] + c.weight[2] * v[2] + c.weight[3] * v[3];
}

// The transpose of interpolate: adds value * weight to each corner of `plane` through `add`
// (a device atomic on CUDA, PlainAdd on the host).
template <typename acc_t, typename Add>
LIDPLUG_HD void scatter(const Corners<acc_t>& c, acc_t value, acc_t* plane, const Add& add) {
  for (int j = 0; j < 4; ++j) add(plane + c.offset[j], value * c.weight[j]);
}

// The host's add for scatter: the CPU kernels give each thread its own planes, and the emulated
// CUDA launch runs its threads one after another, so neither needs an atomic.
struct PlainAdd {
  template <typename T>
  LIDPLUG_HD void operator()(T* p, T v) const {
    *p += v;
  }
};

// Sample coordinate `i` (0 <= i < pooled * grid) along one axis of a box.
template <typename T>
LIDPLUG_HD T sample_coord(T start, T bin, int grid, int bin_index, int i) {
  return start + static_cast<T>(bin_index) * bin +
         (static_cast<T>(i) + static_cast<T>(0.5)) * bin / static_cast<T>(grid);
}

}  // namespace ops
}  // namespace lidplug
