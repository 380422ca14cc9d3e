/* _layers_native: RMSNorm, the SwiGLU gate and RoPE, forward and backward, each in one pass over memory.
 *
 * rms_norm_forward(x, weight, y, inv_rms, rows, dim, eps, bf16, threads) -> None
 *     For row i of x (rows, dim): inv_rms[i] = 1 / sqrt(sum_j x_ij^2 / dim + eps), y_ij = x_ij * inv_rms[i] * w_j.
 * rms_norm_backward(x, weight, inv_rms, grad_y, grad_x, grad_w_parts, rows, dim, bf16, threads) -> None
 *     With h_j = grad_y_ij * w_j and c_i = inv_rms[i]^3 * sum_j h_j x_ij / dim:
 *     grad_x_ij = h_j * inv_rms[i] - x_ij * c_i, and grad_w_j = sum_i grad_y_ij * x_ij * inv_rms[i], accumulated
 *     per range of rows into row `part` of grad_w_parts (threads, dim), which the caller zeroes and sums.
 * swiglu_forward(a, b, out, n, bf16, threads) -> None
 *     out = silu(a) * b = a * sigmoid(a) * b, elementwise.
 * swiglu_backward(a, b, grad_out, grad_a, grad_b, n, bf16, threads) -> None
 *     With s = sigmoid(a): grad_b = grad_out * a * s and grad_a = grad_out * b * s * (1 + a * (1 - s)).
 * rope(x, batch, heads, tokens, dim, stride_b, stride_h, stride_t, cos_sin, out, sign, bf16, threads) -> None
 *     Each pair (x_2i, x_2i+1) of row (b, h, t) of x becomes (x_2i c - x_2i+1 s, x_2i s + x_2i+1 c), with c and s
 *     the cosine and sine of the pair's angle at token t (cos_sin (tokens, dim / 2, 2), float32) and s negated
 *     when sign is -1 (the rotation back: RoPE's backward). x may be any strided view whose last dimension is
 *     contiguous (a slice of the fused qkv projection); out is contiguous (batch, heads, tokens, dim).
 *
 * Buffers are given by address (tensor.data_ptr()) and, but for RoPE's input, contiguous; x, y, grad_y, grad_x, a, b, out and the
 * gradients of a and b are float32 or, with bf16 = 1, bfloat16; weight, inv_rms and grad_w_parts are always
 * float32. Every computation is in float32 and each result is rounded once to the buffer's dtype.
 *
 * Why: as PyTorch operations, RMSNorm's forward is six passes over the activations (square, mean, add, rsqrt,
 * two products) and its backward about ten, and SwiGLU's gate three and seven; autograd also keeps the
 * intermediate tensors. Here a row of RMSNorm (2 KB at d_model 512) is read once and reused from the cache, the
 * gate reads its inputs once per direction, and the saved state is the inputs (plus one float per row). RoPE
 * as PyTorch's complex multiply upcasts bf16 to float32, copies a strided view to contiguous memory, multiplies
 * and rounds back: four passes where the kernel makes one, reading the strided view directly.
 *
 * Shared with the loss's kernel (_vector_math.h): the vectorisable exp, reductions in LANES partial results
 * (the AVX-512, AVX2 and baseline builds give the same bits), and rows split between POSIX threads with the GIL
 * released.
 *
 * Reference: Zhang and Sennrich (2019), RMSNorm; Shazeer (2020), GLU variants; Su et al. (2021), RoPE.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "_vector_math.h"

#define BLOCK 512 /* elements the gate converts to float32 at a time (three 2 KB blocks on the stack) */

/* dst[j] = base[first + j] as float32, j < n: a loop per dtype, each vectorised. */
static inline void load_floats(const void *base, int bf16, int64_t first, float *dst, int64_t n) {
    if (bf16) {
        const uint16_t *src = (const uint16_t *)base + first;
        for (int64_t j = 0; j < n; j++)
            dst[j] = bf16_to_float(src[j]);
    } else {
        memcpy(dst, (const float *)base + first, (size_t)n * sizeof(float));
    }
}

/* base[first + j] = src[j], rounded once to the buffer's dtype. */
static inline void store_floats(void *base, int bf16, int64_t first, const float *src, int64_t n) {
    if (bf16) {
        uint16_t *dst = (uint16_t *)base + first;
        for (int64_t j = 0; j < n; j++)
            dst[j] = float_to_bf16(src[j]);
    } else {
        memcpy((float *)base + first, src, (size_t)n * sizeof(float));
    }
}

