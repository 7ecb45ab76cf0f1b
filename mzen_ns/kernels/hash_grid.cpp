// Multi-resolution hash-grid encoding on the CPU: forward and backward in one pass each.
//
// The same arithmetic as nerfstudio's torch HashEncoding (and mzen's smooth-gradient estimator on
// its interpolation weights), without the intermediate tensors that make the torch path
// memory-bound: per point and level, the 8 corners are hashed as x*1 ^ y*p1 ^ z*p2 (upper corner
// by ceil, as the torch path does), looked up in that level's table and blended x, then y, then z.
//
// Table gradients are written one level per task (levels own disjoint table rows, so no two
// threads add to the same entry); point gradients are written per level and summed by the caller.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>

namespace {

constexpr int64_t kPrimeY = 2654435761LL;
constexpr int64_t kPrimeZ = 805459861LL;
constexpr double kPi = 3.14159265358979323846;

// Estimator modes: 0 plain weights, 1 Heo et al.'s Eq. 13 (gradient 1 + lam d'), 2 smooth (lam d').
float weight_slope(float w, float lam, int64_t mode) {
  if (mode == 0) return 1.0f;
  const float smooth = lam * static_cast<float>(0.5 * kPi * std::sin(kPi * w));
  return mode == 1 ? 1.0f + smooth : smooth;
}

// hashed mod size, non-negative (torch's %); a power-of-two size (nerfstudio's tables) is a mask.
int64_t wrap(int64_t hashed, int64_t size) {
  if ((size & (size - 1)) == 0) return hashed & (size - 1);
  const int64_t r = hashed % size;
  return r < 0 ? r + size : r;
}

struct Cell {
  int64_t index[2][2][2];  // [z][y][x] rows of the level's table
  float w[3];              // interpolation weights along x, y, z
};

Cell locate(const float* point, float scaling, int64_t size, int64_t offset) {
  Cell cell;
  int64_t h[3][2];
  const int64_t primes[3] = {1, kPrimeY, kPrimeZ};
  for (int a = 0; a < 3; ++a) {
    const float scaled = point[a] * scaling;
    const float lo = std::floor(scaled);
    cell.w[a] = scaled - lo;
    h[a][0] = static_cast<int64_t>(static_cast<int32_t>(lo)) * primes[a];
    h[a][1] = static_cast<int64_t>(static_cast<int32_t>(std::ceil(scaled))) * primes[a];
  }
  for (int z = 0; z < 2; ++z)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 2; ++x) cell.index[z][y][x] = wrap(h[0][x] ^ h[1][y] ^ h[2][z], size) + offset;
  return cell;
}

// The d-linear blend of one feature's 8 corner values ([z][y][x]): along x, then y, then z, each
// hi * w + lo * (1 - w) as the torch path computes it. The partial blends are the backward's slopes.
struct Blend {
  float along_y[2][2];  // blended along x, per (z, y)
  float along_z[2];     // blended along x and y, per z
  float value;
};

Blend blend(const float corner[2][2][2], const float w[3]) {
  Blend b;
  for (int z = 0; z < 2; ++z)
    for (int y = 0; y < 2; ++y) b.along_y[z][y] = corner[z][y][1] * w[0] + corner[z][y][0] * (1.0f - w[0]);
  for (int z = 0; z < 2; ++z) b.along_z[z] = b.along_y[z][1] * w[1] + b.along_y[z][0] * (1.0f - w[1]);
  b.value = b.along_z[1] * w[2] + b.along_z[0] * (1.0f - w[2]);
  return b;
}

void gather(const float* table, const Cell& c, int64_t features, int64_t f, float corner[2][2][2]) {
  for (int z = 0; z < 2; ++z)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 2; ++x) corner[z][y][x] = table[c.index[z][y][x] * features + f];
}

void check(const torch::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
  TORCH_CHECK(t.scalar_type() == torch::kFloat32, name, " must be float32");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.dim() == dim, name, " must have ", dim, " dimensions");
}

}  // namespace

