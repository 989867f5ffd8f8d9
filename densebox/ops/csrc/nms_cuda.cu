// Greedy non-maximum suppression on the GPU, with the suppression kept on the device.
//
// 1. Boxes are sorted by decreasing score (stable) and, with groups, grouped by group; each
//    group is a segment of consecutive sorted boxes (one segment without groups).
// 2. mask_kernel: per segment, for every pair of 64-box blocks (row block <= column block)
//    one thread per row box writes a 64-bit word: bit k set when column box k comes later
//    and overlaps the row box by more than the threshold. A segment of n boxes (nb blocks)
//    owns nb * 64 rows of nb words, so memory grows with the sum of squared group sizes,
//    not with the square of the whole input: batched NMS over thousands of small
//    image x class groups stays small.
// 3. reduce_kernel: one thread block per segment walks that segment's 64-box blocks in
//    order. One thread settles which boxes of the current block survive (a short scan over
//    the block's diagonal words, bits only), then all threads OR the rows of the boxes it
//    kept into the "removed" bits of the segment's later blocks. Kept boxes are flagged at
//    their rank in the global score order.
// The host learns sizes from one small copy (segment count and mask size, with groups) and
// from torch.nonzero over the keep flags; torchvision instead copies the whole
// N x N/64 mask to the host and reduces it there.
//
// Light headers only: ATen/cuda/CUDAContext.h would pull in cuBLAS / cuSPARSE headers,
// which a minimal CUDA toolkit does not ship.
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "ops.h"

