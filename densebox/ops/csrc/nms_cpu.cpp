// Greedy non-maximum suppression on the CPU.
//
// Boxes are sorted once by decreasing score (stable, so equal scores keep index order,
// as torchvision does) and, when groups are given, grouped by group with that score order
// kept inside each group. Each group is then reduced independently: the first surviving
// box is kept and the survivors after it are compacted in place, dropping those whose IoU
// with the kept box exceeds the threshold. This evaluates exactly the (kept, candidate)
// pairs torchvision's loop evaluates, with the same IoU arithmetic, but touches only
// boxes still alive and reads them in sorted (contiguous) order.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <vector>

#include "ops.h"

namespace densebox::ops {

NmsOrder nms_order(const at::Tensor& scores, const std::optional<at::Tensor>& groups) {
  NmsOrder o;
  o.order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  if (!groups.has_value()) {
    o.perm = o.order;
    return o;
  }
  const auto g = groups->to(at::kLong).index_select(0, o.order);
  auto [g_sorted, rank] = g.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
  o.groups = g_sorted.contiguous();
  o.perm_rank = rank.contiguous();
  o.perm = o.order.index_select(0, o.perm_rank);
  return o;
}

namespace {

// IoU(i, j) > threshold with torchvision's CPU arithmetic (all in the box type T).
template <typename T>
inline bool iou_above(T ix1, T iy1, T ix2, T iy2, T iarea, T jx1, T jy1, T jx2, T jy2,
                      T jarea, double iou_threshold) {
  const T iw = std::max(static_cast<T>(0), std::min(ix2, jx2) - std::max(ix1, jx1));
  const T ih = std::max(static_cast<T>(0), std::min(iy2, jy2) - std::max(iy1, jy1));
  const T inter = iw * ih;
  return inter / (iarea + jarea - inter) > iou_threshold;
}

// Sorted boxes as separate coordinate arrays (structure of arrays).
template <typename T>
struct SortedBoxes {
  std::vector<T> x1, y1, x2, y2, area;
};

// Greedy NMS over the m positions listed in alive (in score order): keep the first
// survivor, compact the ones after it that it does not suppress, repeat. alive is reused
// as the workspace.
template <typename T>
void reduce_alive(const SortedBoxes<T>& b, int64_t* alive, int64_t m, double iou_threshold,
                  uint8_t* keep) {
  const T* x1 = b.x1.data();
  const T* y1 = b.y1.data();
  const T* x2 = b.x2.data();
  const T* y2 = b.y2.data();
  const T* area = b.area.data();
  for (int64_t a = 0; a < m; ++a) {
    const int64_t i = alive[a];
    keep[i] = 1;
    const T ix1 = x1[i], iy1 = y1[i], ix2 = x2[i], iy2 = y2[i], iarea = area[i];
    int64_t w = a + 1;
    for (int64_t c = a + 1; c < m; ++c) {
      const int64_t j = alive[c];
      alive[w] = j;  // branch-free compaction: advance only for survivors
      w += !iou_above(ix1, iy1, ix2, iy2, iarea, x1[j], y1[j], x2[j], y2[j], area[j],
                      iou_threshold);
    }
    m = w;
  }
}

// Greedy NMS over sorted positions [begin, end). alive: workspace for the same range.
template <typename T>
void reduce_range(const SortedBoxes<T>& b, int64_t begin, int64_t end, double iou_threshold,
                  int64_t* alive, uint8_t* keep) {
  int64_t m = 0;
  for (int64_t p = begin; p < end; ++p) alive[m++] = p;
  reduce_alive(b, alive, m, iou_threshold, keep);
}

// (n, 4) boxes, read in the order of perm (all rows when perm is null), as arrays.
template <typename T>
SortedBoxes<T> sorted_boxes(const at::Tensor& boxes, const int64_t* perm) {
  const int64_t n = boxes.size(0);
  const auto acc = boxes.accessor<T, 2>();
  SortedBoxes<T> b;
  for (auto* v : {&b.x1, &b.y1, &b.x2, &b.y2, &b.area}) v->resize(n);
  for (int64_t p = 0; p < n; ++p) {
    const auto box = acc[perm != nullptr ? perm[p] : p];
    b.x1[p] = box[0];
    b.y1[p] = box[1];
    b.x2[p] = box[2];
    b.y2[p] = box[3];
    b.area[p] = (b.x2[p] - b.x1[p]) * (b.y2[p] - b.y1[p]);
  }
  return b;
}

template <typename T>
at::Tensor nms_impl(const at::Tensor& boxes, const NmsOrder& o, double iou_threshold) {
  const int64_t n = boxes.size(0);
  const SortedBoxes<T> b = sorted_boxes<T>(boxes, o.perm.data_ptr<int64_t>());

  std::vector<uint8_t> keep(n, 0);
  std::vector<int64_t> alive(n);
  if (!o.groups.defined()) {
    reduce_range(b, 0, n, iou_threshold, alive.data(), keep.data());
  } else {
    // segment boundaries of the (sorted) groups
    const int64_t* g = o.groups.data_ptr<int64_t>();
    std::vector<int64_t> starts{0};
    for (int64_t p = 1; p < n; ++p) {
      if (g[p] != g[p - 1]) starts.push_back(p);
    }
    starts.push_back(n);
    const int64_t segments = static_cast<int64_t>(starts.size()) - 1;
    const int64_t grain = n >= 4096 ? 1 : segments;  // small inputs: stay on this thread
    at::parallel_for(0, segments, grain, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) {
        reduce_range(b, starts[s], starts[s + 1], iou_threshold, alive.data() + starts[s],
                     keep.data());
      }
    });
  }

