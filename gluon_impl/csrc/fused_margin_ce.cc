// Row passes of the margin cross-entropy for MXNet 1.9 (CPU), loaded with mx.library.load.
// The GEMMs stay in the graph's FullyConnected (MXNet's own oneDNN kernels); these
// operators replace the slow parts around it:
//
// l2norm_rows(W (C,D); scale=1) -> W'_j = W_j (n_j s),  n_j = 1/sqrt(|W_j|^2 + 1e-24)
//   (L2Normalization(mode="instance", eps=1e-24) times s, same formula; s is NormFace's
//   scale on the embeddings' side, one B x D pass less each way). Backward, one row at a time
//   with the row in cache: gW_j = s (n_j g_j - n_j^3 <g_j, W_j> W_j).
//
// norm_rows(x (B,D)) -> |x_i| = sqrt(|x_i|^2 + 1e-24) (B,), backward gx_i = g_i x_i / |x_i|:
//   MXNet's sum over axis 1 of a 256 x 512 array takes about 0.8 ms on one thread, 20x a pass.
//
// margin_lse_rows(logits (B,C), labels (B,)) -> (R (B,), z_y (B,))
//   R_i = logsumexp_{j != y_i} logits_ij (the non-target columns), z_y_i = logits_{i y_i}.
//   The caller's graph finishes the margin cross-entropy on B values:
//     CE_i = logaddexp(R_i, t_i) - t_i with t_i = r_i hook(z_y_i / r_i)
//   so the target column is never rewritten. No B x C buffer: forward keeps the row max m_i
//   and S_i = sum_{j != y_i} exp(logits_ij - m_i) (B values each); backward recomputes the
//   exponentials from the logits and writes the logits' gradient in one pass:
//     G_ij = gR_i exp(logits_ij - m_i) / S_i (j != y_i),  G_iy = gz_i;  grad labels = 0.
//
// curricular_lse_rows(logits, labels, t (1,); scale, cos_m, sin_m, sin_eps) -> (R, z_y)
//   margin_lse_rows with CurricularFace's rule on the non-target logits: with
//   c_i = clamp(z_y_i / s, -1, 1), sin_i = sqrt(max(1 - c_i^2, sin_eps)) and the threshold
//   h_i = s (c_i cos_m - sin_i sin_m) (= s cos(theta_y + m)), a logit z_ij > h_i is used as
//   z_ij (z_ij / s + t) (the same operations in the same order as the pure graph). The rule
//   is a step: h and t get no gradient; backward multiplies the row's gradient by the
//   derivative z_ij / s + t + z_ij / s where the rule applies, recomputed from the logits.
//
// The library speaks MXNet's extension ABI (include/mxnet/lib_api.h, MX_LIBRARY_VERSION
// 11) directly: the C entry points below are the ones MXNet's loader looks up; the
// function pointers it passes back to them are opaque to MXNet and are used here as tags
// naming the operator. It registers four stateful CPU operators and no partitioners or
// passes. Built without -ffast-math (NaN and inf keep their meaning); the reductions are
// vectorised by `omp simd` (-fopenmp-simd, no OpenMP runtime) and exp by libmvec.

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

// libmvec's vector exp/expf, as <cmath> declares them under -ffast-math: declared here so
// the row loops vectorise without it. libmvec keeps IEEE special cases: NaN in, NaN out;
// overflow to inf, underflow to 0. glibc on x86-64 only (elsewhere: scalar exp).
#if !defined(__FAST_MATH__) && defined(__x86_64__) && defined(__GLIBC__)
extern "C" {
__attribute__((simd("notinbranch"))) float expf(float) noexcept;
__attribute__((simd("notinbranch"))) double exp(double) noexcept;
}
#endif

