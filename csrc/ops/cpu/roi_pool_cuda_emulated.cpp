// The CUDA backend emulated on the CPU, for tests on machines without a GPU (CI among them).
//
// Registers the four backend ops again, under the test-only namespace `lidplug_cuda_emulated`
// (torch.ops.lidplug_cuda_emulated.*, same schemas as torch.ops.lidplug.*, CPU tensors), with
// the CUDA backend's own host side (roi_pool_launch.h) and kernel bodies (roi_pool_bodies.h).
// Each launch runs every thread of the grid the GPU would get -- blocks_for(n) blocks of
// kThreads threads, each thread its grid-stride loop -- one after another, in order. The
// deterministic backward's box sort and segment offsets are the same ATen calls, on the CPU.
//
// Not part of the API. LIDPLUG_EMULATED_MAX_BLOCKS=N caps the grid at N blocks (default: the
// GPU launch's cap), so that tests with small inputs still walk the grid-stride loop's later
// rounds.
#include <torch/library.h>

#include <cstdlib>
#include <vector>

#include "../roi_ops.h"
#include "../roi_pool_launch.h"

namespace lidplug {
namespace ops {
namespace {

int64_t max_blocks() {
  const char* v = std::getenv("LIDPLUG_EMULATED_MAX_BLOCKS");
  const long long n = v == nullptr ? 0 : std::atoll(v);
  return n > 0 ? n : bodies::kMaxBlocks;
}

struct EmulatedExec {
  using Add = PlainAdd;  // one thread at a time: no races to guard against
  int64_t max_blocks;

  template <typename Body>
  void launch(int64_t n, const Body& body) const {
    if (n == 0) return;  // as the CUDA launch, which starts no kernel then
    const int64_t blocks = bodies::blocks_for(n, max_blocks);
    for (int64_t block = 0; block < blocks; ++block) {
      for (int64_t thread = 0; thread < bodies::kThreads; ++thread) {
        bodies::grid_stride(body, n, block, thread, blocks, bodies::kThreads);
      }
    }
  }
};

Pooled pool_emulated(at::TensorList features, at::TensorList ref, const at::Tensor& rois,
                     const LevelInfo& info, int64_t pooled_h, int64_t pooled_w,
                     int64_t sampling_ratio, bool aligned) {
  return bodies::launch_pool(EmulatedExec{max_blocks()}, features, ref, rois, info, pooled_h,
                             pooled_w, sampling_ratio, aligned);
}

std::vector<at::Tensor> pool_backward_emulated(const at::Tensor& grad, const at::Tensor& scale,
                                               const at::Tensor& rois, const LevelInfo& info,
                                               int64_t sampling_ratio, bool aligned,
                                               bool deterministic) {
  return bodies::launch_pool_backward(EmulatedExec{max_blocks()}, grad, scale, rois, info,
                                      sampling_ratio, aligned, deterministic);
}

const Backend kEmulatedCudaBackend{&pool_emulated, &pool_backward_emulated,
                                   at::MemoryFormat::Contiguous};

}  // namespace

TORCH_LIBRARY(lidplug_cuda_emulated, m) { define_backend_ops(m); }

}  // namespace ops
}  // namespace lidplug

LIDPLUG_REGISTER_BACKEND(lidplug_cuda_emulated, CPU, ::lidplug::ops::kEmulatedCudaBackend)
