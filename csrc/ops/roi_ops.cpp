// Schemas of the lidplug ops and their backend-independent bodies: input checks that name what
// was expected and what came, dtype handling, and the loss reductions.
#include "roi_ops.h"

#include <torch/library.h>

#include <cmath>
#include <sstream>

namespace lidplug {
namespace ops {
namespace {

std::string shape_str(const at::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

void check_pyramid(at::TensorList levels, const char* name) {
  TORCH_CHECK_VALUE(!levels.empty(), name, ": expected at least one feature level, got none");
  TORCH_CHECK_VALUE(static_cast<int64_t>(levels.size()) <= kMaxLevels, name, ": expected at most ",
              kMaxLevels, " feature levels, got ", levels.size());
  const at::Tensor& first = levels[0];
  for (size_t i = 0; i < levels.size(); ++i) {
    const at::Tensor& t = levels[i];
    TORCH_CHECK_VALUE(t.dim() == 4, name, "[", i, "]: expected a 4-D tensor [B, C, H, W], got shape ",
                shape_str(t));
    TORCH_CHECK_VALUE(t.size(2) > 0 && t.size(3) > 0, name, "[", i,
                      "]: expected a non-empty map (H, W > 0), got shape ", shape_str(t));
    TORCH_CHECK_VALUE(at::isFloatingType(t.scalar_type()), name, "[", i,
                "]: expected a floating-point tensor, got ", t.scalar_type());
    TORCH_CHECK_VALUE(t.size(0) == first.size(0) && t.size(1) == first.size(1), name, "[", i,
                "]: expected batch and channels [", first.size(0), ", ", first.size(1),
                "] like level 0, got [", t.size(0), ", ", t.size(1), "]");
    TORCH_CHECK_VALUE(t.scalar_type() == first.scalar_type(), name, "[", i, "]: expected dtype ",
                first.scalar_type(), " like level 0, got ", t.scalar_type());
    TORCH_CHECK_VALUE(t.device() == first.device(), name, "[", i, "]: expected device ",
                first.device(), " like level 0, got ", t.device());
  }
}

void check_rois(const at::Tensor& rois, const at::Tensor& like) {
  TORCH_CHECK_VALUE(rois.dim() == 2 && rois.size(1) == 5,
              "boxes: expected a [K, 5] tensor of (batch_index, x1, y1, x2, y2), got shape ",
              shape_str(rois));
  TORCH_CHECK_VALUE(at::isFloatingType(rois.scalar_type()),
              "boxes: expected a floating-point tensor, got ", rois.scalar_type());
  TORCH_CHECK_VALUE(rois.device() == like.device(), "boxes: expected device ", like.device(),
              " like the features, got ", rois.device());
}

// Whether box values are usable: finite coordinates and an integer batch index in [0, batch).
template <typename T>
bool roi_ok(const T* v, int64_t batch) {
  for (int j = 0; j < 5; ++j) {
    if (!std::isfinite(static_cast<double>(v[j]))) return false;
  }
  const double b = static_cast<double>(v[0]);
  return b >= 0 && b < static_cast<double>(batch) && b == std::floor(b);
}

// The first unusable box, or -1. On the host one pass over the values; on a device, reductions
// there and one host sync.
int64_t first_bad_roi(const at::Tensor& rois, int64_t batch) {
  if (rois.device().is_cpu()) {
    const at::Tensor r = rois.contiguous();
    int64_t bad = -1;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.scalar_type(), "check_rois", [&] {
      const scalar_t* v = r.const_data_ptr<scalar_t>();
      for (int64_t k = 0; k < r.size(0) && bad < 0; ++k) {
        if (!roi_ok(v + k * 5, batch)) bad = k;
      }
    });
    return bad;
  }
  const at::Tensor b = rois.select(1, 0);
  const at::Tensor ok =
      at::isfinite(rois).all(1) & (b >= 0) & (b < batch) & (b == at::floor(b));
  if (ok.all().item<bool>()) return -1;
  return (~ok).nonzero().select(1, 0)[0].item<int64_t>();
}

// Data checks need the values, so on CUDA they cost one host sync; they are what turns a bad
// box into a clear error instead of silently zero features.
void check_roi_values(const at::Tensor& rois, int64_t batch) {
  if (rois.size(0) == 0) return;
  const int64_t k = first_bad_roi(rois, batch);
  if (k < 0) return;
  const at::Tensor row = rois[k].to(at::kCPU, at::kDouble);
  const double* v = row.data_ptr<double>();
  std::ostringstream box;
  box << "(" << v[0] << ", " << v[1] << ", " << v[2] << ", " << v[3] << ", " << v[4] << ")";
  TORCH_CHECK_VALUE(at::isfinite(row).all().item<bool>(), "boxes[", k,
              "]: expected finite coordinates, got ", box.str());
  TORCH_CHECK_VALUE(false, "boxes[", k, "]: expected an integer batch index in [0, ", batch,
              "), got ", v[0]);
}

LevelInfo make_level_info(int64_t batch, int64_t channels, at::IntArrayRef heights,
                          at::IntArrayRef widths, at::ArrayRef<double> scales) {
  // LevelInfo holds fixed-size arrays, and the level mapping reads the first and last scale:
  // refuse no levels and too many before touching them. The forward ops have checked their
  // pyramids by now; the backward ops get sizes only, from any caller.
  TORCH_CHECK_VALUE(!heights.empty(), "expected at least one feature level, got none");
  TORCH_CHECK_VALUE(static_cast<int64_t>(heights.size()) <= kMaxLevels, "expected at most ",
                    kMaxLevels, " feature levels, got ", heights.size());
  TORCH_CHECK_VALUE(scales.size() == heights.size(),
                    "spatial_scales: expected one scale per level (", heights.size(), "), got ",
                    scales.size());
  LevelInfo info{};
  info.num_levels = static_cast<int>(heights.size());
  info.batch = static_cast<int>(batch);
  info.channels = static_cast<int>(channels);
  for (int i = 0; i < info.num_levels; ++i) {
    TORCH_CHECK_VALUE(scales[i] > 0 && std::isfinite(scales[i]),
                "spatial_scales: expected positive finite scales, got ", scales[i], " at level ",
                i);
    info.height[i] = static_cast<int>(heights[i]);
    info.width[i] = static_cast<int>(widths[i]);
    info.scale[i] = static_cast<float>(scales[i]);
  }
  info.k_min = static_cast<int>(std::lround(-std::log2(scales[0])));
  info.k_max = static_cast<int>(std::lround(-std::log2(scales[scales.size() - 1])));
  if (info.num_levels > 1) {
    // MultiScaleRoIAlign infers power-of-two scales, one octave per level; the level mapping
    // (box -> level index) is only defined for such a pyramid.
    for (int i = 0; i < info.num_levels; ++i) {
      const double expected = std::ldexp(1.0, -(info.k_min + i));
      TORCH_CHECK_VALUE(std::abs(scales[i] - expected) <= 1e-6 * expected,
                  "spatial_scales: expected consecutive power-of-two scales, finest first (",
                  std::ldexp(1.0, -info.k_min), ", ", std::ldexp(1.0, -info.k_min - 1),
                  ", ...), got ", scales[i], " at level ", i);
    }
  }
  return info;
}

// Checks shared by the forward ops once the pyramid itself is checked: the pooled size, the
// boxes (shape and values) and the scales, which make the launch's LevelInfo.
LevelInfo checked_level_info(at::TensorList features, const at::Tensor& rois,
                             at::ArrayRef<double> scales, int64_t ph, int64_t pw) {
  TORCH_CHECK_VALUE(ph > 0 && pw > 0, "output_size: expected positive sizes, got (", ph, ", ",
                    pw, ")");
  check_rois(rois, features[0]);
  std::vector<int64_t> heights, widths;
  for (const auto& t : features) {
    heights.push_back(t.size(2));
    widths.push_back(t.size(3));
  }
  const LevelInfo info =
      make_level_info(features[0].size(0), features[0].size(1), heights, widths, scales);
  check_roi_values(rois, info.batch);
  return info;
}

at::Tensor rois_for(const at::Tensor& rois, at::ScalarType acc) {
  return rois.to(acc).contiguous();
}

std::vector<at::Tensor> contiguous(at::TensorList levels) {
  std::vector<at::Tensor> out;
  out.reserve(levels.size());
  for (const auto& t : levels) out.push_back(t.contiguous());
  return out;
}

enum class Reduction { kNone, kMean, kSum };

Reduction parse_reduction(c10::string_view r) {
  if (r == "mean") return Reduction::kMean;
  if (r == "sum") return Reduction::kSum;
  if (r == "none") return Reduction::kNone;
  TORCH_CHECK_VALUE(false, "reduction: expected 'mean', 'sum' or 'none', got '", std::string(r), "'");
}

Pooled pooled_difference(const Backend& backend, at::TensorList features,
                         at::TensorList ref_features, const at::Tensor& rois,
                         at::ArrayRef<double> scales, int64_t ph, int64_t pw, int64_t sr,
                         bool aligned, LevelInfo* info_out) {
  check_pyramid(features, "features");
  check_pyramid(ref_features, "ref_features");
  TORCH_CHECK_VALUE(features.size() == ref_features.size(),
              "ref_features: expected as many levels as features (", features.size(), "), got ",
              ref_features.size());
  for (size_t i = 0; i < features.size(); ++i) {
    TORCH_CHECK_VALUE(features[i].sizes() == ref_features[i].sizes(), "ref_features[", i,
                "]: expected shape ", shape_str(features[i]), " like features[", i, "], got ",
                shape_str(ref_features[i]));
    TORCH_CHECK_VALUE(features[i].scalar_type() == ref_features[i].scalar_type(), "ref_features[", i,
                "]: expected dtype ", features[i].scalar_type(), " like features, got ",
                ref_features[i].scalar_type());
    TORCH_CHECK_VALUE(features[i].device() == ref_features[i].device(), "ref_features[", i,
                "]: expected device ", features[i].device(), " like features, got ",
                ref_features[i].device());
  }
  *info_out = checked_level_info(features, rois, scales, ph, pw);
  const auto acc = acc_dtype(features[0].scalar_type());
  return backend.pool(contiguous(features), contiguous(ref_features), rois_for(rois, acc),
                      *info_out, ph, pw, sr, aligned);
}

}  // namespace

at::Tensor roi_pool(const Backend& backend, at::TensorList features, const at::Tensor& rois,
                    at::ArrayRef<double> spatial_scales, int64_t pooled_h, int64_t pooled_w,
                    int64_t sampling_ratio, bool aligned) {
  check_pyramid(features, "features");
  const LevelInfo info =
      checked_level_info(features, rois, spatial_scales, pooled_h, pooled_w);
  const auto dtype = features[0].scalar_type();
  const at::Tensor out = backend.pool(contiguous(features), {}, rois_for(rois, acc_dtype(dtype)),
                                      info, pooled_h, pooled_w, sampling_ratio, aligned).values;
  // Contiguous whatever the backend's layout, as torchvision's roi_align returns it.
  return out.to(dtype, /*non_blocking=*/false, /*copy=*/false, at::MemoryFormat::Contiguous);
}

namespace {

// roi_pool_backward of grad * scale (see PoolBackwardFn).
std::vector<at::Tensor> scaled_pool_backward(const Backend& backend, const at::Tensor& grad,
                                             const at::Tensor& scale, const at::Tensor& rois,
                                             at::ArrayRef<double> spatial_scales, int64_t batch,
                                             int64_t channels, at::IntArrayRef heights,
                                             at::IntArrayRef widths, int64_t sampling_ratio,
                                             bool aligned, bool deterministic,
                                             at::ScalarType dtype) {
  TORCH_CHECK_VALUE(heights.size() == widths.size() && heights.size() == spatial_scales.size(),
              "roi_pool_backward: expected one height, width and scale per level");
  check_rois(rois, grad);
  for (size_t i = 0; i < heights.size(); ++i) {
    TORCH_CHECK_VALUE(heights[i] > 0 && widths[i] > 0,
                      "roi_pool_backward: expected non-empty levels, got level ", i, " of size ",
                      heights[i], "x", widths[i]);
  }
  TORCH_CHECK_VALUE(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels,
              "roi_pool_backward: expected grad of shape [K, C, PH, PW] with K=", rois.size(0),
              " and C=", channels, ", got ", shape_str(grad));
  TORCH_CHECK_VALUE(!scale.defined() || scale.dim() == 0 ||
                        (scale.dim() == 1 && scale.size(0) == rois.size(0)),
                    "grad: expected a scalar, or one value per box (", rois.size(0),
                    "), got shape ", shape_str(scale));
  const LevelInfo info = make_level_info(batch, channels, heights, widths, spatial_scales);
  const auto acc = acc_dtype(dtype);
  auto grads = backend.pool_backward(grad.to(acc).contiguous(backend.pooled_format),
                                     scale.defined() ? scale.to(acc) : scale,
                                     rois_for(rois, acc), info, sampling_ratio, aligned,
                                     deterministic);
  for (auto& g : grads) g = g.to(dtype);
  return grads;
}

}  // namespace

std::vector<at::Tensor> roi_pool_backward(const Backend& backend, const at::Tensor& grad,
                                          const at::Tensor& rois,
                                          at::ArrayRef<double> spatial_scales, int64_t batch,
                                          int64_t channels, at::IntArrayRef heights,
                                          at::IntArrayRef widths, int64_t sampling_ratio,
                                          bool aligned, bool deterministic,
                                          at::ScalarType dtype) {
  return scaled_pool_backward(backend, grad, at::Tensor(), rois, spatial_scales, batch, channels,
                              heights, widths, sampling_ratio, aligned, deterministic, dtype);
}

std::tuple<at::Tensor, at::Tensor> roi_perceptual_loss_forward(
    const Backend& backend, at::TensorList features, at::TensorList ref_features,
    const at::Tensor& rois, at::ArrayRef<double> spatial_scales, int64_t pooled_h,
    int64_t pooled_w, int64_t sampling_ratio, bool aligned, c10::string_view reduction) {
  const Reduction red = parse_reduction(reduction);
  LevelInfo info;
  Pooled pooled = pooled_difference(backend, features, ref_features, rois, spatial_scales,
                                    pooled_h, pooled_w, sampling_ratio, aligned, &info);
  const at::Tensor& diff = pooled.values;
  const at::Tensor box_sq = pooled.box_squares.defined() ? pooled.box_squares
                                                         : diff.square().sum({1, 2, 3});
  at::Tensor loss;
  if (red == Reduction::kNone) {
    loss = box_sq / static_cast<double>(info.channels * pooled_h * pooled_w);
  } else if (red == Reduction::kSum || diff.numel() == 0) {
    loss = box_sq.sum();  // K = 0 gives 0, not the NaN of a mean over nothing
  } else {
    loss = box_sq.sum() / static_cast<double>(diff.numel());
  }
  return {loss, diff};
}

std::vector<at::Tensor> roi_perceptual_loss_backward(
    const Backend& backend, const at::Tensor& grad, const at::Tensor& diff,
    const at::Tensor& rois, at::ArrayRef<double> spatial_scales, int64_t batch, int64_t channels,
    at::IntArrayRef heights, at::IntArrayRef widths, int64_t sampling_ratio, bool aligned,
    c10::string_view reduction, bool deterministic, bool ref_grad, at::ScalarType dtype) {
  const Reduction red = parse_reduction(reduction);
  const int64_t per_box = diff.numel() / std::max<int64_t>(diff.size(0), 1);
  // d(loss)/d(diff) = 2 * diff * coefficient; the coefficient carries the reduction's scale.
  at::Tensor coef = grad.to(diff.scalar_type()) * 2.0;
  if (red == Reduction::kNone) {
    coef = coef / static_cast<double>(per_box);  // one per box
  } else if (red == Reduction::kMean && diff.numel() > 0) {
    coef = coef / static_cast<double>(diff.numel());
  }
  std::vector<at::Tensor> grads =
      scaled_pool_backward(backend, diff, coef, rois, spatial_scales, batch, channels, heights,
                           widths, sampling_ratio, aligned, deterministic, dtype);
  if (ref_grad) {
    // The loss depends on features - ref_features only: the reference gradient is the negation.
    const size_t n = grads.size();
    for (size_t i = 0; i < n; ++i) grads.push_back(grads[i].neg());
  }
  return grads;
}

namespace {

// The public op: a composite of the forward op, so autograd, torch.compile and TorchScript all
// see one registered name while the pooled difference stays an internal of the backward.
at::Tensor roi_perceptual_loss(at::TensorList features, at::TensorList ref_features,
                               const at::Tensor& rois, at::ArrayRef<double> spatial_scales,
                               int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio,
                               bool aligned, c10::string_view reduction) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("lidplug::_roi_perceptual_loss_forward", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(
                           at::TensorList, at::TensorList, const at::Tensor&,
                           at::ArrayRef<double>, int64_t, int64_t, int64_t, bool,
                           c10::string_view)>();
  return std::get<0>(op.call(features, ref_features, rois, spatial_scales, pooled_h, pooled_w,
                             sampling_ratio, aligned, reduction));
}

}  // namespace

void define_backend_ops(torch::Library& m) {
  m.def(
      "roi_pool(Tensor[] features, Tensor rois, float[] spatial_scales, int pooled_height, "
      "int pooled_width, int sampling_ratio=2, bool aligned=False) -> Tensor");
  m.def(
      "roi_pool_backward(Tensor grad, Tensor rois, float[] spatial_scales, SymInt batch_size, "
      "SymInt channels, SymInt[] heights, SymInt[] widths, int sampling_ratio, bool aligned, "
      "bool deterministic, ScalarType dtype) -> Tensor[]");
  m.def(
      "_roi_perceptual_loss_forward(Tensor[] features, Tensor[] ref_features, Tensor rois, "
      "float[] spatial_scales, int pooled_height, int pooled_width, int sampling_ratio, "
      "bool aligned, str reduction) -> (Tensor, Tensor)");
  m.def(
      "roi_perceptual_loss_backward(Tensor grad, Tensor diff, Tensor rois, "
      "float[] spatial_scales, SymInt batch_size, SymInt channels, SymInt[] heights, "
      "SymInt[] widths, int sampling_ratio, bool aligned, str reduction, bool deterministic, "
      "bool ref_grad, ScalarType dtype) -> Tensor[]");
}

TORCH_LIBRARY(lidplug, m) {
  define_backend_ops(m);
  m.def(
      "roi_perceptual_loss(Tensor[] features, Tensor[] ref_features, Tensor rois, "
      "float[] spatial_scales, int pooled_height=7, int pooled_width=7, int sampling_ratio=2, "
      "bool aligned=False, str reduction=\"mean\") -> Tensor");
}

TORCH_LIBRARY_IMPL(lidplug, CompositeImplicitAutograd, m) {
  m.impl("roi_perceptual_loss", &roi_perceptual_loss);
}

}  // namespace ops
}  // namespace lidplug