namespace {

constexpr int kFloat32 = 0, kFloat64 = 1, kInt32 = 4, kInt64 = 6;  // mshadow type flags
constexpr int kMxSuccess = 1, kMxFail = 0;
constexpr double kNormEpsSq = 1e-24;
const char* const kCpu = "cpu";

enum OpKind { kRows = 0, kL2Norm = 1, kHard = 2, kNorm = 3, kNumOps = 4 };
struct OpDesc {
  int kind;
  const char* name;
};
// handed to MXNet as the operators' parse/type/shape/create functions: MXNet passes them
// back as the first argument of the _opCall* entry points below, which dispatch on them
OpDesc kOps[kNumOps] = {
    {kRows, "margin_lse_rows"}, {kL2Norm, "l2norm_rows"}, {kHard, "curricular_lse_rows"},
    {kNorm, "norm_rows"}};
const char* const kHardAttrs[4] = {"scale", "cos_m", "sin_m", "sin_eps"};

int kind_of(void* tag) { return static_cast<OpDesc*>(tag)->kind; }

// Layout of mxnet::ext::CustomStatefulOp (vtable, ignore_warn, created): MXNet only holds
// the pointer and hands it back to _opCallFStatefulCompute / _opCallDestroyOpState.
struct StateBase {
  virtual ~StateBase() {}
  virtual int unused_forward() { return kMxFail; }
  virtual int unused_backward() { return kMxFail; }
  bool ignore_warn = true;
  bool created = true;
};

struct State : StateBase {
  int kind = kRows;
  int dtype = -1;
  int label_type = -1;
  int64_t rows = 0, cols = 0;
  std::vector<char> row_max;   // B
  std::vector<char> row_sum;   // B
  std::vector<int64_t> label;  // B target columns, read once in forward
  std::vector<char> threshold;  // B, curricular_lse_rows only
  double hard_attr[4] = {0, 0, 0, 0};  // scale, cos_m, sin_m, sin_eps (kHardAttrs)
  double t = 0;                // curricular_lse_rows: t of the forward
  double scale = 1;            // l2norm_rows: the output's factor
  bool ready = false;          // forward ran (margin_lse_rows, curricular_lse_rows)
};

// The rule's logit: z (z / s + t) above the row's threshold, z otherwise; the division and
// the sum in the graph's order (logits / s, + t, * logits) so float32 rounds the same.
template <typename T>
inline T ruled(T z, T thr, T s, T t) { return z > thr ? z * (z / s + t) : z; }

// the rule's derivative dz'/dz: (z / s + t) + z / s above the threshold, 1 otherwise
template <typename T>
inline T ruled_grad(T z, T thr, T s, T t) { return z > thr ? (z / s + t) + z / s : T(1); }

// parses the four attributes of curricular_lse_rows; false when one is missing or not a number
bool parse_hard_attrs(const char* const* keys, const char* const* vals, int num, double* out) {
  for (int a = 0; a < 4; ++a) {
    bool found = false;
    for (int k = 0; k < num; ++k) {
      if (std::strcmp(keys[k], kHardAttrs[a]) != 0) continue;
      char* end = nullptr;
      out[a] = std::strtod(vals[k], &end);
      if (end == vals[k] || *end != '\0' || !std::isfinite(out[a])) return false;
      found = true;
    }
    if (!found) return false;
  }
  return out[0] > 0;
}

// parses l2norm_rows' optional positive `scale` (default 1); false when it is not a number
bool parse_scale(const char* const* keys, const char* const* vals, int num, double* out) {
  *out = 1.0;
  for (int k = 0; k < num; ++k) {
    if (std::strcmp(keys[k], "scale") != 0) continue;
    char* end = nullptr;
    *out = std::strtod(vals[k], &end);
    if (end == vals[k] || *end != '\0' || !std::isfinite(*out) || *out <= 0) return false;
  }
  return true;
}

template <typename T>
T* grow(std::vector<char>* buf, int64_t n) {
  if (buf->size() < static_cast<size_t>(n) * sizeof(T)) buf->resize(n * sizeof(T));
  return reinterpret_cast<T*>(buf->data());
}

// The non-target logsumexp of every row, kRule: of the logits under CurricularFace's rule
// (curricular_lse_rows), else of the logits themselves (margin_lse_rows). Keeps the row max,
// the row sum and (kRule) the row's threshold for the backward; no B x C buffer.
template <typename T, bool kRule>
int lse_forward(State* st, const T* L, T t, T* lse, T* zy, int64_t B, int64_t C) {
  T* mxs = grow<T>(&st->row_max, B);
  T* sums = grow<T>(&st->row_sum, B);
  T* thrs = kRule ? grow<T>(&st->threshold, B) : nullptr;
  const T s = static_cast<T>(st->hard_attr[0]), cos_m = static_cast<T>(st->hard_attr[1]);
  const T sin_m = static_cast<T>(st->hard_attr[2]), eps = static_cast<T>(st->hard_attr[3]);
  st->rows = B;
  st->cols = C;
  st->t = t;
  for (int64_t i = 0; i < B; ++i) {
    const T* row = L + i * C;
    const int64_t y = st->label[i];
    zy[i] = row[y];
    T thr = 0;
    if constexpr (kRule) {  // s cos(theta_y + m), as the graph computes it
      T c = row[y] / s;
      c = c < T(-1) ? T(-1) : (c > T(1) ? T(1) : c);
      const T sq = T(1) - c * c;
      const T sin = std::sqrt(sq > eps ? sq : eps);
      thr = s * (c * cos_m - sin * sin_m);
      thrs[i] = thr;
    }
    // the logit as the softmax sees it (the rule applied or not)
    auto z = [&](int64_t j) { return kRule ? ruled<T>(row[j], thr, s, t) : row[j]; };
    if (C == 1) {  // no other column: R = -inf, nothing flows back through it
      mxs[i] = 0;
      sums[i] = 0;
      lse[i] = -std::numeric_limits<T>::infinity();
      continue;
    }
    // the non-target columns are [0, y) and (y, C)
    T mx = z(y == 0 ? 1 : 0);
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < y; ++j) mx = z(j) > mx ? z(j) : mx;
#pragma omp simd reduction(max : mx)
    for (int64_t j = y + 1; j < C; ++j) mx = z(j) > mx ? z(j) : mx;
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < y; ++j) sum += std::exp(z(j) - mx);
#pragma omp simd reduction(+ : sum)
    for (int64_t j = y + 1; j < C; ++j) sum += std::exp(z(j) - mx);
    mxs[i] = mx;
    sums[i] = sum;
    lse[i] = mx + std::log(sum);
  }
  st->ready = true;
  return kMxSuccess;
}

