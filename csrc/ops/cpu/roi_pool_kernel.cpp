// CPU kernels: RoIAlign of one pyramid or of the difference of two, and its backward.
//
// Layout. A box's samples touch few pixels of its map: at most two rows per sample row and two
// columns per sample column. For each (box, block of kLanes channels) the kernels copy those
// pixels once into a small channels-last buffer -- for the loss, already as the difference of
// the two pyramids -- so that each bilinear tap is then one vector of kLanes channels; the
// backward scatters into such a buffer and adds it to the maps once per box. Pooled tensors are
// channels-last for the same reason ([K, PH, PW, C] in memory: a bin's channels are one vector;
// see Backend::pooled_format). The per-(box, block) bodies are in roi_pool_lanes.h, compiled
// for the baseline instruction set here and for AVX2 and AVX-512 in their own files; ATen's
// CPU capability picks one (so ATEN_CPU_CAPABILITY=default|avx2 lowers it, as for ATen's own
// kernels).
//
// Work. The forward is parallel over (channel block, box) pairs. The backward is parallel over
// (channel block, level, image) slabs of the level gradients: each slab is written once with
// zeros and then gets the boxes of its image and level in a fixed order, so no two threads
// write the same memory and no gradient is zero-filled in a separate pass. No sum depends on
// the work split: results are bitwise equal for any thread count, and repeatable in every mode.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "../roi_ops.h"
#include "roi_pool_plan.h"

#define LIDPLUG_LANES_ISA isa_baseline
#include "roi_pool_lanes.h"

namespace lidplug {
namespace ops {
namespace {

// The bodies for this CPU: the widest of ours that ATen's capability allows.
const LaneKernels& lane_kernels() {
  static const LaneKernels* const chosen = [] {
    const std::string capability = at::get_cpu_capability();
    if (capability == "AVX512" && lane_kernels_avx512() != nullptr) return lane_kernels_avx512();
    if ((capability == "AVX512" || capability == "AVX2") && lane_kernels_avx2() != nullptr) {
      return lane_kernels_avx2();
    }
    return &isa_baseline::kLaneKernels;
  }();
  return *chosen;
}

// One box, prepared once per call (what BoxView points into).
template <typename acc_t>
struct BoxPlan {
  RoiGeometry<acc_t> g;
  int H = 0, W = 0;
  std::vector<int> rows, cols;
  std::vector<Tap<acc_t>> y, x;

  bool touches_map() const { return !rows.empty() && !cols.empty(); }
  int64_t buffer_size() const { return int64_t(rows.size()) * cols.size() * kLanes<acc_t>; }
  BoxView<acc_t> view() const {
    const int nr = static_cast<int>(rows.size()), nq = static_cast<int>(cols.size());
    return {g, H, W, nr, nq, rows.data(), cols.data(), y.data(), x.data()};
  }
};

// The taps of one axis, and the map indices they touch (`used`, ascending), which the taps'
// low/high then index.
template <typename acc_t>
void plan_axis(acc_t start, acc_t bin, int grid, int pooled, int size,
               std::vector<Tap<acc_t>>& taps, std::vector<int>& used) {
  taps.resize(static_cast<size_t>(pooled) * grid);
  for (int p = 0; p < pooled; ++p) {
    for (int i = 0; i < grid; ++i) {
      const auto t = axis_tap(sample_coord(start, bin, grid, p, i), size);
      taps[p * grid + i] = t;
      if (t.inside) {
        used.push_back(t.low);
        used.push_back(t.high);
      }
    }
  }
  std::sort(used.begin(), used.end());
  used.erase(std::unique(used.begin(), used.end()), used.end());
  // A run of indices copies faster than a list: take the whole span when it is at most twice
  // as long as the list (as for every box up to about two bins per pixel).
  if (!used.empty() && used.back() - used.front() < 2 * static_cast<int>(used.size())) {
    const int first = used.front();
    used.resize(used.back() - first + 1);
    std::iota(used.begin(), used.end(), first);
  }
  for (auto& t : taps) {
    if (!t.inside) continue;
    t.low = static_cast<int>(std::lower_bound(used.begin(), used.end(), t.low) - used.begin());
    t.high = static_cast<int>(std::lower_bound(used.begin(), used.end(), t.high) - used.begin());
  }
}

template <typename acc_t>
std::vector<BoxPlan<acc_t>> plan_boxes(const acc_t* rois, int64_t num_rois, const LevelInfo& info,
                                       int pooled_h, int pooled_w, int sampling_ratio,
                                       bool aligned) {
  std::vector<BoxPlan<acc_t>> plans(num_rois);
  at::parallel_for(0, num_rois, 16, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      auto& p = plans[k];
      p.g = roi_geometry<acc_t>(rois + k * 5, pooled_h, pooled_w, sampling_ratio, aligned, info);
      if (p.g.grid_h <= 0 || p.g.grid_w <= 0) continue;  // no samples: pools zeros
      p.H = info.height[p.g.level];
      p.W = info.width[p.g.level];
      plan_axis(p.g.start_h, p.g.bin_h, p.g.grid_h, pooled_h, p.H, p.y, p.rows);
      plan_axis(p.g.start_w, p.g.bin_w, p.g.grid_w, pooled_w, p.W, p.x, p.cols);
    }
  });
  return plans;
}

// Box indices ordered by image (stable): within a channel block, boxes of one image follow each
// other, so that image's planes stay in cache.
template <typename acc_t>
std::vector<int64_t> by_image(const acc_t* rois, int64_t num_rois) {
  std::vector<int64_t> order(num_rois);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return rois[a * 5] < rois[b * 5]; });
  return order;
}

