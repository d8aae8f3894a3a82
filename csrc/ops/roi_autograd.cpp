// Autograd of the forward ops, in C++ as torchvision's ops have it: each forward op's backward
// is its registered backward op. Python, TorchScript and libtorch callers all get it, and a
// training step pays no Python layer per call (torch.library's Python autograd cost about
// 0.12 ms per fused-loss step on the CPU, 7% of the step at two threads). The fake kernels
// for torch.compile stay in Python (lidplug/ops/_register.py).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "roi_ops.h"

namespace lidplug {
namespace ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

template <typename Signature>
c10::TypedOperatorHandle<Signature> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

// What the backward ops need of the pyramid and the call: sizes as SymInts (torch.compile may
// trace them symbolically), the pooling options and the features' dtype.
void save_call(AutogradContext* ctx, at::TensorList features, at::ArrayRef<double> scales,
               int64_t sampling_ratio, bool aligned) {
  std::vector<c10::SymInt> heights, widths;
  for (const auto& t : features) {
    heights.push_back(t.sym_size(2));
    widths.push_back(t.sym_size(3));
  }
  ctx->saved_data["scales"] = scales.vec();
  ctx->saved_data["batch"] = features[0].sym_size(0);
  ctx->saved_data["channels"] = features[0].sym_size(1);
  ctx->saved_data["heights"] = c10::SymIntArrayRef(heights);
  ctx->saved_data["widths"] = c10::SymIntArrayRef(widths);
  ctx->saved_data["sampling_ratio"] = sampling_ratio;
  ctx->saved_data["aligned"] = aligned;
  ctx->saved_data["dtype"] = features[0].scalar_type();
  ctx->saved_data["levels"] = static_cast<int64_t>(features.size());
}

// The arguments every backward op shares, from save_call, in schema order.
struct SavedCall {
  std::vector<double> scales;
  c10::SymInt batch, channels;
  std::vector<c10::SymInt> heights, widths;
  int64_t sampling_ratio, levels;
  bool aligned;
  at::ScalarType dtype;

  explicit SavedCall(AutogradContext* ctx)
      : scales(ctx->saved_data["scales"].toDoubleVector()),
        batch(ctx->saved_data["batch"].toSymInt()),
        channels(ctx->saved_data["channels"].toSymInt()),
        sampling_ratio(ctx->saved_data["sampling_ratio"].toInt()),
        levels(ctx->saved_data["levels"].toInt()),
        aligned(ctx->saved_data["aligned"].toBool()),
        dtype(ctx->saved_data["dtype"].toScalarType()) {
    for (const auto& v : ctx->saved_data["heights"].toList()) heights.push_back(v.get().toSymInt());
    for (const auto& v : ctx->saved_data["widths"].toList()) widths.push_back(v.get().toSymInt());
  }
};

// True when a gradient is asked for any of the `count` inputs from edge `first` on.
bool needs_any(AutogradContext* ctx, int64_t first, int64_t count) {
  for (int64_t i = first; i < first + count; ++i) {
    if (ctx->needs_input_grad(i)) return true;
  }
  return false;
}

class RoiPoolFunction : public torch::autograd::Function<RoiPoolFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, at::TensorList features, const at::Tensor& rois,
                            at::ArrayRef<double> scales, int64_t pooled_h, int64_t pooled_w,
                            int64_t sampling_ratio, bool aligned) {
    at::AutoDispatchBelowADInplaceOrView below;
    static auto pool = op<at::Tensor(at::TensorList, const at::Tensor&, at::ArrayRef<double>,
                                     int64_t, int64_t, int64_t, bool)>("lidplug::roi_pool");
    // The op checks its input first: only then are the sizes there to save.
    at::Tensor out = pool.call(features, rois, scales, pooled_h, pooled_w, sampling_ratio, aligned);
    save_call(ctx, features, scales, sampling_ratio, aligned);
    ctx->save_for_backward({rois});
    return out;
  }

  // One gradient per level, then none for rois, scales, the two sizes, sampling and aligned.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const SavedCall s(ctx);
    static auto pool_backward =
        op<std::vector<at::Tensor>(const at::Tensor&, const at::Tensor&, at::ArrayRef<double>,
                                   c10::SymInt, c10::SymInt, c10::SymIntArrayRef,
                                   c10::SymIntArrayRef, int64_t, bool, bool, at::ScalarType)>(
            "lidplug::roi_pool_backward");
    variable_list out = pool_backward.call(
        grads[0], ctx->get_saved_variables()[0], s.scales, s.batch, s.channels, s.heights,
        s.widths, s.sampling_ratio, s.aligned, at::globalContext().deterministicAlgorithms(),
        s.dtype);
    out.resize(s.levels + 6);
    return out;
  }
};

