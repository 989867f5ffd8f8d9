// RoIAlign (average pooling of bilinear samples) on the CPU, forward and backward.
//
// Forward runs RoIs in parallel; backward runs channel ranges in parallel, so no two
// threads add into the same gradient plane and every gradient element receives its
// contributions in the same order as torchvision's single-threaded loop.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <vector>

#include "ops.h"
#include "roi_align_common.h"

namespace densebox::ops {
namespace {

struct Shape {
  int64_t rois, channels, height, width, pooled_h, pooled_w;
};

// Corners of every sample of one RoI, ordered (ph, pw, iy, ix); `inside` marks samples on
// the map. Returns the number of samples per bin (0 when the bin grid is empty).
template <typename T>
int64_t build_samples(const roi::Geometry<T>& g, const Shape& s,
                      std::vector<roi::Corners<T>>& samples, std::vector<uint8_t>& inside) {
  if (g.grid_h <= 0 || g.grid_w <= 0) return 0;
  const int64_t per_bin = static_cast<int64_t>(g.grid_h) * g.grid_w;
  samples.resize(s.pooled_h * s.pooled_w * per_bin);
  inside.resize(samples.size());
  int64_t k = 0;
  for (int ph = 0; ph < s.pooled_h; ++ph) {
    for (int pw = 0; pw < s.pooled_w; ++pw) {
      for (int iy = 0; iy < g.grid_h; ++iy) {
        const T y = roi::sample_coord(g.start_h, ph, g.bin_h, iy, g.grid_h);
        for (int ix = 0; ix < g.grid_w; ++ix, ++k) {
          const T x = roi::sample_coord(g.start_w, pw, g.bin_w, ix, g.grid_w);
          inside[k] = roi::bilinear(static_cast<int>(s.height), static_cast<int>(s.width), y, x,
                                    samples[k]);
        }
      }
    }
  }
  return per_bin;
}

template <typename T>
void forward_impl(const T* input, const T* rois, T* output, const Shape& s, T scale,
                  int sampling_ratio, bool aligned, int64_t batch) {
  const int64_t plane = s.height * s.width;
  const int64_t bins = s.pooled_h * s.pooled_w;
  at::parallel_for(0, s.rois, 1, [&](int64_t begin, int64_t end) {
    std::vector<roi::Corners<T>> samples;
    std::vector<uint8_t> inside;
    for (int64_t n = begin; n < end; ++n) {
      const auto g = roi::geometry(rois + n * 5, scale, static_cast<int>(s.pooled_h),
                                   static_cast<int>(s.pooled_w), sampling_ratio, aligned);
      TORCH_CHECK(g.batch >= 0 && g.batch < batch, "roi_align: rois[", n, ", 0] = ", g.batch,
                  " is not an image index of the input batch of ", batch);
      const int64_t per_bin = build_samples(g, s, samples, inside);
      const T count = static_cast<T>(std::max(g.grid_h * g.grid_w, 1));
      for (int64_t c = 0; c < s.channels; ++c) {
        const T* src = input + (g.batch * s.channels + c) * plane;
        T* dst = output + (n * s.channels + c) * bins;
        int64_t k = 0;
        for (int64_t b = 0; b < bins; ++b) {
          T acc = 0;
          for (int64_t q = 0; q < per_bin; ++q, ++k) {
            if (!inside[k]) continue;
            const auto& p = samples[k];
            acc += p.w1 * src[p.o1] + p.w2 * src[p.o2] + p.w3 * src[p.o3] + p.w4 * src[p.o4];
          }
          dst[b] = acc / count;
        }
      }
    }
  });
}

// Same arithmetic with the map in (N, H, W, C) order and the output in (K, PH, PW, C):
// each bilinear corner is a contiguous run of channels, so the channel loop is a
// vectorisable streaming loop instead of four scattered reads per channel. Every output
// element still sums its samples in the same order, so results are bitwise the same.
template <typename T>
void forward_channels_last_impl(const T* input, const T* rois, T* output, const Shape& s,
                                T scale, int sampling_ratio, bool aligned, int64_t batch) {
  const int64_t channels = s.channels;
  const int64_t image = s.height * s.width * channels;
  const int64_t bins = s.pooled_h * s.pooled_w;
  at::parallel_for(0, s.rois, 1, [&](int64_t begin, int64_t end) {
    std::vector<roi::Corners<T>> samples;
    std::vector<uint8_t> inside;
    std::vector<T> acc_buffer(channels);
    T* __restrict__ acc = acc_buffer.data();
    for (int64_t n = begin; n < end; ++n) {
      const auto g = roi::geometry(rois + n * 5, scale, static_cast<int>(s.pooled_h),
                                   static_cast<int>(s.pooled_w), sampling_ratio, aligned);
      TORCH_CHECK(g.batch >= 0 && g.batch < batch, "roi_align: rois[", n, ", 0] = ", g.batch,
                  " is not an image index of the input batch of ", batch);
      const int64_t per_bin = build_samples(g, s, samples, inside);
      const T count = static_cast<T>(std::max(g.grid_h * g.grid_w, 1));
      const T* src = input + g.batch * image;
      T* dst = output + n * bins * channels;
      int64_t k = 0;
      for (int64_t b = 0; b < bins; ++b) {
        std::fill(acc, acc + channels, static_cast<T>(0));
        for (int64_t q = 0; q < per_bin; ++q, ++k) {
          if (!inside[k]) continue;
          const auto& p = samples[k];
          const T w1 = p.w1, w2 = p.w2, w3 = p.w3, w4 = p.w4;
          const T* __restrict__ v1 = src + p.o1 * channels;
          const T* __restrict__ v2 = src + p.o2 * channels;
          const T* __restrict__ v3 = src + p.o3 * channels;
          const T* __restrict__ v4 = src + p.o4 * channels;
          for (int64_t c = 0; c < channels; ++c) {
            acc[c] += w1 * v1[c] + w2 * v2[c] + w3 * v3[c] + w4 * v4[c];
          }
        }
        T* __restrict__ out = dst + b * channels;
        for (int64_t c = 0; c < channels; ++c) out[c] = acc[c] / count;
      }
    }
  });
}

template <typename T>
void backward_impl(const T* grad, const T* rois, T* grad_input, const Shape& s, T scale,
                   int sampling_ratio, bool aligned, int64_t batch) {
  const int64_t plane = s.height * s.width;
  const int64_t bins = s.pooled_h * s.pooled_w;
  for (int64_t n = 0; n < s.rois; ++n) {
    const int b = static_cast<int>(rois[n * 5]);
    TORCH_CHECK(b >= 0 && b < batch, "roi_align backward: rois[", n, ", 0] = ", b,
                " is not an image index of the input batch of ", batch);
  }
  at::parallel_for(0, s.channels, 1, [&](int64_t c_begin, int64_t c_end) {
    std::vector<roi::Corners<T>> samples;
    std::vector<uint8_t> inside;
    for (int64_t n = 0; n < s.rois; ++n) {
      const auto g = roi::geometry(rois + n * 5, scale, static_cast<int>(s.pooled_h),
                                   static_cast<int>(s.pooled_w), sampling_ratio, aligned);
      const int64_t per_bin = build_samples(g, s, samples, inside);
      if (per_bin == 0) continue;
      const T count = static_cast<T>(g.grid_h * g.grid_w);
      for (int64_t c = c_begin; c < c_end; ++c) {
        T* dst = grad_input + (g.batch * s.channels + c) * plane;
        const T* src = grad + (n * s.channels + c) * bins;
        int64_t k = 0;
        for (int64_t bin = 0; bin < bins; ++bin) {
          const T gb = src[bin];
          for (int64_t q = 0; q < per_bin; ++q, ++k) {
            if (!inside[k]) continue;
            const auto& p = samples[k];
            dst[p.o1] += gb * p.w1 / count;
            dst[p.o2] += gb * p.w2 / count;
            dst[p.o3] += gb * p.w3 / count;
            dst[p.o4] += gb * p.w4 / count;
          }
        }
      }
    }
  });
}

bool is_reduced_float(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

}  // namespace

at::Tensor roi_align_forward_cpu(const at::Tensor& input, const at::Tensor& rois,
                                 double spatial_scale, int64_t pooled_h, int64_t pooled_w,
                                 int64_t sampling_ratio, bool aligned) {
  // float16 / bfloat16 are computed in float32 and rounded once at the end.
  const auto work_type = is_reduced_float(input) ? at::kFloat : input.scalar_type();
  const auto r = rois.to(work_type).contiguous();
  const Shape s{r.size(0), input.size(1), input.size(2), input.size(3), pooled_h, pooled_w};
  const int64_t batch = input.size(0);
  if (s.rois == 0 || s.channels == 0) {
    return at::zeros({s.rois, s.channels, pooled_h, pooled_w}, input.options());
  }
  // channels-last pays off when the RoIs sample the map many times over (the layout change
  // costs one pass over the map), or when the map already is channels-last
  const bool channels_last =
      s.channels >= 8 &&
      (input.is_contiguous(at::MemoryFormat::ChannelsLast) ||
       s.rois * pooled_h * pooled_w >= batch * s.height * s.width / 16);
  if (channels_last) {
    const auto in = input.to(work_type).permute({0, 2, 3, 1}).contiguous();  // (N, H, W, C)
    auto out = at::empty({s.rois, pooled_h, pooled_w, s.channels}, in.options());
    AT_DISPATCH_FLOATING_TYPES(work_type, "densebox_roi_align_forward_cpu_cl", [&] {
      forward_channels_last_impl<scalar_t>(
          in.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), s,
          static_cast<scalar_t>(spatial_scale), static_cast<int>(sampling_ratio), aligned,
          batch);
    });
    return out.permute({0, 3, 1, 2}).contiguous().to(input.scalar_type());
  }
  const auto in = input.to(work_type).contiguous();
  auto out = at::zeros({s.rois, s.channels, pooled_h, pooled_w}, in.options());
  AT_DISPATCH_FLOATING_TYPES(work_type, "densebox_roi_align_forward_cpu", [&] {
    forward_impl<scalar_t>(in.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
                           out.data_ptr<scalar_t>(), s, static_cast<scalar_t>(spatial_scale),
                           static_cast<int>(sampling_ratio), aligned, in.size(0));
  });
  return out.to(input.scalar_type());
}

at::Tensor roi_align_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                  double spatial_scale, int64_t pooled_h, int64_t pooled_w,
                                  int64_t batch, int64_t channels, int64_t height,
                                  int64_t width, int64_t sampling_ratio, bool aligned) {
  const auto work_type = is_reduced_float(grad) ? at::kFloat : grad.scalar_type();
  const auto g = grad.to(work_type).contiguous();
  const auto r = rois.to(work_type).contiguous();
  auto grad_input = at::zeros({batch, channels, height, width}, g.options());
  if (g.numel() == 0) return grad_input.to(grad.scalar_type());
  const Shape s{r.size(0), channels, height, width, pooled_h, pooled_w};
  AT_DISPATCH_FLOATING_TYPES(work_type, "densebox_roi_align_backward_cpu", [&] {
    backward_impl<scalar_t>(g.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
                            grad_input.data_ptr<scalar_t>(), s,
                            static_cast<scalar_t>(spatial_scale),
                            static_cast<int>(sampling_ratio), aligned, batch);
  });
  return grad_input.to(grad.scalar_type());
}

}  // namespace densebox::ops
