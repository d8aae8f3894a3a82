// CUDA kernels: RoIAlign of one pyramid or of the difference of two, and its backward.
//
// Forward: one thread per pooled element (k, c, ph, pw); every level of the pyramid is reached
// from one launch through a by-value table of level pointers.
// Backward, default mode: one thread per pooled element scatters into the level gradients with
// atomics (as torchvision does) -- fast, but the float sum order varies run to run.
// Backward, deterministic mode: a gather. Boxes are sorted by (level, image); one thread per
// gradient pixel walks the boxes of its (level, image) in input order. No atomics, fixed
// summation order, bitwise repeatable.
//
// The work of each thread is in roi_pool_bodies.h and the host side in roi_pool_launch.h, shared
// with the emulated launch on the CPU (cpu/roi_pool_cuda_emulated.cpp) that the tests run; this
// file adds only what a GPU needs: the __global__ grid-stride loop, the atomic add, the device
// guard and the stream.
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../roi_ops.h"
#include "../roi_pool_launch.h"

namespace lidplug {
namespace ops {
namespace {

// The one __global__ kernel: a grid-stride loop around a body of roi_pool_bodies.h.
template <typename Body>
__global__ void grid_stride_kernel(Body body, int64_t n) {
  bodies::grid_stride(body, n, blockIdx.x, threadIdx.x, gridDim.x, blockDim.x);
}

// The scatter's add on the GPU. The bodies are __host__ __device__, so this is too, but only
// device code calls it (the emulated launch on the host uses PlainAdd).
struct AtomicAdd {
  template <typename T>
  __host__ __device__ void operator()(T* p, T v) const {
#if defined(__CUDA_ARCH__)
    gpuAtomicAdd(p, v);
#else
    (void)p;
    (void)v;
#endif
  }
};

struct CudaExec {
  using Add = AtomicAdd;
  cudaStream_t stream;

  template <typename Body>
  void launch(int64_t n, const Body& body) const {
    if (n == 0) return;
    const auto blocks = static_cast<unsigned int>(bodies::blocks_for(n));
    grid_stride_kernel<Body><<<blocks, bodies::kThreads, 0, stream>>>(body, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

Pooled pool_cuda(at::TensorList features, at::TensorList ref, const at::Tensor& rois,
                 const LevelInfo& info, int64_t pooled_h, int64_t pooled_w,
                 int64_t sampling_ratio, bool aligned) {
  const c10::cuda::CUDAGuard guard(features[0].device());
  return bodies::launch_pool(CudaExec{at::cuda::getCurrentCUDAStream()}, features, ref, rois,
                             info, pooled_h, pooled_w, sampling_ratio, aligned);
}

std::vector<at::Tensor> pool_backward_cuda(const at::Tensor& grad, const at::Tensor& scale,
                                           const at::Tensor& rois, const LevelInfo& info,
                                           int64_t sampling_ratio, bool aligned,
                                           bool deterministic) {
  const c10::cuda::CUDAGuard guard(grad.device());
  return bodies::launch_pool_backward(CudaExec{at::cuda::getCurrentCUDAStream()}, grad, scale,
                                      rois, info, sampling_ratio, aligned, deterministic);
}

const Backend kCudaBackend{&pool_cuda, &pool_backward_cuda, at::MemoryFormat::Contiguous};

}  // namespace
}  // namespace ops
}  // namespace lidplug

LIDPLUG_REGISTER_BACKEND(lidplug, CUDA, ::lidplug::ops::kCudaBackend)
