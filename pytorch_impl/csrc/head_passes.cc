// The B x C and row passes of the fused PyTorch head (pytorch_impl/ops.py), loaded with ctypes
// by pytorch_impl/native.py: plain C ABI, no torch headers, so it builds in about a second.
// Each function does in one sweep what eager torch does in several passes with temporaries:
//
// softmax_rows: for every row i of the GEMM output L (in place), with optional row scale a_i,
//   column scale c_j and CurricularFace's rule (kRule):
//     z_ij = (L_ij a_i) c_j;  under the rule, z > h_i: z <- z (z / s + t), deriv_ij <- (z / s
//     + t) + z / s, else deriv_ij <- 1;  z_iy <- target_i;  m_i = max_j z_ij;
//     L_ij <- e_ij = exp(z_ij - m_i);  sum_i = sum_j e_ij.
// grad_rows: G_ij = ((e_ij deriv_ij) c_j) a_i, G_iy = target_grad_i (in place over e).
// project_rows: g_i <- g_i - v_i (<g_i, v_i> k_i - o_i), the backward of a row normalisation
//   (in place), o_i (optional) a gradient reaching |v_i| directly, times 1/|v_i|.
//
// The products are taken in the order of the torch-operations fallback in ops.py, so both
// paths agree to the ulp except exp and the sums' order. No -ffast-math: NaN and inf keep
// their meaning. Every entry point leaves errno as it found it: glibc's exp sets ERANGE on
// underflow (which a softmax row at s=64 always has), and MXNet's scalar parser, running
// later on the same thread, reads a stale ERANGE as an overflow of the value "inf".

#include <cerrno>
#include <cmath>
#include <cstdint>

// libmvec's vector exp/expf, as <cmath> declares them under -ffast-math: declared here so the
// row loops vectorise without it (the same declaration as gluon_impl/csrc/fused_margin_ce.cc).
// libmvec keeps IEEE special cases. glibc on x86-64 only (elsewhere: scalar exp).
#if !defined(__FAST_MATH__) && defined(__x86_64__) && defined(__GLIBC__)
extern "C" {
__attribute__((simd("notinbranch"))) float expf(float) noexcept;
__attribute__((simd("notinbranch"))) double exp(double) noexcept;
}
#endif

namespace {

template <typename T, bool kRule>
void softmax_rows(T* __restrict logits, T* __restrict deriv, const T* __restrict row_scale,
                  const T* __restrict col_scale, const int64_t* __restrict labels,
                  const T* __restrict target, const T* __restrict threshold, T s, T t,
                  T* __restrict sum_out, T* __restrict max_out, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows; ++i) {
    T* __restrict z = logits + i * cols;
    if (row_scale != nullptr && col_scale != nullptr) {
      const T a = row_scale[i];
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) z[j] = (z[j] * a) * col_scale[j];
    } else if (row_scale != nullptr) {
      const T a = row_scale[i];
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) z[j] *= a;
    } else if (col_scale != nullptr) {
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) z[j] *= col_scale[j];
    }
    if constexpr (kRule) {
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
    if (target != nullptr) z[labels[i]] = target[i];
    T mx = z[0];
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < cols; ++j) mx = z[j] > mx ? z[j] : mx;
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < cols; ++j) {
      const T e = std::exp(z[j] - mx);
      z[j] = e;
      sum += e;
    }
    sum_out[i] = sum;
    max_out[i] = mx;
  }
}

template <typename T>
void grad_rows(T* __restrict grad, const T* __restrict deriv, const T* __restrict col_scale,
               const T* __restrict row_scale, const int64_t* __restrict labels,
               const T* __restrict target_grad, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows; ++i) {
    T* __restrict g = grad + i * cols;
    const T a = row_scale[i];
    if (deriv != nullptr && col_scale != nullptr) {
      const T* __restrict d = deriv + i * cols;
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) g[j] = ((g[j] * d[j]) * col_scale[j]) * a;
    } else if (deriv != nullptr) {
      const T* __restrict d = deriv + i * cols;
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) g[j] = (g[j] * d[j]) * a;
    } else if (col_scale != nullptr) {
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) g[j] = (g[j] * col_scale[j]) * a;
    } else {
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) g[j] *= a;
    }
    g[labels[i]] = target_grad[i];
  }
}

template <typename T>
void project_rows(T* __restrict grad, const T* __restrict v, const T* __restrict k,
                  const T* __restrict offset, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows; ++i) {
    T* __restrict g = grad + i * cols;
    const T* __restrict w = v + i * cols;
    T dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < cols; ++j) dot += g[j] * w[j];
    const T c = offset != nullptr ? dot * k[i] - offset[i] : dot * k[i];
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) g[j] -= w[j] * c;
  }
}

// restores errno when it goes out of scope (see the top of the file)
struct KeepErrno {
  int saved = errno;
  ~KeepErrno() { errno = saved; }
};

}  // namespace

#define FACELOSSES_EXPORT(T, SUFFIX)                                                           \
  void softmax_rows_##SUFFIX(T* logits, const T* row_scale, const T* col_scale,                 \
                             const int64_t* labels, const T* target, T* sum_out, T* max_out,    \
                             int64_t rows, int64_t cols) {                                      \
    KeepErrno keep;                                                                            \
    softmax_rows<T, false>(logits, nullptr, row_scale, col_scale, labels, target, nullptr,     \
                           T(1), T(0), sum_out, max_out, rows, cols);                           \
  }                                                                                            \
  void softmax_rule_rows_##SUFFIX(T* logits, T* deriv, const T* row_scale, const T* col_scale, \
                                  const int64_t* labels, const T* target,                      \
                                  const T* threshold, T s, T t, T* sum_out, T* max_out,        \
                                  int64_t rows, int64_t cols) {                                \
    KeepErrno keep;                                                                            \
    softmax_rows<T, true>(logits, deriv, row_scale, col_scale, labels, target, threshold, s,   \
                          t, sum_out, max_out, rows, cols);                                    \
  }                                                                                            \
  void grad_rows_##SUFFIX(T* grad, const T* deriv, const T* col_scale, const T* row_scale,     \
                          const int64_t* labels, const T* target_grad, int64_t rows,           \
                          int64_t cols) {                                                      \
    KeepErrno keep;                                                                            \
    grad_rows<T>(grad, deriv, col_scale, row_scale, labels, target_grad, rows, cols);          \
  }                                                                                            \
  void project_rows_##SUFFIX(T* grad, const T* v, const T* k, const T* offset, int64_t rows,    \
                             int64_t cols) {                                                   \
    KeepErrno keep;                                                                            \
    project_rows<T>(grad, v, k, offset, rows, cols);                                           \
  }

extern "C" {
FACELOSSES_EXPORT(float, f32)
FACELOSSES_EXPORT(double, f64)
}