// G_ij = gR_i exp(z_ij - m_i) / S_i (times dz'/dz under the rule), G_iy = gz_i: one pass
template <typename T, bool kRule>
int lse_backward(State* st, const T* grad_lse, const T* grad_zy, const T* L, T* gL,
                 int64_t B, int64_t C) {
  if (!st->ready || st->rows != B || st->cols != C) return kMxFail;
  const T* mxs = reinterpret_cast<const T*>(st->row_max.data());
  const T* sums = reinterpret_cast<const T*>(st->row_sum.data());
  const T* thrs = reinterpret_cast<const T*>(st->threshold.data());
  const T s = static_cast<T>(st->hard_attr[0]), t = static_cast<T>(st->t);
  for (int64_t i = 0; i < B; ++i) {
    const T* __restrict row = L + i * C;
    T* __restrict g = gL + i * C;
    const int64_t y = st->label[i];
    const T factor = sums[i] > 0 ? grad_lse[i] / sums[i] : T(0);
    const T mx = mxs[i], thr = kRule ? thrs[i] : T(0);
    auto grad = [&](int64_t j) {
      if constexpr (kRule)
        return factor * std::exp(ruled<T>(row[j], thr, s, t) - mx) *
               ruled_grad<T>(row[j], thr, s, t);
      return factor * std::exp(row[j] - mx);
    };
    // the target's exp is never taken: z_y may lie far above the others' max
#pragma omp simd
    for (int64_t j = 0; j < y; ++j) g[j] = grad(j);
#pragma omp simd
    for (int64_t j = y + 1; j < C; ++j) g[j] = grad(j);
    g[y] = grad_zy[i];
  }
  return kMxSuccess;
}

template <typename T>
void l2norm_forward(const T* w, T* out, int64_t C, int64_t D, T scale) {
  for (int64_t j = 0; j < C; ++j) {
    const T* __restrict r = w + j * D;
    T* __restrict o = out + j * D;
    T acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t k = 0; k < D; ++k) acc += r[k] * r[k];
    const T nj = T(1) / std::sqrt(acc + T(kNormEpsSq));
    const T f = nj * scale;
#pragma omp simd
    for (int64_t k = 0; k < D; ++k) o[k] = r[k] * f;
  }
}