static inline float sigmoid(float a) { return 1.0f / (1.0f + exp_f32(-a)); }

/* ----------------------------------------------------------------------------- RMSNorm */

typedef struct {
    const void *x;
    const float *w;
    void *y;             /* forward */
    float *inv_rms;      /* written in forward, read in backward */
    const void *grad_y;  /* backward */
    void *grad_x;
    float *grad_w_parts; /* (ranges, dim) */
    int64_t dim;
    float eps;
    int bf16;
} Norm;

/* sum_j u_j v_j over one row of float32 values, in LANES partial sums. */
static inline float dot(const float *u, const float *v, int64_t n) {
    float part[LANES] = {0};
    int64_t body = n - n % LANES;
    for (int64_t j = 0; j < body; j += LANES)
        for (int l = 0; l < LANES; l++)
            part[l] += u[j + l] * v[j + l];
    for (int64_t j = body; j < n; j++)
        part[0] += u[j] * v[j];
    float s = 0.0f;
    for (int l = 0; l < LANES; l++)
        s += part[l];
    return s;
}

CLONES static void norm_forward_rows(void *context, int64_t begin, int64_t end, int part) {
    const Norm *k = (const Norm *)context;
    const int64_t d = k->dim;
    float row[d > 0 ? d : 1];
    for (int64_t i = begin; i < end; i++) {
        load_floats(k->x, k->bf16, i * d, row, d);
        const float inv = 1.0f / sqrtf(dot(row, row, d) / (float)d + k->eps);
        k->inv_rms[i] = inv;
        for (int64_t j = 0; j < d; j++)
            row[j] = row[j] * inv * k->w[j];
        store_floats(k->y, k->bf16, i * d, row, d);
    }
}

CLONES static void norm_backward_rows(void *context, int64_t begin, int64_t end, int part) {
    const Norm *k = (const Norm *)context;
    const int64_t d = k->dim;
    float row[d > 0 ? d : 1], h[d > 0 ? d : 1];
    float *grad_w = k->grad_w_parts + (int64_t)part * d;
    for (int64_t i = begin; i < end; i++) {
        const float inv = k->inv_rms[i];
        load_floats(k->x, k->bf16, i * d, row, d);
        load_floats(k->grad_y, k->bf16, i * d, h, d);
        for (int64_t j = 0; j < d; j++) {
            grad_w[j] += h[j] * (row[j] * inv);
            h[j] = h[j] * k->w[j];
        }
        const float c = inv * inv * inv * (dot(h, row, d) / (float)d);
        for (int64_t j = 0; j < d; j++)
            h[j] = h[j] * inv - row[j] * c;
        store_floats(k->grad_x, k->bf16, i * d, h, d);
    }
}

/* ----------------------------------------------------------------------------- SwiGLU gate */

typedef struct {
    const void *a, *b;
    void *out;            /* forward */
    const void *grad_out; /* backward */
    void *grad_a, *grad_b;
    int bf16;
} Gate;

CLONES static void gate_forward_range(void *context, int64_t begin, int64_t end, int part) {
    const Gate *k = (const Gate *)context;
    float a[BLOCK], b[BLOCK];
    for (int64_t first = begin; first < end; first += BLOCK) {
        const int64_t n = end - first < BLOCK ? end - first : BLOCK;
        load_floats(k->a, k->bf16, first, a, n);
        load_floats(k->b, k->bf16, first, b, n);
        for (int64_t j = 0; j < n; j++)
            a[j] = a[j] * sigmoid(a[j]) * b[j];
        store_floats(k->out, k->bf16, first, a, n);
    }
}

CLONES static void gate_backward_range(void *context, int64_t begin, int64_t end, int part) {
    const Gate *k = (const Gate *)context;
    float a[BLOCK], b[BLOCK], g[BLOCK];
    for (int64_t first = begin; first < end; first += BLOCK) {
        const int64_t n = end - first < BLOCK ? end - first : BLOCK;
        load_floats(k->a, k->bf16, first, a, n);
        load_floats(k->b, k->bf16, first, b, n);
        load_floats(k->grad_out, k->bf16, first, g, n);
        for (int64_t j = 0; j < n; j++) {
            const float s = sigmoid(a[j]), gb = g[j] * b[j];
            g[j] = g[j] * (a[j] * s);                       /* grad_b */
            b[j] = gb * s * (1.0f + a[j] * (1.0f - s));     /* grad_a */
        }
        store_floats(k->grad_b, k->bf16, first, g, n);
        store_floats(k->grad_a, k->bf16, first, b, n);
    }
}