namespace densebox::ops {
namespace {

constexpr int kBlockBoxes = 64;  // boxes per mask word
// "removed" bits kept in shared memory up to 6000 words (384k boxes in one group): with the
// kernel's 1 KiB of static shared memory this stays under the default 48 KiB per block
constexpr int64_t kMaxSharedWords = 6000;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Tests set DENSEBOX_NMS_GLOBAL_STATE=1 to exercise the path used past 384k boxes.
bool force_global_state() {
  const char* v = std::getenv("DENSEBOX_NMS_GLOBAL_STATE");
  return v != nullptr && v[0] == '1';
}

template <typename T>
__device__ __forceinline__ T dmax(T a, T b) { return a < b ? b : a; }
template <typename T>
__device__ __forceinline__ T dmin(T a, T b) { return b < a ? b : a; }

// IoU(a, b) > threshold, evaluated as torchvision's CUDA kernel does: intersection sides
// in the box type, areas and the ratio in its accumulate type, threshold as float.
template <typename T>
__device__ __forceinline__ bool overlaps(const T* a, const T* b, float threshold) {
  using acc_t = at::acc_type<T, /*is_cuda=*/true>;
  const T left = dmax(a[0], b[0]), right = dmin(a[2], b[2]);
  const T top = dmax(a[1], b[1]), bottom = dmin(a[3], b[3]);
  const T width = dmax(static_cast<T>(right - left), static_cast<T>(0));
  const T height = dmax(static_cast<T>(bottom - top), static_cast<T>(0));
  const acc_t inter = static_cast<acc_t>(width) * static_cast<acc_t>(height);
  const acc_t area_a = (static_cast<acc_t>(a[2]) - static_cast<acc_t>(a[0])) *
                       static_cast<acc_t>(static_cast<T>(a[3] - a[1]));
  const acc_t area_b = (static_cast<acc_t>(b[2]) - static_cast<acc_t>(b[0])) *
                       static_cast<acc_t>(static_cast<T>(b[3] - b[1]));
  return (inter / (area_a + area_b - inter)) > threshold;
}

// Products, sums and ratios rounded one at a time (no fused multiply-add contraction), in
// the order the CPU kernel evaluates them.
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double div_rn(double a, double b) { return __ddiv_rn(a, b); }

// IoU(a, b) > threshold for segmented_nms, evaluated as the CPU kernel evaluates it: the
// coordinates in the accumulate type A (float for half / bfloat16 / float boxes, double for
// double boxes), every step rounded in A. `threshold` is the caller's double threshold
// rounded down to A (see threshold_below), so `iou > threshold` in A is exactly the CPU
// kernel's `double(iou) > threshold`: a pair at IoU 0.45 in double is kept at 0.45.
template <typename T, typename A>
__device__ __forceinline__ bool overlaps_like_cpu(const T* a, const T* b, A threshold) {
  const A ax1 = static_cast<A>(a[0]), ay1 = static_cast<A>(a[1]);
  const A ax2 = static_cast<A>(a[2]), ay2 = static_cast<A>(a[3]);
  const A bx1 = static_cast<A>(b[0]), by1 = static_cast<A>(b[1]);
  const A bx2 = static_cast<A>(b[2]), by2 = static_cast<A>(b[3]);
  const A width = dmax(static_cast<A>(0), sub_rn(dmin(ax2, bx2), dmax(ax1, bx1)));
  const A height = dmax(static_cast<A>(0), sub_rn(dmin(ay2, by2), dmax(ay1, by1)));
  const A inter = mul_rn(width, height);
  const A area_a = mul_rn(sub_rn(ax2, ax1), sub_rn(ay2, ay1));
  const A area_b = mul_rn(sub_rn(bx2, bx1), sub_rn(by2, by1));
  return div_rn(inter, sub_rn(add_rn(area_a, area_b), inter)) > threshold;
}

// Segments of the sorted boxes (device arrays, one entry per segment).
struct Segments {
  int64_t count;
  const int64_t* start;         // first sorted position
  const int64_t* length;        // number of boxes
  const int64_t* square_start;  // sum of nb^2 over earlier segments (tiles, mask rows / 64)
  const int64_t* block_start;   // sum of nb over earlier segments
};

__device__ __forceinline__ int64_t blocks_of(int64_t n) {
  return (n + kBlockBoxes - 1) / kBlockBoxes;
}

// Segment holding tile t: the last segment whose square_start <= t.
__device__ __forceinline__ int64_t segment_of_tile(const Segments& seg, int64_t t) {
  int64_t lo = 0, hi = seg.count - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (seg.square_start[mid] <= t) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// One block per (segment, row block, column block) tile; the row-major mask of a segment
// with nb blocks starts at word 64 * square_start and has nb words per row.
template <typename T>
__global__ void mask_kernel(Segments seg, float threshold, const T* __restrict__ boxes,
                            unsigned long long* __restrict__ mask) {
  const int64_t tile = blockIdx.x;
  const int64_t s = segment_of_tile(seg, tile);
  const int64_t n = seg.length[s];
  const int64_t nb = blocks_of(n);
  const int64_t local = tile - seg.square_start[s];
  const int64_t row_block = local / nb;
  const int64_t col_block = local % nb;
  if (col_block < row_block) return;  // lower triangle: never read
  const int rows = static_cast<int>(min(n - row_block * kBlockBoxes, int64_t{kBlockBoxes}));
  const int cols = static_cast<int>(min(n - col_block * kBlockBoxes, int64_t{kBlockBoxes}));
  const T* seg_boxes = boxes + seg.start[s] * 4;

  __shared__ T col_boxes[kBlockBoxes * 4];
  const int t = threadIdx.x;
  if (t < cols) {
    for (int k = 0; k < 4; ++k) {
      col_boxes[t * 4 + k] = seg_boxes[(col_block * kBlockBoxes + t) * 4 + k];
    }
  }
  __syncthreads();
  if (t >= rows) return;

  const int64_t row = row_block * kBlockBoxes + t;
  T box[4];
  for (int k = 0; k < 4; ++k) box[k] = seg_boxes[row * 4 + k];
  unsigned long long bits = 0;
  for (int k = (row_block == col_block) ? t + 1 : 0; k < cols; ++k) {
    if (overlaps(box, col_boxes + k * 4, threshold)) bits |= 1ULL << k;
  }
  mask[seg.square_start[s] * kBlockBoxes + row * nb + col_block] = bits;
}

__global__ void reduce_kernel(Segments seg, const unsigned long long* __restrict__ mask,
                              unsigned long long* removed_global,
                              const int64_t* __restrict__ rank_of_position,
                              uint8_t* __restrict__ keep_by_rank) {
  extern __shared__ unsigned long long removed_shared[];
  __shared__ unsigned long long diag[2][kBlockBoxes];
  __shared__ unsigned long long kept_bits;
  const int64_t s = blockIdx.x;
  const int64_t n = seg.length[s];
  const int64_t nb = blocks_of(n);
  const int64_t first = seg.start[s];
  const unsigned long long* rows_of = mask + seg.square_start[s] * kBlockBoxes;  // nb per row
  unsigned long long* removed =
      removed_global != nullptr ? removed_global + seg.block_start[s] : removed_shared;
  const int t = threadIdx.x;

  for (int64_t j = t; j < nb; j += blockDim.x) removed[j] = 0;
  if (t < kBlockBoxes && t < n) diag[0][t] = rows_of[static_cast<int64_t>(t) * nb];
  __syncthreads();

  for (int64_t b = 0; b < nb; ++b) {
    const int64_t row0 = b * kBlockBoxes;
    if (t == 0) {
      const int rows = static_cast<int>(min(n - row0, int64_t{kBlockBoxes}));
      const unsigned long long valid = rows == 64 ? ~0ULL : ((1ULL << rows) - 1);
      const unsigned long long* d = diag[b & 1];
      unsigned long long gone = removed[b];
      unsigned long long kept = 0;
      unsigned long long open = ~gone & valid;
      while (open != 0) {
        const int k = __ffsll(static_cast<long long>(open)) - 1;
        kept |= 1ULL << k;
        const int64_t position = first + row0 + k;
        keep_by_rank[rank_of_position != nullptr ? rank_of_position[position] : position] = 1;
        gone |= d[k];
        open = ~gone & valid & ~((2ULL << k) - 1);  // only bits after k: k == 63 gives 0
      }
      kept_bits = kept;
    }
    __syncthreads();
    // rows of the kept boxes -> removed bits of later blocks; meanwhile prefetch the next
    // block's diagonal words
    const unsigned long long kept = kept_bits;
    if (kept != 0) {
      for (int64_t j = b + 1 + t; j < nb; j += blockDim.x) {
        unsigned long long acc = 0;
        unsigned long long k_bits = kept;
        while (k_bits != 0) {
          const int k = __ffsll(static_cast<long long>(k_bits)) - 1;
          k_bits &= k_bits - 1;
          acc |= rows_of[(row0 + k) * nb + j];
        }
        removed[j] |= acc;
      }
    }
    if (b + 1 < nb && t < kBlockBoxes) {
      const int64_t row = (b + 1) * kBlockBoxes + t;
      if (row < n) diag[(b + 1) & 1][t] = rows_of[row * nb + b + 1];
    }
    __syncthreads();
  }
}

// Greedy NMS inside each row of a (G, k, 4) table sorted by score: one thread block per row.
// The block walks the row in order; when candidate i is still kept, every thread clears the
// later candidates of its stride that i overlaps. keep[i] is final once the walk reaches i,
// and a barrier follows every step that wrote, so all threads read the same keep[i].
// Unlike nms (which matches torchvision's CUDA kernel, threshold as float), this one matches
// densebox's CPU segmented_nms exactly: IoU in the accumulate type A against the double
// threshold (threshold_below).
template <typename T, typename A>
__global__ void segmented_nms_kernel(int64_t k, A threshold, const T* __restrict__ boxes,
                                     const bool* __restrict__ valid, bool* __restrict__ keep) {
  const int64_t g = blockIdx.x;
  const T* b = boxes + g * k * 4;
  bool* kept = keep + g * k;
  for (int64_t j = threadIdx.x; j < k; j += blockDim.x) kept[j] = valid[g * k + j];
  __syncthreads();
  for (int64_t i = 0; i + 1 < k; ++i) {
    if (!kept[i]) continue;  // same value in every thread: no write since the last barrier
    for (int64_t j = i + 1 + threadIdx.x; j < k; j += blockDim.x) {
      if (kept[j] && overlaps_like_cpu(b + i * 4, b + j * 4, threshold)) kept[j] = false;
    }
    __syncthreads();
  }
}

// The largest A that is <= threshold: for any A value x, x > threshold_below<A>(t) exactly
// when double(x) > t (a plain cast could round 0.45 down, to 0.449999988 for float, and
// then an IoU of exactly 0.45 would count as above 0.45).
template <typename A>
A threshold_below(double threshold) {
  A t = static_cast<A>(threshold);
  if (static_cast<double>(t) > threshold) {
    t = std::nextafter(t, -std::numeric_limits<A>::infinity());
  }
  return t;
}

// Exclusive prefix sum (int64, on the device).
at::Tensor exclusive_cumsum(const at::Tensor& v) { return v.cumsum(0).sub(v); }

}  // namespace

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                    const std::optional<at::Tensor>& groups, double iou_threshold) {
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0);
  const auto long_opts = boxes.options().dtype(at::kLong);
  if (n == 0) return at::empty({0}, long_opts);
  const auto o = nms_order(scores, groups);
  const auto sorted = boxes.index_select(0, o.perm).contiguous();