template <typename T>
void l2norm_backward(const T* g, const T* w, T* gw, int64_t C, int64_t D, T scale) {
  for (int64_t j = 0; j < C; ++j) {
    const T* __restrict r = w + j * D;
    const T* __restrict gr = g + j * D;
    T* __restrict o = gw + j * D;
    T acc = 0, dot = 0;
#pragma omp simd reduction(+ : acc, dot)
    for (int64_t k = 0; k < D; ++k) {
      acc += r[k] * r[k];
      dot += gr[k] * r[k];
    }
    const T nj = T(1) / std::sqrt(acc + T(kNormEpsSq));
    const T coef = dot * nj * nj * nj;
#pragma omp simd
    for (int64_t k = 0; k < D; ++k) o[k] = (gr[k] * nj - coef * r[k]) * scale;
  }
}

template <typename T>
void norm_forward(const T* x, T* out, int64_t B, int64_t D) {
  for (int64_t i = 0; i < B; ++i) {
    const T* __restrict r = x + i * D;
    T acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t k = 0; k < D; ++k) acc += r[k] * r[k];
    out[i] = std::sqrt(acc + T(kNormEpsSq));
  }
}

template <typename T>
void norm_backward(const T* g, const T* x, const T* norm, T* gx, int64_t B, int64_t D) {
  for (int64_t i = 0; i < B; ++i) {
    const T* __restrict r = x + i * D;
    T* __restrict o = gx + i * D;
    const T c = g[i] / norm[i];
#pragma omp simd
    for (int64_t k = 0; k < D; ++k) o[k] = r[k] * c;
  }
}

// the row-wise ops (l2norm_rows, norm_rows) take no labels
bool takes_labels(int kind) { return kind == kRows || kind == kHard; }

// labels may be float32/64 or int32/64; false when one lies outside [0, C)
bool read_labels(State* st, const void* data, int dtype, int64_t B, int64_t C) {
  st->label.resize(B);
  for (int64_t i = 0; i < B; ++i) {
    double v;
    switch (dtype) {
      case kFloat32: v = static_cast<const float*>(data)[i]; break;
      case kFloat64: v = static_cast<const double*>(data)[i]; break;
      case kInt32: v = static_cast<const int32_t*>(data)[i]; break;
      case kInt64: v = static_cast<double>(static_cast<const int64_t*>(data)[i]); break;
      default: return false;
    }
    if (!(v >= 0 && v < static_cast<double>(C))) return false;
    st->label[i] = static_cast<int64_t>(v);
  }
  return true;
}

void io_count(int kind, int* num_in, int* num_out) {
  *num_in = kind == kRows ? 2 : (kind == kHard ? 3 : 1);
  *num_out = takes_labels(kind) ? 2 : 1;
}

// zeroes the gradient of an input that gets none (labels, t): n values of type `type`
void zero_grad(void* data, int type, int64_t n) {
  if (data) std::memset(data, 0, (type == kFloat64 || type == kInt64 ? 8 : 4) * n);
}

unsigned* shape_copy(const std::vector<unsigned>& s) {
  unsigned* out = static_cast<unsigned*>(std::malloc((s.size() + 1) * sizeof(unsigned)));
  for (size_t k = 0; k < s.size(); ++k) out[k] = s[k];
  return out;
}

// fills MXNet's malloc'ed shape arrays (it frees them with _opCallFree)
void put_shapes(const std::vector<std::vector<unsigned>>& ins,
                const std::vector<std::vector<unsigned>>& outs, unsigned*** mod_inshapes,
                int** mod_indims, unsigned*** outshapes, int** outdims) {
  *mod_indims = static_cast<int*>(std::malloc(ins.size() * sizeof(int)));
  *mod_inshapes = static_cast<unsigned**>(std::malloc(ins.size() * sizeof(unsigned*)));
  for (size_t i = 0; i < ins.size(); ++i) {
    (*mod_indims)[i] = static_cast<int>(ins[i].size());
    (*mod_inshapes)[i] = shape_copy(ins[i]);
  }
  *outdims = static_cast<int*>(std::malloc(outs.size() * sizeof(int)));
  *outshapes = static_cast<unsigned**>(std::malloc(outs.size() * sizeof(unsigned*)));
  for (size_t i = 0; i < outs.size(); ++i) {
    (*outdims)[i] = static_cast<int>(outs[i].size());
    (*outshapes)[i] = shape_copy(outs[i]);
  }
}