/* ----------------------------------------------------------------------------- RoPE */

typedef struct {
    const void *x;
    int64_t heads, tokens, dim;     /* x is (batch, heads, tokens, dim) */
    int64_t stride_b, stride_h, stride_t; /* x's strides in elements; its last dimension is contiguous */
    const float *cos_sin;           /* (tokens, dim / 2, 2): cos and sin of each pair's angle */
    void *out;                      /* (batch, heads, tokens, dim), contiguous */
    float sign;                     /* +1 rotates by the angles, -1 by their opposites (the backward) */
    int bf16;
} Rope;

CLONES static void rope_rows(void *context, int64_t begin, int64_t end, int part) {
    const Rope *k = (const Rope *)context;
    const int64_t d = k->dim;
    float row[d > 0 ? d : 1];
    for (int64_t i = begin; i < end; i++) { /* row i = (b, h, t) */
        const int64_t t = i % k->tokens, h = (i / k->tokens) % k->heads, b = i / (k->tokens * k->heads);
        load_floats(k->x, k->bf16, b * k->stride_b + h * k->stride_h + t * k->stride_t, row, d);
        const float *cs = k->cos_sin + t * d;
        for (int64_t j = 0; j < d; j += 2) {
            const float c = cs[j], s = k->sign * cs[j + 1], x0 = row[j], x1 = row[j + 1];
            row[j] = x0 * c - x1 * s;
            row[j + 1] = x0 * s + x1 * c;
        }
        store_floats(k->out, k->bf16, i * d, row, d);
    }
}

/* ----------------------------------------------------------------------------- Python entry points */

static int addresses(PyObject *const *objects, void **out, int count) {
    for (int k = 0; k < count; k++) {
        out[k] = PyLong_AsVoidPtr(objects[k]);
        if (PyErr_Occurred())
            return -1;
        if (!out[k]) {
            PyErr_SetString(PyExc_ValueError, "null buffer address");
            return -1;
        }
    }
    return 0;
}

