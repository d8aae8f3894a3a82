// The CPU kernels' per-block bodies (roi_pool_lanes.h) compiled for AVX2 and FMA: a block of
// 16 float channels is two 8-lane registers. roi_pool_kernel.cpp picks them when ATen's CPU
// capability allows.
#include "roi_pool_plan.h"

#if LIDPLUG_X86_VARIANTS
#define LIDPLUG_LANES_ISA isa_avx2
#define LIDPLUG_LANES_TARGET "avx2,fma"
#include "roi_pool_lanes.h"
#endif

LIDPLUG_DEFINE_LANE_KERNELS(avx2)
