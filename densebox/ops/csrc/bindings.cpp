// Operator registration of densebox.ops: argument checks and CPU / CUDA dispatch by device.
//
// The kernels are registered as torch operators (torch.ops.<TORCH_EXTENSION_NAME>.*), not as
// a pybind11 module: the library then needs no Python headers and compiles much faster.
// The namespace is the extension's name, which carries the source hash, so two builds can
// live in one process.
#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <torch/library.h>

#include "ops.h"

namespace densebox::ops {
namespace {

void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* what) {
  TORCH_CHECK(a.device() == b.device(), what, ": tensors on different devices (", a.device(),
              " and ", b.device(), ")");
}

[[noreturn]] void no_cuda(const char* what) {
  TORCH_CHECK(false, what, ": this build of the densebox.ops extension has no CUDA kernels");
}

at::Tensor nms(const at::Tensor& boxes, const at::Tensor& scores,
               const std::optional<at::Tensor>& groups, double iou_threshold) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "nms: boxes must be (N, 4), got ",
              boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "nms: scores must be (N,) with N = ", boxes.size(0), ", got ", scores.sizes());
  TORCH_CHECK(at::isFloatingType(boxes.scalar_type()), "nms: boxes must be floating point, got ",
              boxes.scalar_type());
  check_same_device(boxes, scores, "nms");
  if (groups.has_value()) {
    TORCH_CHECK(groups->dim() == 1 && groups->size(0) == boxes.size(0),
                "nms: idxs must be (N,) with N = ", boxes.size(0), ", got ", groups->sizes());
    check_same_device(boxes, *groups, "nms");
  }
  if (boxes.is_cuda()) {
#ifdef DENSEBOX_WITH_CUDA
    return nms_cuda(boxes, scores, groups, iou_threshold);
#else
    no_cuda("nms");
#endif
  }
  TORCH_CHECK(boxes.is_cpu(), "nms: unsupported device ", boxes.device());
  return nms_cpu(boxes, scores, groups, iou_threshold);
}

at::Tensor segmented_nms(const at::Tensor& boxes, const std::optional<at::Tensor>& valid,
                         double iou_threshold) {
  TORCH_CHECK(boxes.dim() == 3 && boxes.size(2) == 4,
              "segmented_nms: boxes must be (G, k, 4), got ", boxes.sizes());
  TORCH_CHECK(at::isFloatingType(boxes.scalar_type()),
              "segmented_nms: boxes must be floating point, got ", boxes.scalar_type());
  at::Tensor v;
  if (valid.has_value()) {
    TORCH_CHECK(valid->dim() == 2 && valid->size(0) == boxes.size(0) &&
                    valid->size(1) == boxes.size(1),
                "segmented_nms: valid must be (G, k) = (", boxes.size(0), ", ", boxes.size(1),
                "), got ", valid->sizes());
    check_same_device(boxes, *valid, "segmented_nms");
    v = valid->to(at::kBool);
  } else {
    v = at::ones({boxes.size(0), boxes.size(1)}, boxes.options().dtype(at::kBool));
  }
  if (boxes.is_meta()) {  // shapes only: lets callers check a pipeline has no data-dependent step
    return at::empty({boxes.size(0), boxes.size(1)}, boxes.options().dtype(at::kBool));
  }
  if (boxes.is_cuda()) {
#ifdef DENSEBOX_WITH_CUDA
    return segmented_nms_cuda(boxes, v, iou_threshold);
#else
    no_cuda("segmented_nms");
#endif
  }
  TORCH_CHECK(boxes.is_cpu(), "segmented_nms: unsupported device ", boxes.device());
  return segmented_nms_cpu(boxes, v, iou_threshold);
}

at::Tensor roi_align_forward(const at::Tensor& input, const at::Tensor& rois,
                             double spatial_scale, int64_t pooled_h, int64_t pooled_w,
                             int64_t sampling_ratio, bool aligned) {
  TORCH_CHECK(input.dim() == 4, "roi_align: input must be (N, C, H, W), got ", input.sizes());
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, "roi_align: rois must be (K, 5), got ",
              rois.sizes());
  TORCH_CHECK(pooled_h > 0 && pooled_w > 0, "roi_align: output_size must be positive, got (",
              pooled_h, ", ", pooled_w, ")");
  check_same_device(input, rois, "roi_align");
  if (input.is_cuda()) {
#ifdef DENSEBOX_WITH_CUDA
    return roi_align_forward_cuda(input, rois, spatial_scale, pooled_h, pooled_w,
                                  sampling_ratio, aligned);
#else
    no_cuda("roi_align");
#endif
  }
  TORCH_CHECK(input.is_cpu(), "roi_align: unsupported device ", input.device());
  return roi_align_forward_cpu(input, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio,
                               aligned);
}

at::Tensor roi_align_backward(const at::Tensor& grad, const at::Tensor& rois,
                              double spatial_scale, int64_t pooled_h, int64_t pooled_w,
                              int64_t batch, int64_t channels, int64_t height, int64_t width,
                              int64_t sampling_ratio, bool aligned) {
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels &&
                  grad.size(2) == pooled_h && grad.size(3) == pooled_w,
              "roi_align backward: grad must be (K, C, PH, PW), got ", grad.sizes());
  check_same_device(grad, rois, "roi_align backward");
  if (grad.is_cuda()) {
#ifdef DENSEBOX_WITH_CUDA
    return roi_align_backward_cuda(grad, rois, spatial_scale, pooled_h, pooled_w, batch,
                                   channels, height, width, sampling_ratio, aligned);
#else
    no_cuda("roi_align backward");
#endif
  }
  TORCH_CHECK(grad.is_cpu(), "roi_align backward: unsupported device ", grad.device());
  return roi_align_backward_cpu(grad, rois, spatial_scale, pooled_h, pooled_w, batch, channels,
                                height, width, sampling_ratio, aligned);
}

bool with_cuda() {
#ifdef DENSEBOX_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace
}  // namespace densebox::ops

// TORCH_LIBRARY pastes its namespace argument; the extra macro level expands the name first
#define DENSEBOX_TORCH_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)

DENSEBOX_TORCH_LIBRARY(TORCH_EXTENSION_NAME, m) {
  namespace o = densebox::ops;
  m.def("nms(Tensor boxes, Tensor scores, Tensor? groups, float iou_threshold) -> Tensor",
        &o::nms);
  m.def("segmented_nms(Tensor boxes, Tensor? valid, float iou_threshold) -> Tensor",
        &o::segmented_nms);
  m.def("roi_align_forward(Tensor input, Tensor rois, float spatial_scale, int pooled_h, "
        "int pooled_w, int sampling_ratio, bool aligned) -> Tensor",
        &o::roi_align_forward);
  m.def("roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, int pooled_h, "
        "int pooled_w, int batch, int channels, int height, int width, int sampling_ratio, "
        "bool aligned) -> Tensor",
        &o::roi_align_backward);
  m.def("with_cuda() -> bool", &o::with_cuda);
}
