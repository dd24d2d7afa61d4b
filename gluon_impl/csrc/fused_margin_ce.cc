// Fused margin-softmax logits for MXNet 1.9 (CPU), loaded with mx.library.load.
//
// fused_margin_lse(xs (B,D), W (C,D), labels (B,), normalize=0|1) -> (R (B,), z_y (B,))
//   z_ij = <xs_i, W_j> n_j,  n_j = 1/sqrt(|W_j|^2 + 1e-24) when normalize, else 1;
//   R_i = logsumexp_{j != y_i} z_ij (the non-target columns),  z_y_i = z_{i y_i}.
// The caller's graph finishes the margin cross-entropy on B values:
//   CE_i = logaddexp(R_i, t_i) - t_i with t_i = r_i hook(z_y_i / r_i)
// so the target column is never rewritten, and no second op produces a C x D gradient.
// Backward (ograds gR, gz): G_ij = gR_i e_ij / S_i n_j for j != y_i, G_iy = gz_i n_y, with
//   e_ij = exp(z_ij - max_i) and S_i = sum_{j != y_i} e_ij kept from forward in the op state;
//   grad xs = G W,  grad W = A - n^2 <A, W> W with A = G^T xs (A alone when not
//   normalising: 1/|W| is folded into the columns and its backward into that correction),
//   grad labels = 0. G overwrites e in place: one B x C pass between the two GEMMs.
//
// The library speaks MXNet's extension ABI (include/mxnet/lib_api.h, MX_LIBRARY_VERSION
// 11) directly: the C entry points below are the ones MXNet's loader looks up; the
// function pointers it passes back to them are opaque to MXNet. It registers one stateful
// CPU operator and no partitioners or passes. GEMMs: cblas_{s,d}gemm of the OpenBLAS that
// libmxnet.so itself links (linked at build time, see gluon_impl/fused.py).

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <utility>
#include <string>
#include <vector>

extern "C" {
void cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha,
                 const float* a, int lda, const float* b, int ldb, float beta, float* c,
                 int ldc);
void cblas_dgemm(int order, int transa, int transb, int m, int n, int k, double alpha,
                 const double* a, int lda, const double* b, int ldb, double beta, double* c,
                 int ldc);
}

namespace {

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
constexpr int kFloat32 = 0, kFloat64 = 1, kInt32 = 4, kInt64 = 6;  // mshadow type flags
constexpr int kMxSuccess = 1, kMxFail = 0;
constexpr double kNormEpsSq = 1e-24;
const char* const kOpName = "fused_margin_lse";
const char* const kCpu = "cpu";

inline void gemm(bool ta, bool tb, int m, int n, int k, const float* a, int lda,
                 const float* b, int ldb, float* c, int ldc) {
  cblas_sgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, m, n, k, 1.0f, a, lda,
              b, ldb, 0.0f, c, ldc);
}
inline void gemm(bool ta, bool tb, int m, int n, int k, const double* a, int lda,
                 const double* b, int ldb, double* c, int ldc) {
  cblas_dgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, m, n, k, 1.0, a, lda,
              b, ldb, 0.0, c, ldc);
}

// Layout of mxnet::ext::CustomStatefulOp (vtable, ignore_warn, created): MXNet only holds
// the pointer and hands it back to _opCallFStatefulCompute / _opCallDestroyOpState.
struct StateBase {
  virtual ~StateBase() {}
  virtual int unused_forward() { return kMxFail; }
  virtual int unused_backward() { return kMxFail; }
  bool ignore_warn = true;
  bool created = true;
};

// The B x C buffer outlives one forward/backward pair only; MXNet creates a state per
// imperative call (and per graph node when hybridized), so freed buffers go to a small pool
// and the next state takes one back instead of faulting in fresh pages every step.
class BufferPool {
 public:
  void* take(size_t bytes, size_t* got) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t best = free_.size();
    for (size_t i = 0; i < free_.size(); ++i) {
      if (free_[i].second >= bytes && (best == free_.size() || free_[i].second < free_[best].second))
        best = i;
    }
    if (best < free_.size()) {
      auto hit = free_[best];
      free_.erase(free_.begin() + best);
      *got = hit.second;
      return hit.first;
    }
    *got = bytes;
    return std::malloc(bytes);  // uninitialised: every entry is written before it is read
  }
  void give(void* p, size_t bytes) {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mu_);
    free_.emplace_back(p, bytes);
    if (free_.size() > kKeep) {  // drop the smallest
      size_t small = 0;
      for (size_t i = 1; i < free_.size(); ++i)
        if (free_[i].second < free_[small].second) small = i;
      std::free(free_[small].first);
      free_.erase(free_.begin() + small);
    }
  }

 private:
  static constexpr size_t kKeep = 2;
  std::mutex mu_;
  std::vector<std::pair<void*, size_t>> free_;
};

