// CPU kernels: RoIAlign of one pyramid or of the difference of two, and its backward.
//
// The forward is parallel over (box, channel block) pairs. The backward is parallel over channel
// blocks: each thread owns whole (image, channel) planes of every level's gradient and walks all boxes
// in a fixed order, so there are no atomics and the result is bitwise repeatable in every mode.
// (torchvision's CPU backward runs on one thread; this one uses all cores.)
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "../roi_ops.h"

namespace lidplug {
namespace ops {
namespace {

// The bilinear taps of one box along each axis, computed once and reused for every channel
// (and, being separable, PH*grid + PW*grid entries instead of one per sample point).
template <typename acc_t>
struct AxisTable {
  std::vector<Tap<acc_t>> y, x;
  int64_t box = -1;

  void build(const RoiGeometry<acc_t>& g, int64_t k, int pooled_h, int pooled_w, int H, int W) {
    box = k;
    y.resize(static_cast<size_t>(pooled_h) * g.grid_h);
    x.resize(static_cast<size_t>(pooled_w) * g.grid_w);
    for (int ph = 0; ph < pooled_h; ++ph)
      for (int i = 0; i < g.grid_h; ++i)
        y[ph * g.grid_h + i] = axis_tap(sample_coord(g.start_h, g.bin_h, g.grid_h, ph, i), H);
    for (int pw = 0; pw < pooled_w; ++pw)
      for (int i = 0; i < g.grid_w; ++i)
        x[pw * g.grid_w + i] = axis_tap(sample_coord(g.start_w, g.bin_w, g.grid_w, pw, i), W);
  }
};

// Calls fn(y tap, x tap) for every sample point of bin (ph, pw) that falls on the map.
template <typename acc_t, typename Fn>
inline void for_each_sample(const RoiGeometry<acc_t>& g, const AxisTable<acc_t>& table, int ph,
                            int pw, Fn&& fn) {
  for (int iy = 0; iy < g.grid_h; ++iy) {
    const auto& ty = table.y[ph * g.grid_h + iy];
    if (!ty.inside) continue;
    for (int ix = 0; ix < g.grid_w; ++ix) {
      const auto& tx = table.x[pw * g.grid_w + ix];
      if (tx.inside) fn(ty, tx);
    }
  }
}

// Channels handled together per sample point: independent sums give the core work to overlap
// (one channel alone is a chain of dependent adds) and each tap is read once per block.
constexpr int kBlock = 8;
// The scatter keeps a pointer and a gradient value per channel: half a block keeps them all in
// the 16 general registers of x86-64 (a full block spills and runs slower).
constexpr int kHalf = kBlock / 2;

// Pools N consecutive channel planes of one box (N a compile-time constant, so the N sums live
// in registers) into `o`, or with Subtract from `o`: the fused loss pools the reference pyramid
// into the same block right after the denoised one, so both are read while the block is hot but
// only their difference is ever stored.
template <int N, bool Subtract, typename scalar_t, typename acc_t>
inline void pool_block(const scalar_t* f, int64_t hw, int W, const RoiGeometry<acc_t>& g,
                       const AxisTable<acc_t>& table, int pooled_h, int pooled_w, acc_t* o) {
  const acc_t count = static_cast<acc_t>(std::max(g.grid_h * g.grid_w, 1));
  const int64_t osz = int64_t(pooled_h) * pooled_w;
  for (int ph = 0; ph < pooled_h; ++ph) {
    for (int pw = 0; pw < pooled_w; ++pw) {
      acc_t sum[N] = {};
      for_each_sample(g, table, ph, pw, [&](const Tap<acc_t>& ty, const Tap<acc_t>& tx) {
        // The corner weights once per sample, reused by the block's N channels.
        const auto c = corners(ty, tx, W);
        for (int j = 0; j < N; ++j) sum[j] += interpolate(c, f + j * hw);
      });
      for (int j = 0; j < N; ++j) {
        acc_t& dst = o[j * osz + ph * pooled_w + pw];
        dst = Subtract ? dst - sum[j] / count : sum[j] / count;
      }
    }
  }
}

// pool_block over nc <= kBlock channels: the full block unrolled, a remainder one by one.
template <bool Subtract, typename scalar_t, typename acc_t>
inline void pool_channels(int nc, const scalar_t* f, int64_t hw, int W,
                          const RoiGeometry<acc_t>& g, const AxisTable<acc_t>& table,
                          int pooled_h, int pooled_w, acc_t* o) {
  if (nc == kBlock) {
    pool_block<kBlock, Subtract>(f, hw, W, g, table, pooled_h, pooled_w, o);
    return;
  }
  const int64_t osz = int64_t(pooled_h) * pooled_w;
  for (int j = 0; j < nc; ++j) {
    pool_block<1, Subtract>(f + j * hw, hw, W, g, table, pooled_h, pooled_w, o + j * osz);
  }
}

// Box indices ordered by image (stable). Both kernels walk boxes in this order inside one block
// of channels, so the block's planes of one image stay in cache across that image's boxes.
template <typename acc_t>
std::vector<int64_t> by_image(const acc_t* rois, int64_t num_rois) {
  std::vector<int64_t> order(num_rois);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return rois[a * 5] < rois[b * 5]; });
  return order;
}

template <typename scalar_t, typename acc_t>
void pool_kernel(const std::vector<const scalar_t*>& feat, const std::vector<const scalar_t*>& ref,
                 const acc_t* rois, int64_t num_rois, const LevelInfo& info, int pooled_h,
                 int pooled_w, int sampling_ratio, bool aligned, acc_t* out) {
  const int64_t C = info.channels;
  const int64_t blocks = (C + kBlock - 1) / kBlock;
  const int64_t osz = int64_t(pooled_h) * pooled_w;
  const bool diff = !ref.empty();
  const std::vector<int64_t> order = by_image(rois, num_rois);
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    AxisTable<acc_t> table;
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t c0 = blk * kBlock;
      const int nc = static_cast<int>(std::min<int64_t>(kBlock, C - c0));
      for (const int64_t k : order) {
        const auto g =
            roi_geometry<acc_t>(rois + k * 5, pooled_h, pooled_w, sampling_ratio, aligned, info);
        if (g.grid_h <= 0 || g.grid_w <= 0) continue;  // the output is zero-initialised
        const int H = info.height[g.level], W = info.width[g.level];
        table.build(g, k, pooled_h, pooled_w, H, W);
        const int64_t hw = int64_t(H) * W, plane = (int64_t(g.batch) * C + c0) * hw;
        acc_t* o = out + (k * C + c0) * osz;
        pool_channels<false>(nc, feat[g.level] + plane, hw, W, g, table, pooled_h, pooled_w, o);
        if (diff) {
          pool_channels<true>(nc, ref[g.level] + plane, hw, W, g, table, pooled_h, pooled_w, o);
        }
      }
    }
  });
}

