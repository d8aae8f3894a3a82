// The CPU kernels' per-block bodies (roi_pool_lanes.h) compiled for AVX-512 (F, BW, VL and DQ,
// which ATen's AVX512 capability asks of a CPU): a block of 16 float channels is one register.
// roi_pool_kernel.cpp picks them when ATen's CPU capability allows.
#include "roi_pool_plan.h"

#if LIDPLUG_X86_VARIANTS
#define LIDPLUG_LANES_ISA isa_avx512
#define LIDPLUG_LANES_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"
#include "roi_pool_lanes.h"
#endif

LIDPLUG_DEFINE_LANE_KERNELS(avx512)