BufferPool& pool() {
  static BufferPool* p = new BufferPool();  // never destroyed: states may outlive statics
  return *p;
}

struct State : StateBase {
  ~State() override { pool().give(buf, buf_bytes); }
  template <typename T>
  T* exp_buf(int64_t n) {  // B x C: e = exp(z - max) for the non-target columns, then G
    const size_t bytes = static_cast<size_t>(n) * sizeof(T);
    if (buf_bytes < bytes) {
      pool().give(buf, buf_bytes);
      buf = pool().take(bytes, &buf_bytes);
    }
    return static_cast<T*>(buf);
  }
  bool normalize = false;
  int dtype = -1;
  int64_t rows = 0, cols = 0;
  void* buf = nullptr;
  size_t buf_bytes = 0;
  std::vector<char> inv_norm;  // C
  std::vector<char> row_sum;   // B
  std::vector<int64_t> label;  // B target columns, read once in forward
  bool ready = false;  // forward ran and backward has not consumed the buffer yet
};

template <typename T>
T* grow(std::vector<char>* buf, int64_t n) {
  if (buf->size() < static_cast<size_t>(n) * sizeof(T)) buf->resize(n * sizeof(T));
  return reinterpret_cast<T*>(buf->data());
}

template <typename T>
int forward(State* st, const T* xs, const T* w, T* lse, T* zy, int64_t B, int64_t D,
            int64_t C) {
  T* e = st->exp_buf<T>(B * C);
  T* sums = grow<T>(&st->row_sum, B);
  T* n = st->normalize ? grow<T>(&st->inv_norm, C) : nullptr;
  st->rows = B;
  st->cols = C;
  if (n) {
    for (int64_t j = 0; j < C; ++j) {
      const T* row = w + j * D;
      T acc = 0;
      for (int64_t k = 0; k < D; ++k) acc += row[k] * row[k];
      n[j] = T(1) / std::sqrt(acc + T(kNormEpsSq));
    }
  }
  gemm(false, true, B, C, D, xs, D, w, D, e, C);
  for (int64_t i = 0; i < B; ++i) {
    T* row = e + i * C;
    const int64_t y = st->label[i];
    if (n) {
      for (int64_t j = 0; j < C; ++j) row[j] *= n[j];
    }
    zy[i] = row[y];
    if (C == 1) {  // no other column: R = -inf, nothing flows back through it
      row[0] = 0;
      sums[i] = 0;
      lse[i] = -std::numeric_limits<T>::infinity();
      continue;
    }
    // the non-target columns are [0, y) and (y, C)
    T mx = row[y == 0 ? 1 : 0];
    for (int64_t j = 0; j < y; ++j) mx = row[j] > mx ? row[j] : mx;
    for (int64_t j = y + 1; j < C; ++j) mx = row[j] > mx ? row[j] : mx;
    T s = 0;
    for (int64_t j = 0; j < y; ++j) {
      row[j] = std::exp(row[j] - mx);
      s += row[j];
    }
    for (int64_t j = y + 1; j < C; ++j) {
      row[j] = std::exp(row[j] - mx);
      s += row[j];
    }
    row[y] = 0;
    sums[i] = s;
    lse[i] = mx + std::log(s);
  }
  st->ready = true;
  return kMxSuccess;
}

template <typename T>
int backward(State* st, const T* grad_lse, const T* grad_zy, const T* xs, const T* w, T* gxs,
             T* gw, int64_t B, int64_t D, int64_t C) {
  if (!st->ready || st->rows != B || st->cols != C) return kMxFail;
  st->ready = false;  // the buffer becomes the gradient: one backward per forward
  T* e = static_cast<T*>(st->buf);
  const T* sums = reinterpret_cast<const T*>(st->row_sum.data());
  const T* n = st->normalize ? reinterpret_cast<const T*>(st->inv_norm.data()) : nullptr;
  for (int64_t i = 0; i < B; ++i) {
    T* row = e + i * C;
    const int64_t y = st->label[i];
    const T factor = sums[i] > 0 ? grad_lse[i] / sums[i] : T(0);
    if (n) {
      for (int64_t j = 0; j < C; ++j) row[j] *= factor * n[j];
      row[y] = grad_zy[i] * n[y];
    } else {
      for (int64_t j = 0; j < C; ++j) row[j] *= factor;
      row[y] = grad_zy[i];
    }
  }
  if (gxs) gemm(false, false, B, D, C, e, C, w, D, gxs, D);
  if (gw) {
    gemm(true, false, C, D, B, e, C, xs, D, gw, D);
    if (n) {
      for (int64_t j = 0; j < C; ++j) {
        T* a = gw + j * D;
        const T* wr = w + j * D;
        T dot = 0;
        for (int64_t k = 0; k < D; ++k) dot += a[k] * wr[k];
        const T coef = dot * n[j] * n[j];
        for (int64_t k = 0; k < D; ++k) a[k] -= coef * wr[k];
      }
    }
  }
  return kMxSuccess;
}

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

