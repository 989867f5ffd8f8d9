// densebox.ops: declarations shared by the CPU and CUDA sources and the Python bindings.
//
// Box tensors are (N, 4) xyxy. NMS takes an optional (N,) int64 group tensor: boxes of
// different groups never suppress each other (class-aware / per-image NMS in one call).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace densebox::ops {

// Orderings shared by the CPU and CUDA NMS (plain ATen calls, so they run on either device).
struct NmsOrder {
  at::Tensor order;      // (N,) int64: box indices by decreasing score (stable for ties)
  at::Tensor perm;       // (N,) int64: box indices grouped by ascending group, by score inside
  at::Tensor perm_rank;  // (N,) int64: position in `order` of perm[p]; undefined without groups
  at::Tensor groups;     // (N,) int64: group of perm[p] (ascending); undefined without groups
};
NmsOrder nms_order(const at::Tensor& scores, const std::optional<at::Tensor>& groups);

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                   const std::optional<at::Tensor>& groups, double iou_threshold);

// Greedy NMS inside each row of a (G, k, 4) box table whose rows are sorted by decreasing
// score; valid (G, k) bool marks the candidates (others neither survive nor suppress).
// Returns keep (G, k) bool.
at::Tensor segmented_nms_cpu(const at::Tensor& boxes, const at::Tensor& valid,
                             double iou_threshold);

at::Tensor roi_align_forward_cpu(const at::Tensor& input, const at::Tensor& rois,
                                 double spatial_scale, int64_t pooled_h, int64_t pooled_w,
                                 int64_t sampling_ratio, bool aligned);

at::Tensor roi_align_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                  double spatial_scale, int64_t pooled_h, int64_t pooled_w,
                                  int64_t batch, int64_t channels, int64_t height,
                                  int64_t width, int64_t sampling_ratio, bool aligned);

#ifdef DENSEBOX_WITH_CUDA
at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                    const std::optional<at::Tensor>& groups, double iou_threshold);

at::Tensor segmented_nms_cuda(const at::Tensor& boxes, const at::Tensor& valid,
                              double iou_threshold);

at::Tensor roi_align_forward_cuda(const at::Tensor& input, const at::Tensor& rois,
                                  double spatial_scale, int64_t pooled_h, int64_t pooled_w,
                                  int64_t sampling_ratio, bool aligned);

at::Tensor roi_align_backward_cuda(const at::Tensor& grad, const at::Tensor& rois,
                                   double spatial_scale, int64_t pooled_h, int64_t pooled_w,
                                   int64_t batch, int64_t channels, int64_t height,
                                   int64_t width, int64_t sampling_ratio, bool aligned);
#endif

}  // namespace densebox::ops
