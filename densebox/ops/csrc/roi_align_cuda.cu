// RoIAlign on the GPU: one thread per output element (forward) and per output gradient
// element (backward, atomic adds into the input gradient). float16 / bfloat16 tensors are
// computed in float32; float32 / float64 use the same arithmetic as the CPU kernel.
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "ops.h"
#include "roi_align_common.h"

namespace densebox::ops {
namespace {

constexpr int kThreads = 256;

struct Dims {
  int batch, channels, height, width, pooled_h, pooled_w;
};

// rois are held in the accumulate type (float32 for float16 / bfloat16 inputs).
template <typename acc_t>
__device__ __forceinline__ roi::Geometry<acc_t> roi_geometry(const acc_t* rois, int64_t n,
                                                              acc_t scale, const Dims& d,
                                                              int sampling_ratio, bool aligned) {
  return roi::geometry(rois + n * 5, scale, d.pooled_h, d.pooled_w, sampling_ratio, aligned);
}

template <typename T>
__global__ void forward_kernel(int64_t total, const T* __restrict__ input,
                               const at::acc_type<T, true>* __restrict__ rois,
                               T* __restrict__ output, at::acc_type<T, true> scale, Dims d,
                               int sampling_ratio, bool aligned) {
  using acc_t = at::acc_type<T, true>;
  for (int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       index < total; index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int pw = static_cast<int>(index % d.pooled_w);
    const int ph = static_cast<int>((index / d.pooled_w) % d.pooled_h);
    const int c = static_cast<int>((index / d.pooled_w / d.pooled_h) % d.channels);
    const int64_t n = index / d.pooled_w / d.pooled_h / d.channels;
    const auto g = roi_geometry(rois, n, scale, d, sampling_ratio, aligned);
    if (g.batch < 0 || g.batch >= d.batch) {  // not an image of this batch: no data
      output[index] = static_cast<T>(0);
      continue;
    }
    const T* plane =
        input + (static_cast<int64_t>(g.batch) * d.channels + c) * d.height * d.width;
    acc_t acc = 0;
    for (int iy = 0; iy < g.grid_h; ++iy) {
      const acc_t y = roi::sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h);
      for (int ix = 0; ix < g.grid_w; ++ix) {
        const acc_t x = roi::sample_coord(g.start_w, pw, g.bin_w, ix, g.grid_w);
        roi::Corners<acc_t> p;
        if (!roi::bilinear(d.height, d.width, y, x, p)) continue;
        acc += p.w1 * static_cast<acc_t>(plane[p.o1]) + p.w2 * static_cast<acc_t>(plane[p.o2]) +
               p.w3 * static_cast<acc_t>(plane[p.o3]) + p.w4 * static_cast<acc_t>(plane[p.o4]);
      }
    }
    const acc_t count = static_cast<acc_t>(max(g.grid_h * g.grid_w, 1));
    output[index] = static_cast<T>(acc / count);
  }
}

template <typename T>
__global__ void backward_kernel(int64_t total, const T* __restrict__ grad,
                                const at::acc_type<T, true>* __restrict__ rois,
                                T* __restrict__ grad_input, at::acc_type<T, true> scale, Dims d,
                                int sampling_ratio, bool aligned) {
  using acc_t = at::acc_type<T, true>;
  for (int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       index < total; index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int pw = static_cast<int>(index % d.pooled_w);
    const int ph = static_cast<int>((index / d.pooled_w) % d.pooled_h);
    const int c = static_cast<int>((index / d.pooled_w / d.pooled_h) % d.channels);
    const int64_t n = index / d.pooled_w / d.pooled_h / d.channels;
    const auto g = roi_geometry(rois, n, scale, d, sampling_ratio, aligned);
    if (g.grid_h <= 0 || g.grid_w <= 0 || g.batch < 0 || g.batch >= d.batch) continue;
    T* plane = grad_input + (static_cast<int64_t>(g.batch) * d.channels + c) * d.height * d.width;
    const acc_t gb = static_cast<acc_t>(grad[index]);
    const acc_t count = static_cast<acc_t>(g.grid_h * g.grid_w);
    for (int iy = 0; iy < g.grid_h; ++iy) {
      const acc_t y = roi::sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h);
      for (int ix = 0; ix < g.grid_w; ++ix) {
        const acc_t x = roi::sample_coord(g.start_w, pw, g.bin_w, ix, g.grid_w);
        roi::Corners<acc_t> p;
        if (!roi::bilinear(d.height, d.width, y, x, p)) continue;
        gpuAtomicAdd(plane + p.o1, static_cast<T>(gb * p.w1 / count));
        gpuAtomicAdd(plane + p.o2, static_cast<T>(gb * p.w2 / count));
        gpuAtomicAdd(plane + p.o3, static_cast<T>(gb * p.w3 / count));
        gpuAtomicAdd(plane + p.o4, static_cast<T>(gb * p.w4 / count));
      }
    }
  }
}

unsigned grid_for(int64_t total) {
  return static_cast<unsigned>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65536));
}

}  // namespace

at::Tensor roi_align_forward_cuda(const at::Tensor& input, const at::Tensor& rois,
                                  double spatial_scale, int64_t pooled_h, int64_t pooled_w,
                                  int64_t sampling_ratio, bool aligned) {
  const c10::cuda::CUDAGuard guard(input.device());
  const auto in = input.contiguous();
  const auto acc_type = at::toAccumulateType(input.scalar_type(), at::kCUDA);
  const auto r = rois.to(acc_type).contiguous();
  auto out = at::empty({r.size(0), in.size(1), pooled_h, pooled_w}, in.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  const Dims d{static_cast<int>(in.size(0)), static_cast<int>(in.size(1)),
               static_cast<int>(in.size(2)), static_cast<int>(in.size(3)),
               static_cast<int>(pooled_h),
               static_cast<int>(pooled_w)};
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.scalar_type(),
                                  "densebox_roi_align_forward_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    forward_kernel<scalar_t><<<grid_for(total), kThreads, 0, stream>>>(
        total, in.data_ptr<scalar_t>(), r.data_ptr<acc_t>(), out.data_ptr<scalar_t>(),
        static_cast<acc_t>(spatial_scale), d, static_cast<int>(sampling_ratio), aligned);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor roi_align_backward_cuda(const at::Tensor& grad, const at::Tensor& rois,
                                   double spatial_scale, int64_t pooled_h, int64_t pooled_w,
                                   int64_t batch, int64_t channels, int64_t height,
                                   int64_t width, int64_t sampling_ratio, bool aligned) {
  const c10::cuda::CUDAGuard guard(grad.device());
  const auto g = grad.contiguous();
  const auto acc_type = at::toAccumulateType(grad.scalar_type(), at::kCUDA);
  const auto r = rois.to(acc_type).contiguous();
  auto grad_input = at::zeros({batch, channels, height, width}, g.options());
  const int64_t total = g.numel();
  if (total == 0) return grad_input;
  const Dims d{static_cast<int>(batch),    static_cast<int>(channels),
               static_cast<int>(height),   static_cast<int>(width),
               static_cast<int>(pooled_h), static_cast<int>(pooled_w)};
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(),
                                  "densebox_roi_align_backward_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    backward_kernel<scalar_t><<<grid_for(total), kThreads, 0, stream>>>(
        total, g.data_ptr<scalar_t>(), r.data_ptr<acc_t>(), grad_input.data_ptr<scalar_t>(),
        static_cast<acc_t>(spatial_scale), d, static_cast<int>(sampling_ratio), aligned);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_input;
}

}  // namespace densebox::ops
