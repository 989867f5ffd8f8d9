// Greedy non-maximum suppression on the GPU, with the suppression kept on the device.
//
// 1. Boxes are sorted by decreasing score (stable) and, with groups, grouped by group.
// 2. mask_kernel: for every pair of 64-box blocks (row block <= column block) one thread
//    per row box writes a 64-bit word: bit k set when column box k comes later, is in the
//    same group and overlaps the row box by more than the threshold. Column blocks that
//    start past the row block's last group are skipped (never read).
// 3. reduce_kernel: one thread block walks the 64-box blocks in order. One thread settles
//    which boxes of the current block survive (a short sequential scan over the block's
//    diagonal words, bits only), then all threads OR the rows of the boxes it kept into
//    the "removed" bits of the later blocks of the same groups. Kept sorted positions are
//    appended to a device buffer together with a device-side count.
// Only the count (8 bytes) travels to the host, to size the returned tensor; torchvision
// copies the whole N x N/64 mask to the host and reduces it there.
// Light headers only: ATen/cuda/CUDAContext.h would pull in cuBLAS / cuSPARSE headers,
// which a minimal CUDA toolkit does not ship.
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdlib>

#include "ops.h"

namespace densebox::ops {
namespace {

constexpr int kBlockBoxes = 64;      // boxes per mask word
constexpr int kReduceThreads = 1024;  // threads of the single-block reduction
// "removed" bits kept in shared memory up to 6000 words (384k boxes): with the kernel's
// 1 KiB of static shared memory this stays under the default 48 KiB per block
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

template <typename T>
__global__ void mask_kernel(int64_t n, int64_t col_blocks, float threshold,
                            const T* __restrict__ boxes, const int64_t* __restrict__ groups,
                            unsigned long long* __restrict__ mask) {
  const int64_t row_block = blockIdx.y;
  const int64_t col_block = blockIdx.x;
  if (col_block < row_block) return;
  const int64_t row0 = row_block * kBlockBoxes;
  const int64_t col0 = col_block * kBlockBoxes;
  const int rows = static_cast<int>(min(n - row0, static_cast<int64_t>(kBlockBoxes)));
  const int cols = static_cast<int>(min(n - col0, static_cast<int64_t>(kBlockBoxes)));
  if (groups != nullptr && groups[col0] > groups[row0 + rows - 1]) return;

  __shared__ T col_boxes[kBlockBoxes * 4];
  __shared__ int64_t col_groups[kBlockBoxes];
  const int t = threadIdx.x;
  if (t < cols) {
    for (int k = 0; k < 4; ++k) col_boxes[t * 4 + k] = boxes[(col0 + t) * 4 + k];
    col_groups[t] = groups != nullptr ? groups[col0 + t] : 0;
  }
  __syncthreads();
  if (t >= rows) return;

  const int64_t i = row0 + t;
  T box[4];
  for (int k = 0; k < 4; ++k) box[k] = boxes[i * 4 + k];
  const int64_t group = groups != nullptr ? groups[i] : 0;
  unsigned long long bits = 0;
  for (int k = (row_block == col_block) ? t + 1 : 0; k < cols; ++k) {
    if (col_groups[k] == group && overlaps(box, col_boxes + k * 4, threshold)) {
      bits |= 1ULL << k;
    }
  }
  mask[i * col_blocks + col_block] = bits;
}

// Last column block that can hold a box of the same group as the last box of each block.
__global__ void group_end_kernel(int64_t n, int64_t col_blocks, const int64_t* __restrict__ groups,
                                 int64_t* __restrict__ end_block) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= col_blocks) return;
  if (groups == nullptr) {
    end_block[b] = col_blocks - 1;
    return;
  }
  const int64_t last = min(n, (b + 1) * kBlockBoxes) - 1;
  const int64_t g = groups[last];
  int64_t lo = last + 1, hi = n;  // first position with a larger group
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (groups[mid] <= g) lo = mid + 1; else hi = mid;
  }
  end_block[b] = (lo - 1) / kBlockBoxes;
}

