// The per-element bodies of the CUDA kernels, written once as __host__ __device__ code.
//
// nvcc compiles them into the CUDA kernels (cuda/roi_pool_kernel.cu), where each __global__
// kernel is a grid-stride loop around one body; the host compiler compiles the same bodies into
// the emulated launch (cpu/roi_pool_cuda_emulated.cpp), which runs them over the same launch
// grid on the CPU, so that CI without a GPU tests the CUDA code's indexing and formulas.
//
// A body is a struct of one kernel's arguments whose operator()(idx) does the work of one
// element of the grid-stride loop. The scatter's add is a template parameter: a device atomic on
// CUDA, a plain add on the host (the emulated launch runs one thread at a time).
//
// Kernels:
//   Pool     one element (k, c, ph, pw) of the pooled output, of one pyramid or the difference
//            of two;
//   Scatter  the default backward: one pooled element's gradient, added into the level
//            gradients through `add` (atomics on CUDA, as torchvision does);
//   BoxKey   the deterministic backward's sort key of a box: level * B + image;
//   Gather   the deterministic backward: one gradient pixel, summed over the boxes of its
//            (level, image) in a fixed order. Bilinear RoIAlign is separable: the weight of
//            pixel (y, x) for bin (ph, pw) is wy[ph](y) * wx[pw](x).
#pragma once

#include <cstdint>

#include "roi_geometry.h"

namespace lidplug {
namespace ops {
namespace bodies {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;
// Bins per axis whose weights the deterministic gather holds at once; a larger output is walked
// in tiles of this many bins per axis (the summation order stays fixed).
constexpr int kBinTile = 32;

// Blocks of kThreads for n elements, at most max_blocks (the grid-stride loop covers the rest).
inline int64_t blocks_for(int64_t n, int64_t max_blocks = kMaxBlocks) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return b < 1 ? 1 : (b > max_blocks ? max_blocks : b);
}

// The loop of one thread of a grid-stride kernel: thread `thread` of block `block`, in a launch
// of `blocks` blocks of `threads` threads, runs body(idx) for its indices below n.
template <typename Body>
LIDPLUG_HD void grid_stride(const Body& body, int64_t n, int64_t block, int64_t thread,
                            int64_t blocks, int64_t threads) {
  for (int64_t idx = block * threads + thread; idx < n; idx += blocks * threads) body(idx);
}

// Every level of a pyramid reached from one launch: a by-value table of level pointers.
template <typename T>
struct Levels {
  T* ptr[kMaxLevels];
};

// One element (k, c, ph, pw) of a [K, C, PH, PW] pooled tensor, by flat index, with its box's
// geometry, level size and the offset of its (image, channel) plane.
template <typename acc_t>
struct PooledElement {
  int64_t k, plane;
  int c, ph, pw, H, W;
  RoiGeometry<acc_t> g;
};

template <typename acc_t>
LIDPLUG_HD PooledElement<acc_t> pooled_element(int64_t idx, const acc_t* rois,
                                               const LevelInfo& info, int pooled_h, int pooled_w,
                                               int sampling_ratio, bool aligned) {
  PooledElement<acc_t> e;
  e.pw = static_cast<int>(idx % pooled_w);
  e.ph = static_cast<int>((idx / pooled_w) % pooled_h);
  e.c = static_cast<int>((idx / pooled_w / pooled_h) % info.channels);
  e.k = idx / pooled_w / pooled_h / info.channels;
  e.g = roi_geometry<acc_t>(rois + e.k * 5, pooled_h, pooled_w, sampling_ratio, aligned, info);
  e.H = info.height[e.g.level];
  e.W = info.width[e.g.level];
  e.plane = (static_cast<int64_t>(e.g.batch) * info.channels + e.c) * e.H * e.W;
  return e;
}

// Calls fn(y tap, x tap) for every sample point of bin (ph, pw) that falls on the map.
template <typename acc_t, typename Fn>
LIDPLUG_HD void for_each_sample(const RoiGeometry<acc_t>& g, int ph, int pw, int H, int W,
                                Fn&& fn) {
  for (int iy = 0; iy < g.grid_h; ++iy) {
    const auto ty = axis_tap(sample_coord(g.start_h, g.bin_h, g.grid_h, ph, iy), H);
    if (!ty.inside) continue;
    for (int ix = 0; ix < g.grid_w; ++ix) {
      const auto tx = axis_tap(sample_coord(g.start_w, g.bin_w, g.grid_w, pw, ix), W);
      if (tx.inside) fn(ty, tx);
    }
  }
}

// The arguments every per-element kernel shares.
template <typename acc_t>
struct Launch {
  const acc_t* rois;
  LevelInfo info;
  int pooled_h, pooled_w, sampling_ratio;
  bool aligned;