  // segments: lengths, starts, and the sizes the host needs (one small copy with groups)
  at::Tensor start, length, square_start, block_start;
  int64_t count = 1, squares = 0, max_blocks = 0, blocks = 0;
  if (!o.groups.defined()) {
    max_blocks = blocks = ceil_div(n, kBlockBoxes);
    squares = blocks * blocks;
    start = at::zeros({1}, long_opts);
    length = at::full({1}, n, long_opts);
    square_start = start;
    block_start = start;
  } else {
    const auto& g = o.groups;
    // (the light headers have no tensor operators: method forms below)
    const auto first = at::cat({at::ones({1}, g.options().dtype(at::kBool)),
                                g.slice(0, 1).ne(g.slice(0, 0, n - 1))});
    const auto id = first.cumsum(0).sub(1);                            // segment of each box
    const auto len = at::zeros({n}, long_opts).index_add_(0, id, at::ones({n}, long_opts));
    const auto nb = len.add(kBlockBoxes - 1).div(kBlockBoxes, "floor");  // 0 past the last
    const auto sq = nb.mul(nb);
    const auto sizes = at::stack({id.select(0, n - 1).add(1), sq.sum(), nb.max(), nb.sum()})
                           .cpu();
    const int64_t* host = sizes.data_ptr<int64_t>();
    count = host[0];
    squares = host[1];
    max_blocks = host[2];
    blocks = host[3];
    length = len.slice(0, 0, count).contiguous();
    start = exclusive_cumsum(length);
    square_start = exclusive_cumsum(sq.slice(0, 0, count));
    block_start = exclusive_cumsum(nb.slice(0, 0, count));
  }
  TORCH_CHECK(squares <= (int64_t{1} << 31) - 1, "nms: ", n, " boxes in one group is too many");
  const Segments seg{count, start.data_ptr<int64_t>(), length.data_ptr<int64_t>(),
                     square_start.data_ptr<int64_t>(), block_start.data_ptr<int64_t>()};

