// CPU kernels: RoIAlign of one pyramid or of the difference of two, and its backward.
//
// The forward is parallel over (box, channel block) pairs. The backward is parallel over channel
// blocks: each thread owns whole (image, channel) planes of every level's gradient and walks all boxes
// in a fixed order, so there are no atomics and the result is bitwise repeatable in every mode.
// (torchvision's CPU backward runs on one thread; this one uses all cores.)
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

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

// Channels handled together per sample point: independent sums give the core work to overlap
// (one channel alone is a chain of dependent adds) and each tap is read once per block.
constexpr int kBlock = 8;

template <typename scalar_t, typename acc_t>
inline acc_t bilinear(const scalar_t* plane, int W, const Tap<acc_t>& ty, const Tap<acc_t>& tx) {
  const scalar_t* lo = plane + static_cast<int64_t>(ty.low) * W;
  const scalar_t* hi = plane + static_cast<int64_t>(ty.high) * W;
  return ty.w_low * (tx.w_low * static_cast<acc_t>(lo[tx.low]) +
                     tx.w_high * static_cast<acc_t>(lo[tx.high])) +
         ty.w_high * (tx.w_low * static_cast<acc_t>(hi[tx.low]) +
                      tx.w_high * static_cast<acc_t>(hi[tx.high]));
}

// Pools N consecutive channel planes of one box (N a compile-time constant, so the N sums live
// in registers). `r` (may be null) is subtracted: the pooled difference of two pyramids.
template <int N, typename scalar_t, typename acc_t>
inline void pool_block(const scalar_t* f, const scalar_t* r, int64_t hw, int W,
                       const RoiGeometry<acc_t>& g, const AxisTable<acc_t>& table, int pooled_h,
                       int pooled_w, acc_t* o) {
  const acc_t count = static_cast<acc_t>(std::max(g.grid_h * g.grid_w, 1));
  for (int ph = 0; ph < pooled_h; ++ph) {
    for (int pw = 0; pw < pooled_w; ++pw) {
      acc_t sum[N] = {};
      for (int iy = 0; iy < g.grid_h; ++iy) {
        const auto& ty = table.y[ph * g.grid_h + iy];
        if (!ty.inside) continue;
        for (int ix = 0; ix < g.grid_w; ++ix) {
          const auto& tx = table.x[pw * g.grid_w + ix];
          if (!tx.inside) continue;
          for (int j = 0; j < N; ++j) sum[j] += bilinear(f + j * hw, W, ty, tx);
          if (r != nullptr) {
            for (int j = 0; j < N; ++j) sum[j] -= bilinear(r + j * hw, W, ty, tx);
          }
        }
      }
      for (int j = 0; j < N; ++j) o[(j * pooled_h + ph) * pooled_w + pw] = sum[j] / count;
    }
  }
}

template <typename scalar_t, typename acc_t>
void pool_kernel(const std::vector<const scalar_t*>& feat, const std::vector<const scalar_t*>& ref,
                 const acc_t* rois, int64_t num_rois, const LevelInfo& info, int pooled_h,
                 int pooled_w, int sampling_ratio, bool aligned, acc_t* out) {
  const int64_t C = info.channels;
  const int64_t blocks = (C + kBlock - 1) / kBlock;
  const bool diff = !ref.empty();
  at::parallel_for(0, num_rois * blocks, 1, [&](int64_t begin, int64_t end) {
    AxisTable<acc_t> table;
    RoiGeometry<acc_t> g{};
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t k = idx / blocks, c0 = (idx % blocks) * kBlock;
      const int nc = static_cast<int>(std::min<int64_t>(kBlock, C - c0));
      if (k != table.box) {
        g = roi_geometry<acc_t>(rois + k * 5, pooled_h, pooled_w, sampling_ratio, aligned, info);
        table.build(g, k, pooled_h, pooled_w, info.height[g.level], info.width[g.level]);
      }
      const int H = info.height[g.level], W = info.width[g.level];
      const int64_t plane = (static_cast<int64_t>(g.batch) * C + c0) * H * W, hw = int64_t(H) * W;
      const scalar_t* f = feat[g.level] + plane;
      const scalar_t* r = diff ? ref[g.level] + plane : nullptr;
      acc_t* o = out + (k * C + c0) * pooled_h * pooled_w;
      if (nc == kBlock) {
        pool_block<kBlock>(f, r, hw, W, g, table, pooled_h, pooled_w, o);
      } else {
        for (int j = 0; j < nc; ++j) {
          pool_block<1>(f + j * hw, r ? r + j * hw : nullptr, hw, W, g, table, pooled_h,
                        pooled_w, o + j * pooled_h * pooled_w);
        }
      }
    }
  });
}

