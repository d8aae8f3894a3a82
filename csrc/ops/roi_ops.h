// The backend-independent halves of the lidplug ops. Each backend (cpu/, cuda/) supplies two
// primitives -- pool the (difference of the) pyramids, and scatter a pooled gradient back --
// and the op bodies here do the checks, dtype handling and loss reductions once for both.
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>
#include <tuple>
#include <vector>

#include "roi_geometry.h"

namespace lidplug {
namespace ops {

// What a backend's pool primitive returns.
struct Pooled {
  // pooled[k, c, ph, pw] = RoIAlign(features)[k] - RoIAlign(ref)[k] (ref may be empty), in the
  // accumulation dtype (float32, or float64 for float64 features) and the backend's layout
  // (Backend::pooled_format).
  at::Tensor values;
  // When pooling a difference, the sum of its squares per box ([K], accumulation dtype) if the
  // backend adds them up while pooling (the CPU kernel does, in a fixed order); else undefined,
  // and the loss sums them from `values`.
  at::Tensor box_squares;
};

using PoolFn = Pooled (*)(at::TensorList features, at::TensorList ref, const at::Tensor& rois,
                          const LevelInfo& info, int64_t pooled_h, int64_t pooled_w,
                          int64_t sampling_ratio, bool aligned);

// The gradient of every level, in the accumulation dtype, from the gradient of the pooled output
// (given in the accumulation dtype and the backend's pooled_format) times `scale`: undefined (1),
// a 0-dim tensor, or one value per box ([K]), in the accumulation dtype. The loss passes its
// pooled difference and the reduction's coefficient, so no scaled copy of it is made first.
using PoolBackwardFn = std::vector<at::Tensor> (*)(const at::Tensor& grad, const at::Tensor& scale,
                                                   const at::Tensor& rois, const LevelInfo& info,
                                                   int64_t sampling_ratio, bool aligned,
                                                   bool deterministic);

struct Backend {
  PoolFn pool;
  PoolBackwardFn pool_backward;
  // Memory layout of the [K, C, PH, PW] pooled tensors the backend writes and reads: the CPU
  // kernels vectorise over channels and want them channels-last ([K, PH, PW, C] in memory), the
  // CUDA kernels index them contiguously. The public roi_pool output is always contiguous; the
  // loss keeps its pooled difference for the backward in this layout.
  at::MemoryFormat pooled_format;
};

at::Tensor roi_pool(const Backend& backend, at::TensorList features, const at::Tensor& rois,
                    at::ArrayRef<double> spatial_scales, int64_t pooled_h, int64_t pooled_w,
                    int64_t sampling_ratio, bool aligned);

std::vector<at::Tensor> roi_pool_backward(const Backend& backend, const at::Tensor& grad,
                                          const at::Tensor& rois,
                                          at::ArrayRef<double> spatial_scales, int64_t batch,
                                          int64_t channels, at::IntArrayRef heights,
                                          at::IntArrayRef widths, int64_t sampling_ratio,
                                          bool aligned, bool deterministic,
                                          at::ScalarType dtype);

// Returns (loss, pooled difference); the difference is kept for the backward, so the
// pyramids are pooled once per step.
std::tuple<at::Tensor, at::Tensor> roi_perceptual_loss_forward(
    const Backend& backend, at::TensorList features, at::TensorList ref_features,
    const at::Tensor& rois, at::ArrayRef<double> spatial_scales, int64_t pooled_h,
    int64_t pooled_w, int64_t sampling_ratio, bool aligned, c10::string_view reduction);

std::vector<at::Tensor> roi_perceptual_loss_backward(
    const Backend& backend, const at::Tensor& grad, const at::Tensor& diff,
    const at::Tensor& rois, at::ArrayRef<double> spatial_scales, int64_t batch, int64_t channels,
    at::IntArrayRef heights, at::IntArrayRef widths, int64_t sampling_ratio, bool aligned,
    c10::string_view reduction, bool deterministic, bool ref_grad, at::ScalarType dtype);

// Defines the schemas of the four ops a backend implements (roi_pool, roi_pool_backward,
// _roi_perceptual_loss_forward, roi_perceptual_loss_backward) in a library: `lidplug` itself, and
// `lidplug_cuda_emulated`, the test-only namespace of the CUDA code's emulation on the CPU.
void define_backend_ops(torch::Library& m);

// Float32 for float16/bfloat16/float32 features, float64 for float64: "reductions accumulate in
// float32 whatever the feature dtype", while float64 stays exact enough for gradcheck.
inline at::ScalarType acc_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace ops
}  // namespace lidplug

// Registers the four op bodies of library NS for one dispatch key with the backend's primitives.
#define LIDPLUG_REGISTER_BACKEND(NS, KEY, BACKEND)                                                    \
  namespace {                                                                                    \
  at::Tensor roi_pool_##KEY(at::TensorList f, const at::Tensor& r, at::ArrayRef<double> s,       \
                            int64_t ph, int64_t pw, int64_t sr, bool al) {                       \
    return ::lidplug::ops::roi_pool(BACKEND, f, r, s, ph, pw, sr, al);                           \
  }                                                                                              \
  std::vector<at::Tensor> roi_pool_backward_##KEY(                                               \
      const at::Tensor& g, const at::Tensor& r, at::ArrayRef<double> s, int64_t b, int64_t c,    \
      at::IntArrayRef hs, at::IntArrayRef ws, int64_t sr, bool al, bool det, at::ScalarType dt) { \
    return ::lidplug::ops::roi_pool_backward(BACKEND, g, r, s, b, c, hs, ws, sr, al, det, dt);   \
  }                                                                                              \
  std::tuple<at::Tensor, at::Tensor> roi_perceptual_loss_forward_##KEY(                         \
      at::TensorList f, at::TensorList rf, const at::Tensor& r, at::ArrayRef<double> s,          \
      int64_t ph, int64_t pw, int64_t sr, bool al, c10::string_view red) {                       \
    return ::lidplug::ops::roi_perceptual_loss_forward(BACKEND, f, rf, r, s, ph, pw, sr, al,     \
                                                       red);                                     \
  }                                                                                              \
  std::vector<at::Tensor> roi_perceptual_loss_backward_##KEY(                                    \
      const at::Tensor& g, const at::Tensor& d, const at::Tensor& r, at::ArrayRef<double> s,     \
      int64_t b, int64_t c, at::IntArrayRef hs, at::IntArrayRef ws, int64_t sr, bool al,         \
      c10::string_view red, bool det, bool refg, at::ScalarType dt) {                            \
    return ::lidplug::ops::roi_perceptual_loss_backward(BACKEND, g, d, r, s, b, c, hs, ws, sr,   \
                                                        al, red, det, refg, dt);                 \
  }                                                                                              \
  }                                                                                              \
  TORCH_LIBRARY_IMPL(NS, KEY, m) {                                                          \
    m.impl("roi_pool", &roi_pool_##KEY);                                                         \
    m.impl("roi_pool_backward", &roi_pool_backward_##KEY);                                       \
    m.impl("_roi_perceptual_loss_forward", &roi_perceptual_loss_forward_##KEY);                  \
    m.impl("roi_perceptual_loss_backward", &roi_perceptual_loss_backward_##KEY);                 \
  }