bool attr_normalize(const char* const* keys, const char* const* vals, int num) {
  for (int i = 0; i < num; ++i) {
    if (std::strcmp(keys[i], "normalize") == 0) {
      const std::string v(vals[i]);
      return !(v == "0" || v == "False" || v == "false");
    }
  }
  return true;
}

}  // namespace

extern "C" {

int initialize(int version) { return version >= 10900 && version < 20000 ? kMxSuccess : kMxFail; }
int _opVersion() { return 11; }
int _opRegSize() { return 1; }

void _opRegGet(int, const char** name, int* is_sg_op, const char*** forward_ctx,
               void*** forward_fp, int* forward_count, const char*** backward_ctx,
               void*** backward_fp, int* backward_count, const char*** create_op_ctx,
               void*** create_op_fp, int* create_op_count, void** parse, void** type,
               void** stype, void** shape, void** mutate) {
  static const char* ctx[1] = {kCpu};
  static void* create[1] = {reinterpret_cast<void*>(&_opRegSize)};  // any non-null tag
  *name = kOpName;
  *is_sg_op = 0;
  *forward_ctx = nullptr;
  *forward_fp = nullptr;
  *forward_count = 0;
  *backward_ctx = nullptr;
  *backward_fp = nullptr;
  *backward_count = 0;
  *create_op_ctx = ctx;
  *create_op_fp = create;
  *create_op_count = 1;
  // non-null tags: MXNet only passes them back to the _opCall* functions below
  *parse = reinterpret_cast<void*>(&_opRegSize);
  *type = reinterpret_cast<void*>(&_opRegSize);
  *stype = nullptr;
  *shape = reinterpret_cast<void*>(&_opRegSize);
  *mutate = nullptr;
}

void _opCallFree(void* ptr) { std::free(ptr); }

int _opCallParseAttrs(void*, const char* const*, const char* const*, int, int* num_in,
                      int* num_out) {
  *num_in = 3;
  *num_out = 2;
  return kMxSuccess;
}

int _opCallInferShape(void*, const char* const*, const char* const*, int,
                      unsigned int** inshapes, int* indims, int num_in,
                      unsigned int*** mod_inshapes, int** mod_indims, unsigned int*** outshapes,
                      int** outdims, int num_out) {
  if (num_in != 3 || num_out != 2) return kMxFail;
  // inputs xs (B,D), W (C,D), labels (B,); ndim 0 = not known yet
  int64_t B = -1;
  if (indims[0] == 2) B = inshapes[0][0];
  if (indims[2] == 1) {
    if (B >= 0 && inshapes[2][0] != B) return kMxFail;
    B = inshapes[2][0];
  }
  if (indims[0] == 2 && indims[1] == 2 && inshapes[0][1] != inshapes[1][1]) return kMxFail;
  if ((indims[0] != 0 && indims[0] != 2) || (indims[1] != 0 && indims[1] != 2) ||
      (indims[2] != 0 && indims[2] != 1))
    return kMxFail;
  *mod_indims = static_cast<int*>(std::malloc(num_in * sizeof(int)));
  *mod_inshapes = static_cast<unsigned**>(std::malloc(num_in * sizeof(unsigned*)));
  for (int i = 0; i < num_in; ++i) {
    std::vector<unsigned> s(inshapes[i], inshapes[i] + indims[i]);
    if (i == 2 && s.empty() && B >= 0) s = {static_cast<unsigned>(B)};
    (*mod_indims)[i] = static_cast<int>(s.size());
    (*mod_inshapes)[i] = static_cast<unsigned*>(std::malloc((s.size() + 1) * sizeof(unsigned)));
    for (size_t k = 0; k < s.size(); ++k) (*mod_inshapes)[i][k] = s[k];
  }
  *outdims = static_cast<int*>(std::malloc(num_out * sizeof(int)));
  *outshapes = static_cast<unsigned**>(std::malloc(num_out * sizeof(unsigned*)));
  for (int i = 0; i < num_out; ++i) {
    (*outdims)[i] = B >= 0 ? 1 : 0;
    (*outshapes)[i] = static_cast<unsigned*>(std::malloc(sizeof(unsigned)));
    (*outshapes)[i][0] = B >= 0 ? static_cast<unsigned>(B) : 0;
  }
  return kMxSuccess;
}

int _opCallInferType(void*, const char* const*, const char* const*, int, int* intypes,
                     int num_in, int* outtypes, int num_out) {
  if (num_in != 3 || num_out != 2) return kMxFail;
  int dt = intypes[0] >= 0 ? intypes[0] : intypes[1];
  if (dt < 0) dt = outtypes[0] >= 0 ? outtypes[0] : outtypes[1];
  if (dt < 0) return kMxFail;  // not known yet
  if (dt != kFloat32 && dt != kFloat64) return kMxFail;
  for (int i = 0; i < 2; ++i) {
    if (intypes[i] >= 0 && intypes[i] != dt) return kMxFail;
    intypes[i] = dt;
  }
  if (intypes[2] < 0) intypes[2] = dt;
  const int lt = intypes[2];
  if (lt != kFloat32 && lt != kFloat64 && lt != kInt32 && lt != kInt64) return kMxFail;
  outtypes[0] = outtypes[1] = dt;
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

int _opCallFCompute(...) { return kMxFail; }  // stateless path unused (stateful op)

int _opCallMutateInputs(void*, const char* const*, const char* const*, int, int** indices,
                        int* size) {
  *indices = nullptr;
  *size = 0;
  return kMxSuccess;
}

int _opCallCreateOpState(void*, const char* const* keys, const char* const* vals, int num,
                         const char* dev_type, int, unsigned int**, int*, int, const int*,
                         void** state_op) {
  if (std::strcmp(dev_type, kCpu) != 0) return kMxFail;
  State* st = new State();
  st->normalize = attr_normalize(keys, vals, num);
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
  State* st = static_cast<State*>(static_cast<StateBase*>(state_op));
  if (is_forward) {
    // inputs xs, W, labels; outputs R, z_y
    if (num_in != 3 || num_out != 2 || indims[0] != 2 || indims[1] != 2) return kMxFail;
    const int64_t B = inshapes[0][0], D = inshapes[0][1], C = inshapes[1][0];
    st->dtype = intypes[0];
    st->ready = false;
    if (!read_labels(st, indata[2], intypes[2], B, C)) return kMxFail;
    if (intypes[0] == kFloat32)
      return forward<float>(st, static_cast<float*>(indata[0]), static_cast<float*>(indata[1]),
                            static_cast<float*>(outdata[0]), static_cast<float*>(outdata[1]),
                            B, D, C);
    if (intypes[0] == kFloat64)
      return forward<double>(st, static_cast<double*>(indata[0]),
                             static_cast<double*>(indata[1]), static_cast<double*>(outdata[0]),
                             static_cast<double*>(outdata[1]), B, D, C);
    return kMxFail;
  }
  // backward inputs: grad R, grad z_y, xs, W, labels, R, z_y; outputs: grads of xs, W, labels
  if (num_in != 7 || num_out != 3 || indims[2] != 2 || indims[3] != 2) return kMxFail;
  const int64_t B = inshapes[2][0], D = inshapes[2][1], C = inshapes[3][0];
  if (intypes[2] != st->dtype) return kMxFail;
  if (outdata[2]) {  // labels get no gradient: zero it whatever its type (B values)
    const int lt = outtypes[2];
    std::memset(outdata[2], 0, (lt == kFloat64 || lt == kInt64 ? 8 : 4) * B);
  }
  if (st->dtype == kFloat32)
    return backward<float>(st, static_cast<float*>(indata[0]), static_cast<float*>(indata[1]),
                           static_cast<float*>(indata[2]), static_cast<float*>(indata[3]),
                           static_cast<float*>(outdata[0]), static_cast<float*>(outdata[1]), B,
                           D, C);
  return backward<double>(st, static_cast<double*>(indata[0]), static_cast<double*>(indata[1]),
                          static_cast<double*>(indata[2]), static_cast<double*>(indata[3]),
                          static_cast<double*>(outdata[0]), static_cast<double*>(outdata[1]), B,
                          D, C);
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
