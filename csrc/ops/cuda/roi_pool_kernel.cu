// CUDA kernels: RoIAlign of one pyramid or of the difference of two, and its backward.
//
// Forward: one thread per pooled element (k, c, ph, pw); every level of the pyramid is reached
// from one launch through a by-value table of level pointers.
// Backward, default mode: one thread per pooled element scatters into the level gradients with
// atomics (as torchvision does) -- fast, but the float sum order varies run to run.
// Backward, deterministic mode: a gather. Boxes are sorted by (level, image); one thread per
// gradient pixel walks the boxes of its (level, image), and uses that bilinear RoIAlign is
// separable: the weight of pixel (y, x) for bin (ph, pw) is wy[ph](y) * wx[pw](x). No atomics,
// fixed summation order, bitwise repeatable.
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../roi_ops.h"

namespace lidplug {
namespace ops {
namespace {

constexpr int kThreads = 256;
// Bins per axis the deterministic gather keeps in registers.
constexpr int kMaxPooled = 32;

template <typename T>
struct Levels {
  T* ptr[kMaxLevels];
};

inline int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(b, 1), 1 << 20));
}

// One element (k, c, ph, pw) of a [K, C, PH, PW] pooled tensor, by flat index, with its box's
// geometry, level size and the offset of its (image, channel) plane.
template <typename acc_t>
struct PooledElement {
  int64_t k, plane;
  int c, ph, pw, H, W;
  RoiGeometry<acc_t> g;
};

template <typename acc_t>
__device__ __forceinline__ PooledElement<acc_t> pooled_element(int64_t idx, const acc_t* rois,
                                                               const LevelInfo& info,
                                                               int pooled_h, int pooled_w,
                                                               int sampling_ratio, bool aligned) {
  PooledElement<acc_t> e;
  e.pw = idx % pooled_w;
  e.ph = (idx / pooled_w) % pooled_h;
  e.c = (idx / pooled_w / pooled_h) % info.channels;
  e.k = idx / pooled_w / pooled_h / info.channels;
  e.g = roi_geometry<acc_t>(rois + e.k * 5, pooled_h, pooled_w, sampling_ratio, aligned, info);
  e.H = info.height[e.g.level];
  e.W = info.width[e.g.level];
  e.plane = (int64_t(e.g.batch) * info.channels + e.c) * e.H * e.W;
  return e;
}

// Calls fn(y tap, x tap) for every sample point of bin (ph, pw) that falls on the map.
template <typename acc_t, typename Fn>
__device__ __forceinline__ void for_each_sample(const RoiGeometry<acc_t>& g, int ph, int pw, int H,
                                                int W, Fn&& fn) {
  for (int iy = 0; iy < g.grid_h; ++iy) {
    const auto ty = axis_tap(sample_coord(g.start_h, g.bin_h, g.grid_h, ph, iy), H);
    if (!ty.inside) continue;
    for (int ix = 0; ix < g.grid_w; ++ix) {
      const auto tx = axis_tap(sample_coord(g.start_w, g.bin_w, g.grid_w, pw, ix), W);
      if (tx.inside) fn(ty, tx);
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void pool_kernel(Levels<const scalar_t> feat, Levels<const scalar_t> ref, bool diff,
                            const acc_t* __restrict__ rois, int64_t n, LevelInfo info,
                            int pooled_h, int pooled_w, int sampling_ratio, bool aligned,
                            acc_t* __restrict__ out) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n;
       idx += int64_t(blockDim.x) * gridDim.x) {
    const auto e = pooled_element(idx, rois, info, pooled_h, pooled_w, sampling_ratio, aligned);
    const auto& g = e.g;
    const int W = e.W;
    const scalar_t* f = feat.ptr[g.level] + e.plane;
    const scalar_t* r = diff ? ref.ptr[g.level] + e.plane : nullptr;
    acc_t sum = 0;
    for_each_sample(g, e.ph, e.pw, e.H, W, [&](const Tap<acc_t>& ty, const Tap<acc_t>& tx) {
      const int64_t i1 = ty.low * W + tx.low, i2 = ty.low * W + tx.high;
      const int64_t i3 = ty.high * W + tx.low, i4 = ty.high * W + tx.high;
      acc_t v1 = f[i1], v2 = f[i2], v3 = f[i3], v4 = f[i4];
      if (diff) {
        v1 -= static_cast<acc_t>(r[i1]);
        v2 -= static_cast<acc_t>(r[i2]);
        v3 -= static_cast<acc_t>(r[i3]);
        v4 -= static_cast<acc_t>(r[i4]);
      }
      sum += ty.w_low * tx.w_low * v1 + ty.w_low * tx.w_high * v2 + ty.w_high * tx.w_low * v3 +
             ty.w_high * tx.w_high * v4;
    });
    out[idx] = sum / static_cast<acc_t>(max(g.grid_h * g.grid_w, 1));
  }
}

template <typename acc_t>
__global__ void scatter_backward_kernel(const acc_t* __restrict__ grad,
                                        const acc_t* __restrict__ rois, int64_t n, LevelInfo info,
                                        int pooled_h, int pooled_w, int sampling_ratio,
                                        bool aligned, Levels<acc_t> out) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n;
       idx += int64_t(blockDim.x) * gridDim.x) {
    const auto e = pooled_element(idx, rois, info, pooled_h, pooled_w, sampling_ratio, aligned);
    const auto& g = e.g;
    if (g.grid_h <= 0 || g.grid_w <= 0) continue;
    const acc_t gv = grad[idx] / static_cast<acc_t>(g.grid_h * g.grid_w);
    if (gv == acc_t(0)) continue;
    const int W = e.W;
    acc_t* dst = out.ptr[g.level] + e.plane;
    for_each_sample(g, e.ph, e.pw, e.H, W, [&](const Tap<acc_t>& ty, const Tap<acc_t>& tx) {
      gpuAtomicAdd(dst + ty.low * W + tx.low, gv * ty.w_low * tx.w_low);
      gpuAtomicAdd(dst + ty.low * W + tx.high, gv * ty.w_low * tx.w_high);
      gpuAtomicAdd(dst + ty.high * W + tx.low, gv * ty.w_high * tx.w_low);
      gpuAtomicAdd(dst + ty.high * W + tx.high, gv * ty.w_high * tx.w_high);
    });
  }
}