  // kept boxes in decreasing score order
  std::vector<uint8_t> kept_rank;
  const uint8_t* flags = keep.data();
  if (o.groups.defined()) {
    kept_rank.assign(n, 0);
    const int64_t* rank = o.perm_rank.data_ptr<int64_t>();
    for (int64_t p = 0; p < n; ++p) kept_rank[rank[p]] = keep[p];
    flags = kept_rank.data();
  }
  const int64_t* order = o.order.data_ptr<int64_t>();
  int64_t count = 0;
  for (int64_t r = 0; r < n; ++r) count += flags[r];
  auto out = at::empty({count}, boxes.options().dtype(at::kLong));
  int64_t* dst = out.data_ptr<int64_t>();
  for (int64_t r = 0; r < n; ++r) {
    if (flags[r]) *dst++ = order[r];
  }
  return out;
}

// Greedy NMS inside each row of a (G, k, 4) table whose rows are already in score order:
// position g * k + i is row g's i-th box; each row's valid positions are reduced as nms
// reduces one group.
template <typename T>
void segmented_nms_impl(const at::Tensor& boxes, const at::Tensor& valid, double iou_threshold,
                        uint8_t* keep) {
  const int64_t rows = boxes.size(0), k = boxes.size(1);
  const SortedBoxes<T> b = sorted_boxes<T>(boxes.view({rows * k, 4}), nullptr);
  const bool* is_valid = valid.data_ptr<bool>();
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(k, 1));
  at::parallel_for(0, rows, grain, [&](int64_t g0, int64_t g1) {
    std::vector<int64_t> alive(k);
    for (int64_t g = g0; g < g1; ++g) {
      int64_t m = 0;
      for (int64_t p = g * k; p < (g + 1) * k; ++p) {
        if (is_valid[p]) alive[m++] = p;
      }
      reduce_alive(b, alive.data(), m, iou_threshold, keep);
    }
  });
}

}  // namespace

at::Tensor segmented_nms_cpu(const at::Tensor& boxes, const at::Tensor& valid,
                             double iou_threshold) {
  const bool reduced = boxes.scalar_type() == at::kHalf || boxes.scalar_type() == at::kBFloat16;
  const auto b = (reduced ? boxes.to(at::kFloat) : boxes).contiguous();
  const auto v = valid.contiguous();
  auto keep = at::zeros({boxes.size(0), boxes.size(1)}, boxes.options().dtype(at::kByte));
  if (keep.numel() == 0) return keep.to(at::kBool);
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "densebox_segmented_nms_cpu", [&] {
    segmented_nms_impl<scalar_t>(b, v, iou_threshold, keep.data_ptr<uint8_t>());
  });
  return keep.to(at::kBool);
}

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                   const std::optional<at::Tensor>& groups, double iou_threshold) {
  if (boxes.size(0) == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  const auto o = nms_order(scores, groups);
  // float16 / bfloat16 boxes are compared in float32 (torchvision's CPU nms rejects them)
  const bool reduced = boxes.scalar_type() == at::kHalf || boxes.scalar_type() == at::kBFloat16;
  const auto b = reduced ? boxes.to(at::kFloat) : boxes;
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "densebox_nms_cpu", [&] {
    out = nms_impl<scalar_t>(b, o, iou_threshold);
  });
  return out;
}

}  // namespace densebox::ops