// Scatters the pooled gradient of N consecutive channels of one box into their planes.
template <int N, typename acc_t>
inline void scatter_block(const acc_t* grad, acc_t count, int64_t hw, int W,
                          const RoiGeometry<acc_t>& g, const AxisTable<acc_t>& table,
                          int pooled_h, int pooled_w, acc_t* dst) {
  const int64_t osz = int64_t(pooled_h) * pooled_w;
  for (int ph = 0; ph < pooled_h; ++ph) {
    for (int pw = 0; pw < pooled_w; ++pw) {
      acc_t gv[N];
      for (int j = 0; j < N; ++j) gv[j] = grad[j * osz + ph * pooled_w + pw] / count;
      for_each_sample(g, table, ph, pw, [&](const Tap<acc_t>& ty, const Tap<acc_t>& tx) {
        const auto c = corners(ty, tx, W);
        for (int j = 0; j < N; ++j) scatter(c, gv[j], dst + j * hw, PlainAdd{});
      });
    }
  }
}

template <typename acc_t>
void pool_backward_kernel(const acc_t* grad, const acc_t* rois, int64_t num_rois,
                          const LevelInfo& info, int pooled_h, int pooled_w, int sampling_ratio,
                          bool aligned, const std::vector<acc_t*>& out) {
  const int64_t C = info.channels;
  const int64_t blocks = (C + kBlock - 1) / kBlock;
  const int64_t osz = int64_t(pooled_h) * pooled_w;
  const std::vector<int64_t> order = by_image(rois, num_rois);
  // Threads own channel blocks, so no two write the same plane; each walks the boxes in a fixed
  // order (deterministic) and by image (cache-friendly).
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    AxisTable<acc_t> table;
    for (int64_t blk = begin; blk < end; ++blk) {
      for (const int64_t k : order) {
        const auto g = roi_geometry<acc_t>(rois + k * 5, pooled_h, pooled_w, sampling_ratio,
                                           aligned, info);
        if (g.grid_h <= 0 || g.grid_w <= 0) continue;
        const int H = info.height[g.level], W = info.width[g.level];
        const int64_t hw = int64_t(H) * W;
        table.build(g, k, pooled_h, pooled_w, H, W);
        const acc_t count = static_cast<acc_t>(g.grid_h * g.grid_w);
        const int64_t c0 = blk * kBlock;
        const int nc = static_cast<int>(std::min<int64_t>(kBlock, C - c0));
        acc_t* dst = out[g.level] + (static_cast<int64_t>(g.batch) * C + c0) * hw;
        const acc_t* gk = grad + (k * C + c0) * osz;
        int j = 0;
        for (; j + kHalf <= nc; j += kHalf) {
          scatter_block<kHalf>(gk + j * osz, count, hw, W, g, table, pooled_h, pooled_w,
                               dst + j * hw);
        }
        for (; j < nc; ++j) {
          scatter_block<1>(gk + j * osz, count, hw, W, g, table, pooled_h, pooled_w,
                           dst + j * hw);
        }
      }
    }
  });
}