// Sort key of each box for the gather: level * B + image; invalid boxes go past the end.
template <typename acc_t>
__global__ void box_key_kernel(const acc_t* __restrict__ rois, int64_t num_rois, LevelInfo info,
                               int64_t* __restrict__ key) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < num_rois;
       k += int64_t(blockDim.x) * gridDim.x) {
    const auto g = roi_geometry<acc_t>(rois + k * 5, 1, 1, 1, false, info);
    key[k] = g.valid ? int64_t(g.level) * info.batch + g.batch
                     : int64_t(info.num_levels) * info.batch;
  }
}

// Weight of every bin along one axis for pixel `p`: sum over the bin's samples of the bilinear
// weight that sample puts on `p`. Returns false when no sample of the box touches `p`.
template <typename acc_t>
__device__ bool axis_weights(acc_t start, acc_t bin, int grid, int pooled, int size, int p,
                             acc_t* w) {
  bool any = false;
  for (int b = 0; b < pooled; ++b) {
    acc_t s = 0;
    for (int i = 0; i < grid; ++i) {
      const auto t = axis_tap(sample_coord(start, bin, grid, b, i), size);
      if (!t.inside) continue;
      s += (t.low == p ? t.w_low : acc_t(0)) + (t.high == p ? t.w_high : acc_t(0));
    }
    w[b] = s;
    any = any || s != acc_t(0);
  }
  return any;
}

template <typename acc_t>
__device__ __forceinline__ bool may_touch(acc_t start, acc_t bin, int grid, int pooled, int p) {
  const acc_t first = sample_coord(start, bin, grid, 0, 0);
  const acc_t last = sample_coord(start, bin, grid, pooled - 1, grid - 1);
  const acc_t lo = first <= acc_t(0) ? acc_t(0) : floor(first);
  return acc_t(p) >= lo && acc_t(p) <= last + acc_t(1);
}

template <typename acc_t>
__global__ void gather_backward_kernel(const acc_t* __restrict__ grad,
                                       const acc_t* __restrict__ rois,
                                       const int64_t* __restrict__ order,
                                       const int64_t* __restrict__ offsets, int64_t n,
                                       LevelInfo info, int pooled_h, int pooled_w,
                                       int sampling_ratio, bool aligned, Levels<acc_t> out) {
  const int C = info.channels, B = info.batch;
  acc_t wy[kMaxPooled], wx[kMaxPooled];
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n;
       idx += int64_t(blockDim.x) * gridDim.x) {
    // Which level, image and pixel this thread owns.
    int level = 0;
    int64_t rest = idx;
    while (rest >= int64_t(B) * info.height[level] * info.width[level]) {
      rest -= int64_t(B) * info.height[level] * info.width[level];
      ++level;
    }
    const int H = info.height[level], W = info.width[level];
    const int x = rest % W, y = (rest / W) % H, b = rest / W / H;
    const int64_t seg = int64_t(level) * B + b;
    for (int64_t j = offsets[seg]; j < offsets[seg + 1]; ++j) {
      const int64_t k = order[j];
      const auto g = roi_geometry<acc_t>(rois + k * 5, pooled_h, pooled_w, sampling_ratio,
                                         aligned, info);
      if (g.grid_h <= 0 || g.grid_w <= 0) continue;
      // Cheap reject before the weights: the rows (columns) a box's samples can touch lie in
      // [floor(max(first sample, 0)), last sample + 1].
      if (!may_touch(g.start_h, g.bin_h, g.grid_h, pooled_h, y) ||
          !may_touch(g.start_w, g.bin_w, g.grid_w, pooled_w, x)) {
        continue;
      }
      if (!axis_weights(g.start_h, g.bin_h, g.grid_h, pooled_h, H, y, wy)) continue;
      if (!axis_weights(g.start_w, g.bin_w, g.grid_w, pooled_w, W, x, wx)) continue;
      const acc_t inv_count = acc_t(1) / static_cast<acc_t>(g.grid_h * g.grid_w);
      acc_t* dst = out.ptr[level] + (int64_t(b) * C) * H * W + int64_t(y) * W + x;
      for (int c = 0; c < C; ++c) {
        const acc_t* gk = grad + ((k * C + c) * pooled_h) * pooled_w;
        acc_t s = 0;
        for (int ph = 0; ph < pooled_h; ++ph) {
          if (wy[ph] == acc_t(0)) continue;
          acc_t row = 0;
          for (int pw = 0; pw < pooled_w; ++pw) row += wx[pw] * gk[ph * pooled_w + pw];
          s += wy[ph] * row;
        }
        dst[int64_t(c) * H * W] += s * inv_count;
      }
    }
  }
}