static PyObject *run(int64_t rows, int64_t row_elements, int threads, RowsBody body, void *context) {
    if (rows <= 0)
        Py_RETURN_NONE;
    int ranges = rows_ranges(rows, row_elements, threads);
    Py_BEGIN_ALLOW_THREADS
    parallel_rows(rows, ranges, body, context);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

#define MAX_DIM (1 << 16) /* a row lives on the stack twice: 512 KB at most */

static int check_dim(long long rows, long long dim) {
    if (rows < 0 || dim < 1 || dim > MAX_DIM) {
        PyErr_Format(PyExc_ValueError, "need rows >= 0 and 1 <= dim <= %d, got %lld and %lld", MAX_DIM, rows, dim);
        return -1;
    }
    return 0;
}

static PyObject *rms_norm_forward(PyObject *module, PyObject *args) {
    PyObject *obj[4];
    long long rows, dim;
    double eps;
    int bf16, threads;
    void *ptr[4];
    if (!PyArg_ParseTuple(args, "OOOOLLdpi", &obj[0], &obj[1], &obj[2], &obj[3], &rows, &dim, &eps, &bf16, &threads))
        return NULL;
    if (check_dim(rows, dim) < 0 || (rows > 0 && addresses(obj, ptr, 4) < 0))
        return NULL;
    if (rows == 0)
        Py_RETURN_NONE;
    Norm k = {ptr[0], ptr[1], ptr[2], ptr[3], NULL, NULL, NULL, dim, (float)eps, bf16};
    return run(rows, dim, threads, norm_forward_rows, &k);
}

static PyObject *rms_norm_backward(PyObject *module, PyObject *args) {
    PyObject *obj[6];
    long long rows, dim;
    int bf16, threads;
    void *ptr[6];
    if (!PyArg_ParseTuple(args, "OOOOOOLLpi", &obj[0], &obj[1], &obj[2], &obj[3], &obj[4], &obj[5], &rows, &dim,
                          &bf16, &threads))
        return NULL;
    if (check_dim(rows, dim) < 0 || (rows > 0 && addresses(obj, ptr, 6) < 0))
        return NULL;
    if (rows == 0)
        Py_RETURN_NONE;
    Norm k = {ptr[0], ptr[1], NULL, ptr[2], ptr[3], ptr[4], ptr[5], dim, 0.0f, bf16};
    return run(rows, dim, threads, norm_backward_rows, &k);
}

static PyObject *swiglu_forward(PyObject *module, PyObject *args) {
    PyObject *obj[3];
    long long n;
    int bf16, threads;
    void *ptr[3];
    if (!PyArg_ParseTuple(args, "OOOLpi", &obj[0], &obj[1], &obj[2], &n, &bf16, &threads))
        return NULL;
    if (n <= 0)
        Py_RETURN_NONE;
    if (addresses(obj, ptr, 3) < 0)
        return NULL;
    Gate k = {ptr[0], ptr[1], ptr[2], NULL, NULL, NULL, bf16};
    return run(n, 1, threads, gate_forward_range, &k);
}

static PyObject *swiglu_backward(PyObject *module, PyObject *args) {
    PyObject *obj[5];
    long long n;
    int bf16, threads;
    void *ptr[5];
    if (!PyArg_ParseTuple(args, "OOOOOLpi", &obj[0], &obj[1], &obj[2], &obj[3], &obj[4], &n, &bf16, &threads))
        return NULL;
    if (n <= 0)
        Py_RETURN_NONE;
    if (addresses(obj, ptr, 5) < 0)
        return NULL;
    Gate k = {ptr[0], ptr[1], NULL, ptr[2], ptr[3], ptr[4], bf16};
    return run(n, 1, threads, gate_backward_range, &k);
}

static PyObject *rope(PyObject *module, PyObject *args) {
    PyObject *obj[3];
    long long batch, heads, tokens, dim, sb, sh, st;
    double sign;
    int bf16, threads;
    void *ptr[3];
    if (!PyArg_ParseTuple(args, "OLLLLLLLOOdpi", &obj[0], &batch, &heads, &tokens, &dim, &sb, &sh, &st, &obj[1],
                          &obj[2], &sign, &bf16, &threads))
        return NULL;
    if (batch < 0 || heads < 0 || tokens < 0 || dim < 2 || dim % 2 || dim > MAX_DIM) {
        PyErr_Format(PyExc_ValueError, "need an even 2 <= dim <= %d and no negative size, got dim %lld", MAX_DIM, dim);
        return NULL;
    }
    const int64_t rows = batch * heads * tokens;
    if (rows == 0)
        Py_RETURN_NONE;
    if (addresses(obj, ptr, 3) < 0)
        return NULL;
    Rope k = {ptr[0], heads, tokens, dim, sb, sh, st, ptr[1], ptr[2], (float)sign, bf16};
    return run(rows, dim, threads, rope_rows, &k);
}

static PyMethodDef module_methods[] = {
    {"rope", rope, METH_VARARGS,
     "rope(x, batch, heads, tokens, dim, stride_b, stride_h, stride_t, cos_sin, out, sign, bf16, threads): rotate "
     "the pairs (2i, 2i+1) of every row of x by the angles (sign +1) or their opposites (-1) into a contiguous out"},
    {"rms_norm_forward", rms_norm_forward, METH_VARARGS,
     "rms_norm_forward(x, weight, y, inv_rms, rows, dim, eps, bf16, threads): y = x / rms(x) * weight, row by row"},
    {"rms_norm_backward", rms_norm_backward, METH_VARARGS,
     "rms_norm_backward(x, weight, inv_rms, grad_y, grad_x, grad_w_parts, rows, dim, bf16, threads)"},
    {"swiglu_forward", swiglu_forward, METH_VARARGS, "swiglu_forward(a, b, out, n, bf16, threads): silu(a) * b"},
    {"swiglu_backward", swiglu_backward, METH_VARARGS,
     "swiglu_backward(a, b, grad_out, grad_a, grad_b, n, bf16, threads)"},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_layers_native", "RMSNorm and the SwiGLU gate over CPU tensors, in C.", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__layers_native(void) { return PyModule_Create(&module_def); }