// out: [K, PH, PW, C]; squares (when ref is given): [K, blocks], each box's sum of squares per
// channel block.
template <typename scalar_t, typename acc_t>
void pool_kernel(const std::vector<const scalar_t*>& feat, const std::vector<const scalar_t*>& ref,
                 const acc_t* rois, int64_t num_rois, const LevelInfo& info, int pooled_h,
                 int pooled_w, int sampling_ratio, bool aligned, acc_t* out, acc_t* squares) {
  constexpr int L = kLanes<acc_t>;
  const int64_t C = info.channels;
  const int64_t blocks = (C + L - 1) / L;
  const int64_t bins = int64_t(pooled_h) * pooled_w;
  const auto pool_block = lane_kernels().pool<scalar_t>();
  const auto plans =
      plan_boxes(rois, num_rois, info, pooled_h, pooled_w, sampling_ratio, aligned);
  const std::vector<int64_t> order = by_image(rois, num_rois);
  at::parallel_for(0, blocks * num_rois, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> buf;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t blk = item / num_rois, k = order[item % num_rois];
      const int64_t c0 = blk * L;
      const int nc = static_cast<int>(std::min<int64_t>(L, C - c0));
      const auto& p = plans[k];
      acc_t* o = out + k * bins * C + c0;
      acc_t sq = 0;
      if (p.touches_map()) {
        const int64_t hw = int64_t(p.H) * p.W, plane = (int64_t(p.g.batch) * C + c0) * hw;
        if (int64_t(buf.size()) < p.buffer_size()) buf.resize(p.buffer_size());
        sq = pool_block(p.view(), feat[p.g.level] + plane,
                        ref.empty() ? nullptr : ref[p.g.level] + plane, hw, nc, pooled_h,
                        pooled_w, C, buf.data(), o);
      } else {
        for (int64_t b = 0; b < bins; ++b) std::fill_n(o + b * C, nc, acc_t(0));
      }
      if (squares != nullptr) squares[k * blocks + blk] = sq;
    }
  });
}