template <typename scalar_t>
std::vector<const scalar_t*> level_ptrs(at::TensorList levels) {
  std::vector<const scalar_t*> p;
  for (const auto& t : levels) p.push_back(t.const_data_ptr<scalar_t>());
  return p;
}

at::Tensor pool_cpu(at::TensorList features, at::TensorList ref, const at::Tensor& rois,
                    const LevelInfo& info, int64_t pooled_h, int64_t pooled_w,
                    int64_t sampling_ratio, bool aligned) {
  const auto acc = acc_dtype(features[0].scalar_type());
  // Zeros: boxes with no samples (an inverted aligned box) are skipped by the kernel.
  at::Tensor out = at::zeros({rois.size(0), info.channels, pooled_h, pooled_w},
                             features[0].options().dtype(acc));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, features[0].scalar_type(), "lidplug_roi_pool_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        pool_kernel<scalar_t, acc_t>(level_ptrs<scalar_t>(features), level_ptrs<scalar_t>(ref),
                                     rois.const_data_ptr<acc_t>(), rois.size(0), info,
                                     static_cast<int>(pooled_h), static_cast<int>(pooled_w),
                                     static_cast<int>(sampling_ratio), aligned,
                                     out.mutable_data_ptr<acc_t>());
      });
  return out;
}

std::vector<at::Tensor> pool_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                          const LevelInfo& info, int64_t sampling_ratio,
                                          bool aligned, bool /*deterministic: always*/) {
  std::vector<at::Tensor> out;
  for (int i = 0; i < info.num_levels; ++i) {
    out.push_back(at::zeros({info.batch, info.channels, info.height[i], info.width[i]},
                            grad.options()));
  }
  if (grad.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "lidplug_roi_pool_backward_cpu", [&] {
    std::vector<scalar_t*> dst;
    for (auto& t : out) dst.push_back(t.mutable_data_ptr<scalar_t>());
    pool_backward_kernel<scalar_t>(grad.const_data_ptr<scalar_t>(),
                                   rois.const_data_ptr<scalar_t>(), rois.size(0), info,
                                   static_cast<int>(grad.size(2)), static_cast<int>(grad.size(3)),
                                   static_cast<int>(sampling_ratio), aligned, dst);
  });
  return out;
}

const Backend kCpuBackend{&pool_cpu, &pool_backward_cpu};

}  // namespace
}  // namespace ops
}  // namespace lidplug

LIDPLUG_REGISTER_BACKEND(lidplug, CPU, ::lidplug::ops::kCpuBackend)
