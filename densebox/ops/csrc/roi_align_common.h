// RoIAlign geometry shared by the CPU and CUDA kernels (host and device).
//
// The arithmetic is written term for term in the order torchvision evaluates it, so that
// float32 / float64 results agree with torchvision.ops.roi_align to the last bits:
// sample point = start + p * bin + (i + 0.5) * bin / grid, bilinear weights from the
// fractional parts, samples outside [-1, size] contribute zero, coordinates in [-1, 0]
// are clamped to 0 and the last row / column is replicated.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define DBX_HD __host__ __device__ __forceinline__
#else
#define DBX_HD inline
#endif

namespace densebox::ops::roi {

// Where one RoI lies on the feature map, in feature-map pixels.
template <typename T>
struct Geometry {
  int batch;       // image index inside the (N, C, H, W) input
  T start_h;       // top edge
  T start_w;       // left edge
  T bin_h;         // height of one output bin
  T bin_w;         // width of one output bin
  int grid_h;      // sample rows per bin (may be <= 0: the bin is empty)
  int grid_w;      // sample columns per bin
};

// roi: 5 values [batch_idx, x1, y1, x2, y2] in input-image coordinates.
template <typename T>
DBX_HD Geometry<T> geometry(const T* roi, T scale, int pooled_h, int pooled_w,
                            int sampling_ratio, bool aligned) {
  Geometry<T> g;
  g.batch = static_cast<int>(roi[0]);
  const T shift = aligned ? static_cast<T>(0.5) : static_cast<T>(0);
  g.start_w = roi[1] * scale - shift;
  g.start_h = roi[2] * scale - shift;
  const T end_w = roi[3] * scale - shift;
  const T end_h = roi[4] * scale - shift;
  T extent_w = end_w - g.start_w;
  T extent_h = end_h - g.start_h;
  if (!aligned) {  // legacy mode: a box is at least one pixel wide and high
    extent_w = extent_w < static_cast<T>(1) ? static_cast<T>(1) : extent_w;
    extent_h = extent_h < static_cast<T>(1) ? static_cast<T>(1) : extent_h;
  }
  g.bin_h = extent_h / static_cast<T>(pooled_h);
  g.bin_w = extent_w / static_cast<T>(pooled_w);
  g.grid_h = sampling_ratio > 0 ? sampling_ratio
                                : static_cast<int>(ceil(extent_h / static_cast<T>(pooled_h)));
  g.grid_w = sampling_ratio > 0 ? sampling_ratio
                                : static_cast<int>(ceil(extent_w / static_cast<T>(pooled_w)));
  return g;
}

// Coordinate of sample i (of `grid`) inside bin p.
template <typename T>
DBX_HD T sample_coord(T start, int p, T bin, int i, int grid) {
  return start + p * bin + static_cast<T>(i + .5f) * bin / static_cast<T>(grid);
}

// Four neighbours of a sample point: flat offsets into one H*W plane and their weights.
template <typename T>
struct Corners {
  int o1, o2, o3, o4;  // (y0,x0) (y0,x1) (y1,x0) (y1,x1)
  T w1, w2, w3, w4;
};

// Returns false (and leaves c untouched) when the point lies outside the map.
template <typename T>
DBX_HD bool bilinear(int height, int width, T y, T x, Corners<T>& c) {
  if (y < static_cast<T>(-1) || y > static_cast<T>(height) || x < static_cast<T>(-1) ||
      x > static_cast<T>(width)) {
    return false;
  }
  if (y <= static_cast<T>(0)) y = static_cast<T>(0);
  if (x <= static_cast<T>(0)) x = static_cast<T>(0);
  int y0 = static_cast<int>(y);
  int x0 = static_cast<int>(x);
  int y1;
  int x1;
  if (y0 >= height - 1) {
    y0 = y1 = height - 1;
    y = static_cast<T>(y0);
  } else {
    y1 = y0 + 1;
  }
  if (x0 >= width - 1) {
    x0 = x1 = width - 1;
    x = static_cast<T>(x0);
  } else {
    x1 = x0 + 1;
  }
  const T ly = y - y0;
  const T lx = x - x0;
  const T hy = static_cast<T>(1) - ly;
  const T hx = static_cast<T>(1) - lx;
  c.w1 = hy * hx;
  c.w2 = hy * lx;
  c.w3 = ly * hx;
  c.w4 = ly * lx;
  c.o1 = y0 * width + x0;
  c.o2 = y0 * width + x1;
  c.o3 = y1 * width + x0;
  c.o4 = y1 * width + x1;
  return true;
}

}  // namespace densebox::ops::roi