__global__ void __launch_bounds__(kReduceThreads)
reduce_kernel(int64_t n, int64_t col_blocks, const unsigned long long* __restrict__ mask,
              const int64_t* __restrict__ end_block, unsigned long long* removed_global,
              int64_t* __restrict__ keep_pos, int64_t* __restrict__ num_keep) {
  extern __shared__ unsigned long long removed_shared[];
  unsigned long long* removed = removed_global != nullptr ? removed_global : removed_shared;
  __shared__ unsigned long long diag[2][kBlockBoxes];
  __shared__ unsigned long long kept_bits;
  __shared__ int64_t count;
  const int t = threadIdx.x;

  for (int64_t j = t; j < col_blocks; j += blockDim.x) removed[j] = 0;
  if (t < kBlockBoxes && t < n) diag[0][t] = mask[static_cast<int64_t>(t) * col_blocks];
  if (t == 0) count = 0;
  __syncthreads();

  for (int64_t b = 0; b < col_blocks; ++b) {
    const int64_t row0 = b * kBlockBoxes;
    const int rows = static_cast<int>(min(n - row0, static_cast<int64_t>(kBlockBoxes)));
    if (t == 0) {
      const unsigned long long valid = rows == 64 ? ~0ULL : ((1ULL << rows) - 1);
      const unsigned long long* d = diag[b & 1];
      unsigned long long gone = removed[b];
      unsigned long long kept = 0;
      int64_t c = count;
      unsigned long long open = ~gone & valid;
      while (open != 0) {
        const int k = __ffsll(static_cast<long long>(open)) - 1;
        kept |= 1ULL << k;
        keep_pos[c++] = row0 + k;
        gone |= d[k];
        open = ~gone & valid & ~((2ULL << k) - 1);  // only bits after k: k == 63 gives 0
      }
      kept_bits = kept;
      count = c;
    }
    __syncthreads();
    // rows of the kept boxes -> removed bits of later blocks; meanwhile prefetch the next
    // block's diagonal words
    const unsigned long long kept = kept_bits;
    if (kept != 0) {
      const int64_t last = end_block[b];
      for (int64_t j = b + 1 + t; j <= last; j += blockDim.x) {
        unsigned long long acc = 0;
        unsigned long long k_bits = kept;
        while (k_bits != 0) {
          const int k = __ffsll(static_cast<long long>(k_bits)) - 1;
          k_bits &= k_bits - 1;
          acc |= mask[(row0 + k) * col_blocks + j];
        }
        removed[j] |= acc;
      }
    }
    if (b + 1 < col_blocks && t < kBlockBoxes) {
      const int64_t i = (b + 1) * kBlockBoxes + t;
      if (i < n) diag[(b + 1) & 1][t] = mask[i * col_blocks + b + 1];
    }
    __syncthreads();
  }
  if (t == 0) *num_keep = count;
}

}  // namespace

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                    const std::optional<at::Tensor>& groups, double iou_threshold) {
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  const auto o = nms_order(scores, groups);
  const auto sorted = boxes.index_select(0, o.perm).contiguous();
  const int64_t col_blocks = ceil_div(n, kBlockBoxes);
  TORCH_CHECK(col_blocks <= 65535, "nms: at most ", 65535 * 64, " boxes per call, got ", n);
  const auto long_opts = boxes.options().dtype(at::kLong);
  auto mask = at::empty({n * col_blocks}, long_opts);
  auto end_block = at::empty({col_blocks}, long_opts);
  auto keep_pos = at::empty({n}, long_opts);
  auto num_keep = at::empty({1}, long_opts);
  const bool smem = col_blocks <= kMaxSharedWords && !force_global_state();
  at::Tensor removed = smem ? at::Tensor() : at::empty({col_blocks}, long_opts);
  const int64_t* group_ptr = o.groups.defined() ? o.groups.data_ptr<int64_t>() : nullptr;
  auto* mask_ptr = reinterpret_cast<unsigned long long*>(mask.data_ptr<int64_t>());
  const auto stream = c10::cuda::getCurrentCUDAStream();

  const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(col_blocks));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, sorted.scalar_type(),
                                  "densebox_nms_mask", [&] {
    mask_kernel<scalar_t><<<grid, kBlockBoxes, 0, stream>>>(
        n, col_blocks, static_cast<float>(iou_threshold), sorted.data_ptr<scalar_t>(),
        group_ptr, mask_ptr);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  group_end_kernel<<<static_cast<unsigned>(ceil_div(col_blocks, 256)), 256, 0, stream>>>(
      n, col_blocks, group_ptr, end_block.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  reduce_kernel<<<1, kReduceThreads, smem ? col_blocks * sizeof(unsigned long long) : 0,
                  stream>>>(
      n, col_blocks, mask_ptr, end_block.data_ptr<int64_t>(),
      smem ? nullptr : reinterpret_cast<unsigned long long*>(removed.data_ptr<int64_t>()),
      keep_pos.data_ptr<int64_t>(), num_keep.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  const int64_t k = num_keep.item<int64_t>();  // the one device -> host transfer
  const auto kept = keep_pos.narrow(0, 0, k);
  if (!o.groups.defined()) return o.order.index_select(0, kept);
  // kept positions are in group order: back to decreasing score order via their ranks
  const auto ranks = std::get<0>(o.perm_rank.index_select(0, kept).sort());
  return o.order.index_select(0, ranks);
}

}  // namespace densebox::ops
