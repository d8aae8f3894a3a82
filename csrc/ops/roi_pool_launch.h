// The host side of the CUDA backend, written once for the GPU and for its emulation on the CPU:
// output allocation, dtype dispatch, the bodies' arguments, and the deterministic backward's
// box sort and segment offsets. It is templated on an executor that runs one launch:
//
//   struct Exec {
//     using Add = ...;                                  // the scatter's add (atomic on CUDA)
//     template <typename Body> void launch(int64_t n, const Body& body) const;
//   };
//
// cuda/roi_pool_kernel.cu launches a grid-stride __global__ kernel on the current stream;
// cpu/roi_pool_cuda_emulated.cpp runs every thread of the same grid, one after another.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <tuple>
#include <vector>

#include "roi_ops.h"
#include "roi_pool_bodies.h"

namespace lidplug {
namespace ops {
namespace bodies {

template <typename T>
Levels<T> level_ptrs(at::TensorList levels) {
  Levels<T> p{};
  for (size_t i = 0; i < levels.size(); ++i) p.ptr[i] = static_cast<T*>(levels[i].data_ptr());
  return p;
}

template <typename acc_t>
Launch<acc_t> launch_args(const at::Tensor& rois, const LevelInfo& info, int64_t pooled_h,
                          int64_t pooled_w, int64_t sampling_ratio, bool aligned) {
  return {rois.const_data_ptr<acc_t>(), info, static_cast<int>(pooled_h),
          static_cast<int>(pooled_w), static_cast<int>(sampling_ratio), aligned};
}

// The Backend::pool primitive (roi_ops.h).
template <typename Exec>
Pooled launch_pool(const Exec& exec, at::TensorList features, at::TensorList ref,
                   const at::Tensor& rois, const LevelInfo& info, int64_t pooled_h,
                   int64_t pooled_w, int64_t sampling_ratio, bool aligned) {
  const auto acc = acc_dtype(features[0].scalar_type());
  // Uninitialised: the launch writes every element (the emulation's tests would see a gap).
  at::Tensor out = at::empty({rois.size(0), info.channels, pooled_h, pooled_w},
                             features[0].options().dtype(acc));
  const int64_t n = out.numel();
  if (n == 0) return {out, {}};
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, features[0].scalar_type(), "lidplug_roi_pool_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const bool diff = !ref.empty();
        const Pool<scalar_t, acc_t> body{
            launch_args<acc_t>(rois, info, pooled_h, pooled_w, sampling_ratio, aligned),
            level_ptrs<const scalar_t>(features),
            diff ? level_ptrs<const scalar_t>(ref) : Levels<const scalar_t>{}, diff,
            out.mutable_data_ptr<acc_t>()};
        exec.launch(n, body);
      });
  return {out, {}};  // the loss sums the squares itself
}

// The Backend::pool_backward primitive (roi_ops.h).
template <typename Exec>
std::vector<at::Tensor> launch_pool_backward(const Exec& exec, const at::Tensor& unscaled,
                                             const at::Tensor& scale, const at::Tensor& rois,
                                             const LevelInfo& info, int64_t sampling_ratio,
                                             bool aligned, bool deterministic) {
  // The bodies read one gradient per pooled element: scale it first.
  const at::Tensor grad =
      !scale.defined() ? unscaled
                       : unscaled * (scale.dim() == 0 ? scale : scale.view({-1, 1, 1, 1}));
  std::vector<at::Tensor> out;
  int64_t pixels = 0;
  for (int i = 0; i < info.num_levels; ++i) {
    out.push_back(at::zeros({info.batch, info.channels, info.height[i], info.width[i]},
                            grad.options()));
    pixels += static_cast<int64_t>(info.batch) * info.height[i] * info.width[i];
  }
  const int64_t num_rois = rois.size(0);
  if (grad.numel() == 0) return out;
  const int64_t pooled_h = grad.size(2), pooled_w = grad.size(3);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "lidplug_roi_pool_backward_cuda", [&] {
    const auto args =
        launch_args<scalar_t>(rois, info, pooled_h, pooled_w, sampling_ratio, aligned);
    const auto dst = level_ptrs<scalar_t>(out);
    if (!deterministic) {
      const Scatter<scalar_t, typename Exec::Add> body{args, grad.const_data_ptr<scalar_t>(), dst,
                                                       typename Exec::Add{}};
      exec.launch(grad.numel(), body);
      return;
    }
    at::Tensor key = at::empty({num_rois}, rois.options().dtype(at::kLong));
    exec.launch(num_rois, BoxKey<scalar_t>{args.rois, info, key.mutable_data_ptr<int64_t>()});
    // A stable sort keeps boxes of one segment in input order: the summation order is fixed.
    const auto sorted = key.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
    const at::Tensor segments =
        at::arange(static_cast<int64_t>(info.num_levels) * info.batch + 1, key.options());
    const at::Tensor offsets = at::searchsorted(std::get<0>(sorted), segments);
    const at::Tensor order = std::get<1>(sorted).contiguous();
    const Gather<scalar_t> body{args, grad.const_data_ptr<scalar_t>(),
                                order.const_data_ptr<int64_t>(),
                                offsets.const_data_ptr<int64_t>(), dst};
    exec.launch(pixels, body);
  });
  return out;
}

}  // namespace bodies
}  // namespace ops
}  // namespace lidplug