class RoiPerceptualLossFunction : public torch::autograd::Function<RoiPerceptualLossFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, at::TensorList features,
                               at::TensorList ref_features, const at::Tensor& rois,
                               at::ArrayRef<double> scales, int64_t pooled_h, int64_t pooled_w,
                               int64_t sampling_ratio, bool aligned, c10::string_view reduction) {
    at::AutoDispatchBelowADInplaceOrView below;
    static auto loss_forward =
        op<std::tuple<at::Tensor, at::Tensor>(at::TensorList, at::TensorList, const at::Tensor&,
                                              at::ArrayRef<double>, int64_t, int64_t, int64_t,
                                              bool, c10::string_view)>(
            "lidplug::_roi_perceptual_loss_forward");
    auto [loss, diff] = loss_forward.call(features, ref_features, rois, scales, pooled_h,
                                          pooled_w, sampling_ratio, aligned, reduction);
    save_call(ctx, features, scales, sampling_ratio, aligned);
    ctx->saved_data["reduction"] = std::string(reduction);
    // Only the small pooled difference is kept: neither pyramid is needed for the backward.
    ctx->save_for_backward({rois, diff});
    ctx->mark_non_differentiable({diff});
    // No zeros for the gradient of `diff`, which is never used.
    ctx->set_materialize_grads(false);
    return {loss, diff};
  }

  // Gradients of features, of ref_features, then none for rois and the six options.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const SavedCall s(ctx);
    const int64_t n = s.levels;
    const bool need_features = needs_any(ctx, 0, n), need_ref = needs_any(ctx, n, n);
    variable_list out(2 * n + 7);
    if (!grads[0].defined() || !(need_features || need_ref)) return out;
    static auto loss_backward =
        op<std::vector<at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                   at::ArrayRef<double>, c10::SymInt, c10::SymInt,
                                   c10::SymIntArrayRef, c10::SymIntArrayRef, int64_t, bool,
                                   c10::string_view, bool, bool, at::ScalarType)>(
            "lidplug::roi_perceptual_loss_backward");
    const auto saved = ctx->get_saved_variables();
    const std::vector<at::Tensor> level_grads = loss_backward.call(
        grads[0], saved[1], saved[0], s.scales, s.batch, s.channels, s.heights, s.widths,
        s.sampling_ratio, s.aligned, ctx->saved_data["reduction"].toStringRef(),
        at::globalContext().deterministicAlgorithms(), need_ref, s.dtype);
    for (int64_t i = 0; i < n; ++i) {
      if (need_features) out[i] = level_grads[i];
      if (need_ref) out[n + i] = level_grads[n + i];
    }
    return out;
  }
};

at::Tensor roi_pool_autograd(at::TensorList features, const at::Tensor& rois,
                             at::ArrayRef<double> scales, int64_t pooled_h, int64_t pooled_w,
                             int64_t sampling_ratio, bool aligned) {
  return RoiPoolFunction::apply(features, rois, scales, pooled_h, pooled_w, sampling_ratio,
                                aligned);
}

std::tuple<at::Tensor, at::Tensor> roi_perceptual_loss_forward_autograd(
    at::TensorList features, at::TensorList ref_features, const at::Tensor& rois,
    at::ArrayRef<double> scales, int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio,
    bool aligned, c10::string_view reduction) {
  const auto out = RoiPerceptualLossFunction::apply(features, ref_features, rois, scales,
                                                    pooled_h, pooled_w, sampling_ratio, aligned,
                                                    reduction);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(lidplug, Autograd, m) {
  m.impl("roi_pool", &roi_pool_autograd);
  m.impl("_roi_perceptual_loss_forward", &roi_perceptual_loss_forward_autograd);
}

}  // namespace ops
}  // namespace lidplug