torch::Tensor hash_grid_forward(torch::Tensor points, torch::Tensor scalings, torch::Tensor table, int64_t size) {
  check(points, "points", 2);
  check(scalings, "scalings", 1);
  check(table, "table", 2);
  TORCH_CHECK(points.size(1) == 3, "points must be [N, 3]");
  const int64_t n = points.size(0), levels = scalings.size(0), features = table.size(1);
  TORCH_CHECK(table.size(0) == levels * size, "table must have levels * size rows");
  auto out = torch::empty({n, levels * features}, points.options());
  const float* p = points.data_ptr<float>();
  const float* s = scalings.data_ptr<float>();
  const float* t = table.data_ptr<float>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
    for (int64_t l = 0; l < levels; ++l) {
      for (int64_t i = begin; i < end; ++i) {
        const Cell c = locate(p + 3 * i, s[l], size, l * size);
        for (int64_t f = 0; f < features; ++f) {
          float corner[2][2][2];
          gather(t, c, features, f, corner);
          o[i * levels * features + l * features + f] = blend(corner, c.w).value;
        }
      }
    }
  });
  return out;
}

std::vector<torch::Tensor> hash_grid_backward(torch::Tensor grad_out, torch::Tensor points, torch::Tensor scalings,
                                              torch::Tensor table, int64_t size, double lam, int64_t mode,
                                              bool points_grad) {
  check(grad_out, "grad_out", 2);
  check(points, "points", 2);
  check(scalings, "scalings", 1);
  check(table, "table", 2);
  const int64_t n = points.size(0), levels = scalings.size(0), features = table.size(1);
  TORCH_CHECK(grad_out.size(0) == n && grad_out.size(1) == levels * features, "grad_out must be [N, levels * F]");
  auto grad_table = torch::zeros_like(table);
  auto grad_points = points_grad ? torch::zeros({levels, n, 3}, points.options()) : torch::Tensor();
  const float* g = grad_out.data_ptr<float>();
  const float* p = points.data_ptr<float>();
  const float* s = scalings.data_ptr<float>();
  const float* t = table.data_ptr<float>();
  float* gt = grad_table.data_ptr<float>();
  float* gp = points_grad ? grad_points.data_ptr<float>() : nullptr;
  const float lambda = static_cast<float>(lam);
  at::parallel_for(0, levels, 1, [&](int64_t first, int64_t last) {
    for (int64_t l = first; l < last; ++l) {
      for (int64_t i = 0; i < n; ++i) {
        const Cell c = locate(p + 3 * i, s[l], size, l * size);
        const float wx[2] = {1.0f - c.w[0], c.w[0]}, wy[2] = {1.0f - c.w[1], c.w[1]}, wz[2] = {1.0f - c.w[2], c.w[2]};
        float slope[3] = {0.0f, 0.0f, 0.0f};  // dLoss/dw per axis
        for (int64_t f = 0; f < features; ++f) {
          const float go = g[i * levels * features + l * features + f];
          for (int z = 0; z < 2; ++z)
            for (int y = 0; y < 2; ++y)
              for (int x = 0; x < 2; ++x) gt[c.index[z][y][x] * features + f] += go * wz[z] * wy[y] * wx[x];
          if (!points_grad) continue;
          float corner[2][2][2];
          gather(t, c, features, f, corner);
          const Blend b = blend(corner, c.w);
          float dx = 0.0f, dy = 0.0f;
          for (int z = 0; z < 2; ++z) {
            for (int y = 0; y < 2; ++y) dx += wz[z] * wy[y] * (corner[z][y][1] - corner[z][y][0]);
            dy += wz[z] * (b.along_y[z][1] - b.along_y[z][0]);
          }
          slope[0] += go * dx;
          slope[1] += go * dy;
          slope[2] += go * (b.along_z[1] - b.along_z[0]);
        }
        if (points_grad)
          for (int a = 0; a < 3; ++a) gp[(l * n + i) * 3 + a] = slope[a] * weight_slope(c.w[a], lambda, mode) * s[l];
      }
    }
  });
  return {points_grad ? grad_points.sum(0) : torch::Tensor(), grad_table};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &hash_grid_forward, "hash-grid encoding, forward");
  m.def("backward", &hash_grid_backward, "hash-grid encoding, backward (point and table gradients)");
}
