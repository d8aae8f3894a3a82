// CPU kernels: RoIAlign of one pyramid or of the difference of two, and its backward.
//
// The forward is parallel over (box, channel) pairs. The backward is parallel over channels:
// each thread owns whole (image, channel) planes of every level's gradient and walks all boxes
// in a fixed order, so there are no atomics and the result is bitwise repeatable in every mode.
// (torchvision's CPU backward runs on one thread; this one uses all cores.)
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/util/irange.h>
#include <torch/library.h>

#include "../roi_ops.h"

namespace lidplug {
namespace ops {
namespace {

template <typename scalar_t, typename acc_t>
void pool_kernel(const std::vector<const scalar_t*>& feat, const std::vector<const scalar_t*>& ref,
                 const acc_t* rois, int64_t num_rois, const LevelInfo& info, int pooled_h,
                 int pooled_w, int sampling_ratio, bool aligned, acc_t* out) {
  const int64_t C = info.channels;
  const bool diff = !ref.empty();
  at::parallel_for(0, num_rois * C, 16, [&](int64_t begin, int64_t end) {
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t k = idx / C, c = idx % C;
      const auto g = roi_geometry<acc_t>(rois + k * 5, pooled_h, pooled_w, sampling_ratio,
                                         aligned, info);
      const int H = info.height[g.level], W = info.width[g.level];
      const int64_t plane = (static_cast<int64_t>(g.batch) * C + c) * H * W;
      const scalar_t* f = feat[g.level] + plane;
      const scalar_t* r = diff ? ref[g.level] + plane : nullptr;
      const acc_t count = static_cast<acc_t>(std::max(g.grid_h * g.grid_w, 1));
      acc_t* o = out + idx * pooled_h * pooled_w;
      for (int ph = 0; ph < pooled_h; ++ph) {
        for (int pw = 0; pw < pooled_w; ++pw) {
          acc_t sum = 0;
          for (int iy = 0; iy < g.grid_h; ++iy) {
            const auto ty = axis_tap(sample_coord(g.start_h, g.bin_h, g.grid_h, ph, iy), H);
            if (!ty.inside) continue;
            for (int ix = 0; ix < g.grid_w; ++ix) {
              const auto tx = axis_tap(sample_coord(g.start_w, g.bin_w, g.grid_w, pw, ix), W);
              if (!tx.inside) continue;
              const int64_t i1 = ty.low * W + tx.low, i2 = ty.low * W + tx.high;
              const int64_t i3 = ty.high * W + tx.low, i4 = ty.high * W + tx.high;
              acc_t v1 = f[i1], v2 = f[i2], v3 = f[i3], v4 = f[i4];
              if (diff) {
                v1 -= static_cast<acc_t>(r[i1]);
                v2 -= static_cast<acc_t>(r[i2]);
                v3 -= static_cast<acc_t>(r[i3]);
                v4 -= static_cast<acc_t>(r[i4]);
              }
              sum += ty.w_low * tx.w_low * v1 + ty.w_low * tx.w_high * v2 +
                     ty.w_high * tx.w_low * v3 + ty.w_high * tx.w_high * v4;
            }
          }
          o[ph * pooled_w + pw] = sum / count;
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
  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      for (int64_t k = 0; k < num_rois; ++k) {
        const auto g = roi_geometry<acc_t>(rois + k * 5, pooled_h, pooled_w, sampling_ratio,
                                           aligned, info);
        if (g.grid_h <= 0 || g.grid_w <= 0) continue;
        const int H = info.height[g.level], W = info.width[g.level];
        acc_t* dst = out[g.level] + (static_cast<int64_t>(g.batch) * C + c) * H * W;
        const acc_t count = static_cast<acc_t>(g.grid_h * g.grid_w);
        const acc_t* gk = grad + (k * C + c) * pooled_h * pooled_w;
        for (int ph = 0; ph < pooled_h; ++ph) {
          for (int pw = 0; pw < pooled_w; ++pw) {
            const acc_t gv = gk[ph * pooled_w + pw] / count;
            if (gv == acc_t(0)) continue;
            for (int iy = 0; iy < g.grid_h; ++iy) {
              const auto ty = axis_tap(sample_coord(g.start_h, g.bin_h, g.grid_h, ph, iy), H);
              if (!ty.inside) continue;
              for (int ix = 0; ix < g.grid_w; ++ix) {
                const auto tx = axis_tap(sample_coord(g.start_w, g.bin_w, g.grid_w, pw, ix), W);
                if (!tx.inside) continue;
                dst[ty.low * W + tx.low] += gv * ty.w_low * tx.w_low;
                dst[ty.low * W + tx.high] += gv * ty.w_low * tx.w_high;
                dst[ty.high * W + tx.low] += gv * ty.w_high * tx.w_low;
                dst[ty.high * W + tx.high] += gv * ty.w_high * tx.w_high;
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