  auto mask = at::empty({squares * kBlockBoxes}, long_opts);
  auto* mask_ptr = reinterpret_cast<unsigned long long*>(mask.data_ptr<int64_t>());
  auto keep = at::zeros({n}, boxes.options().dtype(at::kByte));
  const bool shared_state = max_blocks <= kMaxSharedWords && !force_global_state();
  const auto removed = shared_state ? at::Tensor() : at::empty({blocks}, long_opts);
  const auto stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, sorted.scalar_type(),
                                  "densebox_nms_mask", [&] {
    mask_kernel<scalar_t><<<static_cast<unsigned>(squares), kBlockBoxes, 0, stream>>>(
        seg, static_cast<float>(iou_threshold), sorted.data_ptr<scalar_t>(), mask_ptr);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int threads = static_cast<int>(
      std::clamp<int64_t>(ceil_div(max_blocks, 32) * 32, kBlockBoxes, 1024));
  reduce_kernel<<<static_cast<unsigned>(count), threads,
                  shared_state ? max_blocks * sizeof(unsigned long long) : 0, stream>>>(
      seg, mask_ptr,
      shared_state ? nullptr : reinterpret_cast<unsigned long long*>(removed.data_ptr<int64_t>()),
      o.groups.defined() ? o.perm_rank.data_ptr<int64_t>() : nullptr, keep.data_ptr<uint8_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  // flags are indexed by rank in the score order, so nonzero() lists the kept boxes by
  // decreasing score; it is the second (and last) device -> host transfer
  return o.order.index_select(0, at::nonzero(keep).flatten());
}

at::Tensor segmented_nms_cuda(const at::Tensor& boxes, const at::Tensor& valid,
                              double iou_threshold) {
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t groups = boxes.size(0), k = boxes.size(1);
  auto keep = at::empty({groups, k}, boxes.options().dtype(at::kBool));
  if (keep.numel() == 0) return keep;
  TORCH_CHECK(groups <= (int64_t{1} << 31) - 1, "segmented_nms: too many rows (", groups, ")");
  const auto b = boxes.contiguous();
  const auto v = valid.contiguous();
  const int threads = static_cast<int>(std::clamp<int64_t>(ceil_div(k, 32) * 32, 32, 256));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.scalar_type(),
                                  "densebox_segmented_nms", [&] {
    using acc_t = at::acc_type<scalar_t, /*is_cuda=*/true>;
    segmented_nms_kernel<scalar_t, acc_t><<<static_cast<unsigned>(groups), threads, 0, stream>>>(
        k, threshold_below<acc_t>(iou_threshold), b.data_ptr<scalar_t>(), v.data_ptr<bool>(),
        keep.data_ptr<bool>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return keep;
}

}  // namespace densebox::ops
