// CurricularFace's hard-negative rule as one pass over the logits, for the fused PyTorch head
// (pytorch_impl/ops.py, loaded with ctypes by pytorch_impl/native.py; plain C ABI, no torch
// headers, so it builds in about a second).
//
// For every row i and column j, with z = logits_ij and the row's threshold h_i:
//   z > h_i:  logits_ij <- z (z / s + t),  deriv_ij <- (z / s + t) + z / s
//   else:     logits_ij unchanged,          deriv_ij <- 1
// deriv is dz'/dz, which the head's backward multiplies into the gradient. The target column
// is treated like the others: the head overwrites it afterwards, in both passes. The operations
// are the Gluon graph's (z / s, + t, * z); the pure-torch fallback multiplies by 1/s instead,
// an ulp apart in float32. No -ffast-math: NaN and inf keep their meaning.

#include <cstdint>

namespace {

template <typename T>
void rule(T* __restrict logits, T* __restrict deriv, const T* __restrict threshold, int64_t rows,
          int64_t cols, T s, T t) {
  for (int64_t i = 0; i < rows; ++i) {
    T* __restrict z = logits + i * cols;
    T* __restrict d = deriv + i * cols;
    const T h = threshold[i];
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) {
      const T v = z[j];
      const T q = v / s + t;
      const bool hard = v > h;
      z[j] = hard ? v * q : v;
      d[j] = hard ? q + v / s : T(1);
    }
  }
}

}  // namespace

extern "C" {

void curricular_rule_f32(float* logits, float* deriv, const float* threshold, int64_t rows,
                         int64_t cols, float s, float t) {
  rule<float>(logits, deriv, threshold, rows, cols, s, t);
}

void curricular_rule_f64(double* logits, double* deriv, const double* threshold, int64_t rows,
                         int64_t cols, double s, double t) {
  rule<double>(logits, deriv, threshold, rows, cols, s, t);
}

}  // extern "C"