  LIDPLUG_HD PooledElement<acc_t> element(int64_t idx) const {
    return pooled_element(idx, rois, info, pooled_h, pooled_w, sampling_ratio, aligned);
  }
  LIDPLUG_HD RoiGeometry<acc_t> geometry(int64_t k) const {
    return roi_geometry<acc_t>(rois + k * 5, pooled_h, pooled_w, sampling_ratio, aligned, info);
  }
};

// out[idx] = RoIAlign(feat)[idx] (- RoIAlign(ref)[idx] when diff): every element is written.
template <typename scalar_t, typename acc_t>
struct Pool {
  Launch<acc_t> p;
  Levels<const scalar_t> feat, ref;
  bool diff;
  acc_t* out;

  LIDPLUG_HD void operator()(int64_t idx) const {
    const auto e = p.element(idx);
    const scalar_t* f = feat.ptr[e.g.level] + e.plane;
    const scalar_t* r = diff ? ref.ptr[e.g.level] + e.plane : nullptr;
    acc_t sum = 0;
    for_each_sample(e.g, e.ph, e.pw, e.H, e.W, [&](const Tap<acc_t>& ty, const Tap<acc_t>& tx) {
      sum += interpolate(corners(ty, tx, e.W), f, r);
    });
    const int count = e.g.grid_h * e.g.grid_w;
    out[idx] = sum / static_cast<acc_t>(count > 1 ? count : 1);
  }
};

// Adds the gradient of pooled element idx into the level gradients `out` through `add`.
template <typename acc_t, typename Add>
struct Scatter {
  Launch<acc_t> p;
  const acc_t* grad;
  Levels<acc_t> out;
  Add add;

  LIDPLUG_HD void operator()(int64_t idx) const {
    const auto e = p.element(idx);
    if (e.g.grid_h <= 0 || e.g.grid_w <= 0) return;
    const acc_t gv = grad[idx] / static_cast<acc_t>(e.g.grid_h * e.g.grid_w);
    if (gv == acc_t(0)) return;
    acc_t* dst = out.ptr[e.g.level] + e.plane;
    for_each_sample(e.g, e.ph, e.pw, e.H, e.W, [&](const Tap<acc_t>& ty, const Tap<acc_t>& tx) {
      scatter(corners(ty, tx, e.W), gv, dst, add);
    });
  }
};

// Sort key of box k for the gather: level * B + image; invalid boxes go past the end
// (num_levels * B), where no segment reaches.
template <typename acc_t>
struct BoxKey {
  const acc_t* rois;
  LevelInfo info;
  int64_t* key;

  LIDPLUG_HD void operator()(int64_t k) const {
    const auto g = roi_geometry<acc_t>(rois + k * 5, 1, 1, 1, false, info);
    key[k] = g.valid ? static_cast<int64_t>(g.level) * info.batch + g.batch
                     : static_cast<int64_t>(info.num_levels) * info.batch;
  }
};

// Weight of bins first_bin .. first_bin + bins - 1 along one axis for pixel `p`: sum over the
// bin's samples of the bilinear weight that sample puts on `p`. Returns false when no sample of
// these bins touches `p`.
template <typename acc_t>
LIDPLUG_HD bool axis_weights(acc_t start, acc_t bin, int grid, int first_bin, int bins, int size,
                             int p, acc_t* w) {
  bool any = false;
  for (int b = 0; b < bins; ++b) {
    acc_t s = 0;
    for (int i = 0; i < grid; ++i) {
      const auto t = axis_tap(sample_coord(start, bin, grid, first_bin + b, i), size);
      if (!t.inside) continue;
      s += (t.low == p ? t.w_low : acc_t(0)) + (t.high == p ? t.w_high : acc_t(0));
    }
    w[b] = s;
    any = any || s != acc_t(0);
  }
  return any;
}

// Cheap reject before the weights: the rows (columns) a box's samples can touch lie in
// [floor(max(lowest sample, 0)), highest sample + 1]. The samples run from the first bin's first
// to the last bin's last, upwards, or downwards for a box drawn backwards under aligned=True,
// which keeps its negative size (aligned=False makes it 1 pixel wide instead).
template <typename acc_t>
LIDPLUG_HD bool may_touch(acc_t start, acc_t bin, int grid, int pooled, int p) {
  const acc_t a = sample_coord(start, bin, grid, 0, 0);
  const acc_t b = sample_coord(start, bin, grid, pooled - 1, grid - 1);
  const acc_t lowest = a < b ? a : b, highest = a < b ? b : a;
  const acc_t lo = lowest <= acc_t(0) ? acc_t(0) : floor_of(lowest);
  return acc_t(p) >= lo && acc_t(p) <= highest + acc_t(1);
}

// Gradient pixel idx (over all levels: level-major, then image, row, column) of every channel,
// summed over the boxes of its (level, image) segment: order[offsets[seg] .. offsets[seg + 1]).
template <typename acc_t>
struct Gather {
  Launch<acc_t> p;
  const acc_t* grad;
  const int64_t* order;
  const int64_t* offsets;
  Levels<acc_t> out;