template <typename T>
int compute(State* st, int is_forward, const int64_t** inshapes, int* indims, void** indata,
            int num_in, void** outdata, int* outtypes, int num_out) {
  auto in = [&](int i) { return static_cast<T*>(indata[i]); };
  auto out = [&](int i) { return static_cast<T*>(outdata[i]); };
  if (st->kind == kRows) {
    if (is_forward) {  // inputs: logits, labels; outputs: R, z_y
      if (num_in != 2 || num_out != 2 || indims[0] != 2) return kMxFail;
      const int64_t B = inshapes[0][0], C = inshapes[0][1];
      if (!read_labels(st, indata[1], st->label_type, B, C)) return kMxFail;
      return lse_forward<T, false>(st, in(0), T(0), out(0), out(1), B, C);
    }
    // backward inputs: grad R, grad z_y, logits, labels, R, z_y; outputs: grads of the inputs
    if (num_in != 6 || num_out != 2 || indims[2] != 2 || !outdata[0]) return kMxFail;
    const int64_t B = inshapes[2][0], C = inshapes[2][1];
    zero_grad(outdata[1], outtypes[1], B);  // labels get no gradient
    return lse_backward<T, false>(st, in(0), in(1), in(2), out(0), B, C);
  }
  if (st->kind == kHard) {
    if (is_forward) {  // inputs: logits, labels, t; outputs: R, z_y
      if (num_in != 3 || num_out != 2 || indims[0] != 2) return kMxFail;
      const int64_t B = inshapes[0][0], C = inshapes[0][1];
      if (!read_labels(st, indata[1], st->label_type, B, C)) return kMxFail;
      return lse_forward<T, true>(st, in(0), in(2)[0], out(0), out(1), B, C);
    }
    // backward inputs: grad R, grad z_y, logits, labels, t, R, z_y; outputs: grads of inputs
    if (num_in != 7 || num_out != 3 || indims[2] != 2 || !outdata[0]) return kMxFail;
    const int64_t B = inshapes[2][0], C = inshapes[2][1];
    zero_grad(outdata[1], outtypes[1], B);
    zero_grad(outdata[2], outtypes[2], 1);  // the rule is a step in t: no gradient
    return lse_backward<T, true>(st, in(0), in(1), in(2), out(0), B, C);
  }
  // l2norm_rows: forward W -> W'; backward inputs: grad W', W, W'; output: grad W
  // norm_rows: forward x -> |x|; backward inputs: grad |x|, x, |x|; output: grad x
  const int w = is_forward ? 0 : 1;
  if (num_out != 1 || num_in != (is_forward ? 1 : 3) || indims[w] != 2 || !outdata[0])
    return kMxFail;
  const int64_t C = inshapes[w][0], D = inshapes[w][1];
  if (st->kind == kNorm) {
    if (is_forward)
      norm_forward<T>(in(0), out(0), C, D);
    else
      norm_backward<T>(in(0), in(1), in(2), out(0), C, D);
  } else if (is_forward) {
    l2norm_forward<T>(in(0), out(0), C, D, T(st->scale));
  } else {
    l2norm_backward<T>(in(0), in(1), out(0), C, D, T(st->scale));
  }
  return kMxSuccess;
}

}  // namespace