// grad: [K, PH, PW, C], box k's times scale[k]; out: one [B, C, H, W] gradient per level,
// written entirely here.
template <typename acc_t>
void pool_backward_kernel(const acc_t* grad, const std::vector<acc_t>& scale, const acc_t* rois,
                          int64_t num_rois, const LevelInfo& info, int pooled_h, int pooled_w,
                          int sampling_ratio, bool aligned, const std::vector<acc_t*>& out) {
  constexpr int L = kLanes<acc_t>;
  const int64_t C = info.channels, B = info.batch, levels = info.num_levels;
  const int64_t blocks = (C + L - 1) / L;
  const int64_t bins = int64_t(pooled_h) * pooled_w;
  const auto scatter_block = lane_kernels().scatter<acc_t>();
  const auto plans =
      plan_boxes(rois, num_rois, info, pooled_h, pooled_w, sampling_ratio, aligned);
  // The boxes of each (level, image) segment, in input order: the fixed summation order.
  std::vector<int64_t> offsets(levels * B + 1, 0);
  for (const auto& p : plans) {
    if (p.touches_map()) ++offsets[p.g.level * B + p.g.batch + 1];
  }
  std::partial_sum(offsets.begin(), offsets.end(), offsets.begin());
  std::vector<int64_t> order(offsets.back()), next(offsets.begin(), offsets.end() - 1);
  for (int64_t k = 0; k < num_rois; ++k) {
    if (plans[k].touches_map()) order[next[plans[k].g.level * B + plans[k].g.batch]++] = k;
  }
  at::parallel_for(0, blocks * levels * B, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> buf;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t blk = item / (levels * B), seg = item % (levels * B);
      const int64_t level = seg / B, b = seg % B, c0 = blk * L;
      const int nc = static_cast<int>(std::min<int64_t>(L, C - c0));
      const int64_t hw = int64_t(info.height[level]) * info.width[level];
      acc_t* dst = out[level] + (b * C + c0) * hw;
      std::fill_n(dst, nc * hw, acc_t(0));
      for (int64_t j = offsets[seg]; j < offsets[seg + 1]; ++j) {
        const auto& p = plans[order[j]];
        if (int64_t(buf.size()) < p.buffer_size()) buf.resize(p.buffer_size());
        scatter_block(p.view(), grad + order[j] * bins * C + c0, scale[order[j]], hw, nc,
                      pooled_h, pooled_w, C, buf.data(), dst);
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

Pooled pool_cpu(at::TensorList features, at::TensorList ref, const at::Tensor& rois,
                const LevelInfo& info, int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio,
                bool aligned) {
  const auto acc = acc_dtype(features[0].scalar_type());
  const auto options = features[0].options().dtype(acc);
  // Every element is written by the kernel (zeros for boxes without samples).
  at::Tensor out = at::empty({rois.size(0), info.channels, pooled_h, pooled_w},
                             options.memory_format(at::MemoryFormat::ChannelsLast));
  const int64_t lanes = acc == at::kDouble ? kLanes<double> : kLanes<float>;
  at::Tensor squares;
  if (!ref.empty()) {
    squares = at::empty({rois.size(0), (info.channels + lanes - 1) / lanes}, options);
  }
  if (out.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, features[0].scalar_type(), "lidplug_roi_pool_cpu", [&] {
          using acc_t = at::opmath_type<scalar_t>;
          pool_kernel<scalar_t, acc_t>(
              level_ptrs<scalar_t>(features), level_ptrs<scalar_t>(ref),
              rois.const_data_ptr<acc_t>(), rois.size(0), info, static_cast<int>(pooled_h),
              static_cast<int>(pooled_w), static_cast<int>(sampling_ratio), aligned,
              out.mutable_data_ptr<acc_t>(),
              squares.defined() ? squares.mutable_data_ptr<acc_t>() : nullptr);
        });
  }
  // Per box, its blocks in order: a fixed summation order for any thread count.
  return {out, squares.defined() ? squares.sum(1) : squares};
}

std::vector<at::Tensor> pool_backward_cpu(const at::Tensor& grad, const at::Tensor& scale,
                                          const at::Tensor& rois, const LevelInfo& info,
                                          int64_t sampling_ratio, bool aligned,
                                          bool /*deterministic: always*/) {
  TORCH_INTERNAL_ASSERT(grad.is_contiguous(at::MemoryFormat::ChannelsLast));
  std::vector<at::Tensor> out;
  for (int i = 0; i < info.num_levels; ++i) {
    // Uninitialised: the kernel writes every element once (zeros where no box reaches).
    out.push_back(at::empty({info.batch, info.channels, info.height[i], info.width[i]},
                            grad.options()));
  }
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "lidplug_roi_pool_backward_cpu", [&] {
    std::vector<scalar_t*> dst;
    for (auto& t : out) dst.push_back(t.mutable_data_ptr<scalar_t>());
    // One factor per box (see PoolBackwardFn).
    std::vector<scalar_t> factor(rois.size(0), scalar_t(1));
    if (scale.defined()) {
      const at::Tensor s = scale.expand({rois.size(0)}).contiguous();
      std::copy_n(s.const_data_ptr<scalar_t>(), rois.size(0), factor.begin());
    }
    pool_backward_kernel<scalar_t>(grad.const_data_ptr<scalar_t>(), factor,
                                   rois.const_data_ptr<scalar_t>(), rois.size(0), info,
                                   static_cast<int>(grad.size(2)), static_cast<int>(grad.size(3)),
                                   static_cast<int>(sampling_ratio), aligned, dst);
  });
  return out;
}

const Backend kCpuBackend{&pool_cpu, &pool_backward_cpu, at::MemoryFormat::ChannelsLast};

}  // namespace
}  // namespace ops
}  // namespace lidplug

LIDPLUG_REGISTER_BACKEND(lidplug, CPU, ::lidplug::ops::kCpuBackend)