  LIDPLUG_HD void operator()(int64_t idx) const {
    const LevelInfo& info = p.info;
    const int C = info.channels, B = info.batch;
    const int pooled_h = p.pooled_h, pooled_w = p.pooled_w;
    // Which level, image and pixel this thread owns.
    int level = 0;
    int64_t rest = idx;
    while (rest >= static_cast<int64_t>(B) * info.height[level] * info.width[level]) {
      rest -= static_cast<int64_t>(B) * info.height[level] * info.width[level];
      ++level;
    }
    const int H = info.height[level], W = info.width[level];
    const int64_t hw = static_cast<int64_t>(H) * W;
    const int x = static_cast<int>(rest % W), y = static_cast<int>((rest / W) % H);
    const int b = static_cast<int>(rest / W / H);
    const int64_t seg = static_cast<int64_t>(level) * B + b;
    acc_t* dst =
        out.ptr[level] + static_cast<int64_t>(b) * C * hw + static_cast<int64_t>(y) * W + x;
    for (int64_t j = offsets[seg]; j < offsets[seg + 1]; ++j) {
      const int64_t k = order[j];
      const auto g = p.geometry(k);
      if (g.grid_h <= 0 || g.grid_w <= 0) continue;
      if (!may_touch(g.start_h, g.bin_h, g.grid_h, pooled_h, y) ||
          !may_touch(g.start_w, g.bin_w, g.grid_w, pooled_w, x)) {
        continue;
      }
      const acc_t inv_count = acc_t(1) / static_cast<acc_t>(g.grid_h * g.grid_w);
      const acc_t* gk = grad + k * C * pooled_h * pooled_w;
      // One tile for outputs up to kBinTile x kBinTile (7x7 in practice).
      for (int ph0 = 0; ph0 < pooled_h; ph0 += kBinTile) {
        const int nh = pooled_h - ph0 < kBinTile ? pooled_h - ph0 : kBinTile;
        acc_t wy[kBinTile];
        if (!axis_weights(g.start_h, g.bin_h, g.grid_h, ph0, nh, H, y, wy)) continue;
        for (int pw0 = 0; pw0 < pooled_w; pw0 += kBinTile) {
          const int nw = pooled_w - pw0 < kBinTile ? pooled_w - pw0 : kBinTile;
          acc_t wx[kBinTile];
          if (!axis_weights(g.start_w, g.bin_w, g.grid_w, pw0, nw, W, x, wx)) continue;
          for (int c = 0; c < C; ++c) {
            const acc_t* gc = gk + (static_cast<int64_t>(c) * pooled_h + ph0) * pooled_w + pw0;
            acc_t s = 0;
            for (int ph = 0; ph < nh; ++ph) {
              if (wy[ph] == acc_t(0)) continue;
              acc_t row = 0;
              for (int pw = 0; pw < nw; ++pw) row += wx[pw] * gc[ph * pooled_w + pw];
              s += wy[ph] * row;
            }
            dst[c * hw] += s * inv_count;
          }
        }
      }
    }
  }
};

}  // namespace bodies
}  // namespace ops
}  // namespace lidplug