extern "C" {

int initialize(int version) { return version >= 10900 && version < 20000 ? kMxSuccess : kMxFail; }
int _opVersion() { return 11; }
int _opRegSize() { return kNumOps; }

void _opRegGet(int idx, const char** name, int* is_sg_op, const char*** forward_ctx,
               void*** forward_fp, int* forward_count, const char*** backward_ctx,
               void*** backward_fp, int* backward_count, const char*** create_op_ctx,
               void*** create_op_fp, int* create_op_count, void** parse, void** type,
               void** stype, void** shape, void** mutate) {
  static const char* ctx[1] = {kCpu};
  static void* create[kNumOps][1];
  OpDesc* op = &kOps[idx];
  create[idx][0] = op;
  *name = op->name;
  *is_sg_op = 0;
  *forward_ctx = nullptr;
  *forward_fp = nullptr;
  *forward_count = 0;
  *backward_ctx = nullptr;
  *backward_fp = nullptr;
  *backward_count = 0;
  *create_op_ctx = ctx;
  *create_op_fp = create[idx];
  *create_op_count = 1;
  *parse = op;
  *type = op;
  *stype = nullptr;
  *shape = op;
  *mutate = nullptr;
}

void _opCallFree(void* ptr) { std::free(ptr); }

int _opCallParseAttrs(void* tag, const char* const* keys, const char* const* vals, int num,
                      int* num_in, int* num_out) {
  const int kind = kind_of(tag);
  io_count(kind, num_in, num_out);
  double attrs[4];
  if (kind == kHard && !parse_hard_attrs(keys, vals, num, attrs)) return kMxFail;
  if (kind == kL2Norm && !parse_scale(keys, vals, num, attrs)) return kMxFail;
  return kMxSuccess;
}

int _opCallInferShape(void* tag, const char* const*, const char* const*, int,
                      unsigned int** inshapes, int* indims, int num_in,
                      unsigned int*** mod_inshapes, int** mod_indims, unsigned int*** outshapes,
                      int** outdims, int num_out) {
  const int kind = kind_of(tag);
  int want_in, want_out;
  io_count(kind, &want_in, &want_out);
  if (num_in != want_in || num_out != want_out) return kMxFail;
  // ndim 0 = not known yet
  std::vector<std::vector<unsigned>> ins(num_in), outs(num_out);
  for (int i = 0; i < num_in; ++i) ins[i].assign(inshapes[i], inshapes[i] + indims[i]);
  if ((indims[0] != 0 && indims[0] != 2)) return kMxFail;
  if (kind == kL2Norm) {  // W (C,D) -> (C,D)
    outs[0] = ins[0];
  } else if (kind == kNorm) {  // x (B,D) -> (B,)
    if (indims[0] == 2) outs[0] = {ins[0][0]};
  } else {  // logits (B,C), labels (B,)[, t (1,)] -> (B,), (B,)
    if (indims[1] != 0 && indims[1] != 1) return kMxFail;
    if (kind == kHard) {
      if (indims[2] != 0 && !(indims[2] == 1 && inshapes[2][0] == 1)) return kMxFail;
      ins[2] = {1u};
    }
    int64_t B = -1;
    if (indims[0] == 2) B = inshapes[0][0];
    if (indims[1] == 1) {
      if (B >= 0 && inshapes[1][0] != B) return kMxFail;
      B = inshapes[1][0];
    }
    if (B >= 0) {
      ins[1] = {static_cast<unsigned>(B)};
      outs[0] = outs[1] = {static_cast<unsigned>(B)};
    }
  }
  put_shapes(ins, outs, mod_inshapes, mod_indims, outshapes, outdims);
  return kMxSuccess;
}

int _opCallInferType(void* tag, const char* const*, const char* const*, int, int* intypes,
                     int num_in, int* outtypes, int num_out) {
  const int kind = kind_of(tag);
  int want_in, want_out;
  io_count(kind, &want_in, &want_out);
  if (num_in != want_in || num_out != want_out) return kMxFail;
  int dt = intypes[0] >= 0 ? intypes[0] : outtypes[0];
  if (dt < 0) return kMxFail;  // not known yet
  if (dt != kFloat32 && dt != kFloat64) return kMxFail;
  if (intypes[0] >= 0 && intypes[0] != dt) return kMxFail;
  intypes[0] = dt;
  if (takes_labels(kind)) {
    if (intypes[1] < 0) intypes[1] = dt;
    const int lt = intypes[1];
    if (lt != kFloat32 && lt != kFloat64 && lt != kInt32 && lt != kInt64) return kMxFail;
  }
  if (kind == kHard) {  // t has the logits' type
    if (intypes[2] >= 0 && intypes[2] != dt) return kMxFail;
    intypes[2] = dt;
  }
  for (int i = 0; i < num_out; ++i) outtypes[i] = dt;
  return kMxSuccess;
}

int _opCallInferSType(void*, const char* const*, const char* const*, int, int* instypes,
                      int num_in, int* outstypes, int num_out) {
  for (int i = 0; i < num_in; ++i) {
    if (instypes[i] > 0) return kMxFail;
    instypes[i] = 0;
  }
  for (int i = 0; i < num_out; ++i) outstypes[i] = 0;
  return kMxSuccess;
}

int _opCallFCompute(...) { return kMxFail; }  // stateless path unused (stateful ops)

int _opCallMutateInputs(void*, const char* const*, const char* const*, int, int** indices,
                        int* size) {
  *indices = nullptr;
  *size = 0;
  return kMxSuccess;
}

int _opCallCreateOpState(void* tag, const char* const* keys, const char* const* vals, int num,
                         const char* dev_type, int, unsigned int**, int*, int, const int*,
                         void** state_op) {
  if (std::strcmp(dev_type, kCpu) != 0) return kMxFail;
  double attrs[4] = {0, 0, 0, 0};
  if (kind_of(tag) == kHard && !parse_hard_attrs(keys, vals, num, attrs)) return kMxFail;
  double scale = 1.0;
  if (kind_of(tag) == kL2Norm && !parse_scale(keys, vals, num, &scale)) return kMxFail;
  State* st = new State();
  st->kind = kind_of(tag);
  st->scale = scale;
  std::memcpy(st->hard_attr, attrs, sizeof(attrs));
  *state_op = static_cast<StateBase*>(st);
  return kMxSuccess;
}

void _opCallDestroyOpState(void* state_op) { delete static_cast<StateBase*>(state_op); }

int _opCallFStatefulCompute(int is_forward, void* state_op, const int64_t** inshapes,
                            int* indims, void** indata, int* intypes, size_t*, const char**,
                            int*, int num_in, const int64_t**, int*, void** outdata,
                            int* outtypes, size_t*, const char**, int*, int num_out, void*,
                            void*, void*, void*, void*, void*, void*, int*, int*, void**,
                            void**, void**, void**, int64_t*, int64_t*, int64_t*, int64_t*,
                            void*, void*) {
  // glibc's exp sets errno (ERANGE) on underflow; MXNet's scalar parser reads a stale ERANGE
  // as an overflow of "inf" on the same thread (NaiveEngine): leave errno as it was
  const int saved_errno = errno;
  struct Restore {
    int value;
    ~Restore() { errno = value; }
  } restore{saved_errno};
  State* st = static_cast<State*>(static_cast<StateBase*>(state_op));
  if (is_forward) {
    st->dtype = intypes[0];
    if (takes_labels(st->kind)) st->label_type = intypes[1];
    st->ready = false;
  } else if (num_in < 3 || intypes[takes_labels(st->kind) ? 2 : 1] != st->dtype) {
    return kMxFail;  // backward: the data input (logits / W / x) has the forward's type
  }
  if (st->dtype == kFloat32)
    return compute<float>(st, is_forward, inshapes, indims, indata, num_in, outdata, outtypes,
                          num_out);
  if (st->dtype == kFloat64)
    return compute<double>(st, is_forward, inshapes, indims, indata, num_in, outdata, outtypes,
                           num_out);
  return kMxFail;
}

int _partRegSize() { return 0; }
int _partRegGetCount(int, const char** name) { *name = ""; return 0; }
void _partRegGet(...) {}
int _partCallSupportedOps(...) { return kMxFail; }
int _partCallCreateSelector(...) { return kMxFail; }
void _partCallSelect(...) {}
void _partCallSelectInput(...) {}
void _partCallSelectOutput(...) {}
void _partCallFilter(...) {}
void _partCallReset(...) {}
int _partCallReviewSubgraph(...) { return kMxFail; }
int _passRegSize() { return 0; }
void _passRegGet(...) {}
int _passCallGraphPass(...) { return kMxFail; }
int _msgSize() { return 0; }
void _msgGet(int, const char** msg) { *msg = ""; }

}  // extern "C"
