// What the CPU kernels (roi_pool_kernel.cpp) hand to their per-(box, channel block) bodies
// (roi_pool_lanes.h), which are compiled once per x86 instruction set and chosen at run time.
//
// Everything a body reads is plain data here -- pointers, sizes, the geometry of
// roi_geometry.h -- so that a body compiled for AVX-512 instantiates no template that the
// baseline code also instantiates (the linker keeps one copy of those, and could keep the
// AVX-512 one for a CPU without it).
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../roi_geometry.h"

// Variants for AVX2 and AVX-512 where GCC or Clang target x86-64 (target pragmas); elsewhere
// the baseline bodies only.
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define LIDPLUG_X86_VARIANTS 1
#else
#define LIDPLUG_X86_VARIANTS 0
#endif
// SSE, which every x86-64 CPU has: 4 x 4 transposes between the maps and the bodies' buffers.
#if defined(__x86_64__) || defined(_M_X64)
#define LIDPLUG_SSE 1
#include <xmmintrin.h>
#else
#define LIDPLUG_SSE 0
#endif

namespace lidplug {
namespace ops {

// Channels per block: one 64-byte cache line of the accumulation type (16 floats, 8 doubles),
// so the taps of a block are whole lines of a body's buffer and whole vectors at any SIMD
// width (4 SSE, 2 AVX2 or 1 AVX-512 register).
template <typename acc_t>
constexpr int kLanes = 64 / static_cast<int>(sizeof(acc_t));

// One box as a body sees it: its geometry, the map rows and columns its samples touch
// (ascending; `nr` and `nq` of them), and the taps of its samples along each axis
// (pooled * grid per axis) with `low`/`high` as indices into those rows and columns.
template <typename acc_t>
struct BoxView {
  RoiGeometry<acc_t> g;
  int H, W;
  int nr, nq;
  const int* rows;
  const int* cols;
  const Tap<acc_t>* y;
  const Tap<acc_t>* x;
};

// Pools one box for a block of nc <= kLanes channels -- the planes at f, hw apart, minus those
// at r unless r is null -- into out (bin b's nc values at out + b * C), and returns the sum of
// the squares of what it wrote. buf: at least nr * nq * kLanes values of scratch.
template <typename scalar_t, typename acc_t>
using PoolBlockFn = acc_t (*)(const BoxView<acc_t>& box, const scalar_t* f, const scalar_t* r,
                              int64_t hw, int nc, int pooled_h, int pooled_w, int64_t C,
                              acc_t* buf, acc_t* out);

// Adds the gradient of one box's bins (bin b's nc values at grad + b * C, times scale) for a
// block of nc <= kLanes channels to the planes at dst, hw apart. buf: as for PoolBlockFn.
template <typename acc_t>
using ScatterBlockFn = void (*)(const BoxView<acc_t>& box, const acc_t* grad, acc_t scale,
                                int64_t hw, int nc, int pooled_h, int pooled_w, int64_t C,
                                acc_t* buf, acc_t* dst);

// The bodies of one instruction set, for every dtype the ops take.
struct LaneKernels {
  PoolBlockFn<float, float> pool_float;
  PoolBlockFn<double, double> pool_double;
  PoolBlockFn<c10::Half, float> pool_half;
  PoolBlockFn<c10::BFloat16, float> pool_bfloat16;
  ScatterBlockFn<float> scatter_float;
  ScatterBlockFn<double> scatter_double;

  template <typename scalar_t>
  auto pool() const {
    if constexpr (std::is_same_v<scalar_t, double>) return pool_double;
    else if constexpr (std::is_same_v<scalar_t, c10::Half>) return pool_half;
    else if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) return pool_bfloat16;
    else return pool_float;
  }
  template <typename acc_t>
  auto scatter() const {
    if constexpr (std::is_same_v<acc_t, double>) return scatter_double;
    else return scatter_float;
  }
};

// The tables of roi_pool_kernel_avx2.cpp and roi_pool_kernel_avx512.cpp; null where they are
// not built (LIDPLUG_X86_VARIANTS is 0).
const LaneKernels* lane_kernels_avx2();
const LaneKernels* lane_kernels_avx512();

}  // namespace ops
}  // namespace lidplug

// Defines lane_kernels_<isa>() in a variant's file, after roi_pool_lanes.h compiled isa_<isa>.
#if LIDPLUG_X86_VARIANTS
#define LIDPLUG_DEFINE_LANE_KERNELS(isa)                                    \
  const ::lidplug::ops::LaneKernels* ::lidplug::ops::lane_kernels_##isa() { \
    return &::lidplug::ops::isa_##isa::kLaneKernels;                        \
  }
#else
#define LIDPLUG_DEFINE_LANE_KERNELS(isa)                                    \
  const ::lidplug::ops::LaneKernels* ::lidplug::ops::lane_kernels_##isa() { \
    return nullptr;                                                         \
  }
#endif