template <typename acc_t>
void pool_backward_kernel(const acc_t* grad, const acc_t* rois, int64_t num_rois,
                          const LevelInfo& info, int pooled_h, int pooled_w, int sampling_ratio,
                          bool aligned, const std::vector<acc_t*>& out) {
  const int64_t C = info.channels;
  const int64_t blocks = (C + kBlock - 1) / kBlock;
  // Threads own channel blocks, so no two write the same plane; each walks the boxes in order
  // and builds a box's tables once for its whole range of channels.
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    AxisTable<acc_t> table;
    for (int64_t k = 0; k < num_rois; ++k) {
      const auto g = roi_geometry<acc_t>(rois + k * 5, pooled_h, pooled_w, sampling_ratio,
                                         aligned, info);
      if (g.grid_h <= 0 || g.grid_w <= 0) continue;
      const int H = info.height[g.level], W = info.width[g.level];
      const int64_t hw = int64_t(H) * W;
      table.build(g, k, pooled_h, pooled_w, H, W);
      const acc_t count = static_cast<acc_t>(g.grid_h * g.grid_w);
      for (int64_t blk = begin; blk < end; ++blk) {
        const int64_t c0 = blk * kBlock;
        const int nc = static_cast<int>(std::min<int64_t>(kBlock, C - c0));
        acc_t* dst = out[g.level] + (static_cast<int64_t>(g.batch) * C + c0) * hw;
        const acc_t* gk = grad + (k * C + c0) * pooled_h * pooled_w;
        for (int ph = 0; ph < pooled_h; ++ph) {
          for (int pw = 0; pw < pooled_w; ++pw) {
            acc_t gv[kBlock];
            for (int j = 0; j < nc; ++j) {
              gv[j] = gk[(j * pooled_h + ph) * pooled_w + pw] / count;
            }
            for (int iy = 0; iy < g.grid_h; ++iy) {
              const auto& ty = table.y[ph * g.grid_h + iy];
              if (!ty.inside) continue;
              for (int ix = 0; ix < g.grid_w; ++ix) {
                const auto& tx = table.x[pw * g.grid_w + ix];
                if (!tx.inside) continue;
                const acc_t w1 = ty.w_low * tx.w_low, w2 = ty.w_low * tx.w_high;
                const acc_t w3 = ty.w_high * tx.w_low, w4 = ty.w_high * tx.w_high;
                const int64_t i1 = int64_t(ty.low) * W + tx.low, i2 = int64_t(ty.low) * W + tx.high;
                const int64_t i3 = int64_t(ty.high) * W + tx.low;
                const int64_t i4 = int64_t(ty.high) * W + tx.high;
                for (int j = 0; j < nc; ++j) {
                  acc_t* d = dst + j * hw;
                  d[i1] += gv[j] * w1;
                  d[i2] += gv[j] * w2;
                  d[i3] += gv[j] * w3;
                  d[i4] += gv[j] * w4;
                }
              }
            }
          }
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
  at::Tensor out = at::empty({rois.size(0), info.channels, pooled_h, pooled_w},
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

LIDPLUG_REGISTER_BACKEND(CPU, ::lidplug::ops::kCpuBackend)