template <typename T>
Levels<T> level_ptrs(at::TensorList levels) {
  Levels<T> p{};
  for (size_t i = 0; i < levels.size(); ++i) p.ptr[i] = static_cast<T*>(levels[i].data_ptr());
  return p;
}

at::Tensor pool_cuda(at::TensorList features, at::TensorList ref, const at::Tensor& rois,
                     const LevelInfo& info, int64_t pooled_h, int64_t pooled_w,
                     int64_t sampling_ratio, bool aligned) {
  const c10::cuda::CUDAGuard guard(features[0].device());
  const auto acc = acc_dtype(features[0].scalar_type());
  at::Tensor out = at::empty({rois.size(0), info.channels, pooled_h, pooled_w},
                             features[0].options().dtype(acc));
  const int64_t n = out.numel();
  if (n == 0) return out;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, features[0].scalar_type(), "lidplug_roi_pool_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const bool diff = !ref.empty();
        pool_kernel<scalar_t, acc_t><<<blocks_for(n), kThreads, 0, stream>>>(
            level_ptrs<const scalar_t>(features),
            diff ? level_ptrs<const scalar_t>(ref) : Levels<const scalar_t>{}, diff,
            rois.const_data_ptr<acc_t>(), n, info, static_cast<int>(pooled_h),
            static_cast<int>(pooled_w), static_cast<int>(sampling_ratio), aligned,
            out.mutable_data_ptr<acc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return out;
}

std::vector<at::Tensor> pool_backward_cuda(const at::Tensor& grad, const at::Tensor& rois,
                                           const LevelInfo& info, int64_t sampling_ratio,
                                           bool aligned, bool deterministic) {
  const c10::cuda::CUDAGuard guard(grad.device());
  std::vector<at::Tensor> out;
  int64_t pixels = 0;
  for (int i = 0; i < info.num_levels; ++i) {
    out.push_back(at::zeros({info.batch, info.channels, info.height[i], info.width[i]},
                            grad.options()));
    pixels += int64_t(info.batch) * info.height[i] * info.width[i];
  }
  const int64_t num_rois = rois.size(0);
  if (grad.numel() == 0) return out;
  const int pooled_h = static_cast<int>(grad.size(2)), pooled_w = static_cast<int>(grad.size(3));
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "lidplug_roi_pool_backward_cuda", [&] {
    const auto dst = level_ptrs<scalar_t>(out);
    if (!deterministic) {
      scatter_backward_kernel<scalar_t><<<blocks_for(grad.numel()), kThreads, 0, stream>>>(
          grad.const_data_ptr<scalar_t>(), rois.const_data_ptr<scalar_t>(), grad.numel(), info,
          pooled_h, pooled_w, static_cast<int>(sampling_ratio), aligned, dst);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    TORCH_CHECK_VALUE(pooled_h <= kMaxPooled && pooled_w <= kMaxPooled,
                "deterministic roi backward on CUDA: expected output_size <= ", kMaxPooled,
                ", got (", pooled_h, ", ", pooled_w, ")");
    at::Tensor key = at::empty({num_rois}, rois.options().dtype(at::kLong));
    box_key_kernel<scalar_t><<<blocks_for(num_rois), kThreads, 0, stream>>>(
        rois.const_data_ptr<scalar_t>(), num_rois, info, key.mutable_data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    // A stable sort keeps boxes of one segment in input order: the summation order is fixed.
    const auto sorted = key.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
    const at::Tensor segments = at::arange(int64_t(info.num_levels) * info.batch + 1, key.options());
    const at::Tensor offsets = at::searchsorted(std::get<0>(sorted), segments);
    const at::Tensor order = std::get<1>(sorted).contiguous();
    gather_backward_kernel<scalar_t><<<blocks_for(pixels), kThreads, 0, stream>>>(
        grad.const_data_ptr<scalar_t>(), rois.const_data_ptr<scalar_t>(),
        order.const_data_ptr<int64_t>(), offsets.const_data_ptr<int64_t>(), pixels, info,
        pooled_h, pooled_w, static_cast<int>(sampling_ratio), aligned, dst);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

const Backend kCudaBackend{&pool_cuda, &pool_backward_cuda};

}  // namespace
}  // namespace ops
}  // namespace lidplug

LIDPLUG_REGISTER_BACKEND(CUDA, ::lidplug::ops::kCudaBackend)
