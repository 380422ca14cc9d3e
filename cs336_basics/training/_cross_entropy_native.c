/* _cross_entropy_native: cross-entropy over float32 or bfloat16 logits, forward and backward, one row at a time.
 *
 * forward(logits, bf16, rows, vocab, targets, maxes, sums, losses, threads) -> None
 *     For row i of the (rows, vocab) logits z:  maxes[i] = max_j z_ij,  sums[i] = sum_j exp(z_ij - maxes[i]),
 *     losses[i] = maxes[i] + log(sums[i]) - z_i,targets[i].
 * backward(logits, bf16, rows, vocab, targets, maxes, sums, scale, grad, threads) -> None
 *     grad_ij = exp(z_ij - maxes[i]) * (scale / sums[i]) - scale * [j == targets[i]]: the closed-form gradient
 *     (softmax minus one-hot) times `scale` (the loss's upstream gradient over the row count), written in the
 *     logits' dtype.
 *
 * The buffers are given by address (tensor.data_ptr()): logits and grad are contiguous (rows, vocab) float32 or,
 * with bf16 = 1, bfloat16 (stored as the top 16 bits of a float32); targets are int64; maxes, sums and losses are
 * float32 (rows,). A target outside [0, vocab) raises ValueError before anything is written.
 *
 * Why it is faster than the same maths in PyTorch ops: each op of the PyTorch form (upcast, max, subtract, exp,
 * sum, gather; in backward upcast, subtract, exp, scale, scatter, downcast) is a pass over the whole (rows, vocab)
 * matrix, 160 MB in float32 at the assignment's shape. Here a row (40 KB at vocab 10,000) is read from memory
 * once per direction and every further pass over it hits the cache; the backward writes each gradient once.
 *
 * Every computation is in float32, with the shared pieces of ../model/_vector_math.h: its vectorisable exp
 * (a few ulps; PyTorch's is about one), reductions in LANES partial results (so the AVX-512, AVX2 and baseline
 * builds give the same bits), rows split between `threads` POSIX threads with the GIL released.
 *
 * Reference: the softmax/cross-entropy gradient, e.g. Goodfellow et al., Deep Learning (2016), section 6.2.2.3.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>

#include "../model/_vector_math.h"

/* ----------------------------------------------------------------------------- one row */

CLONES static void to_float(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t j = 0; j < n; j++)
        dst[j] = bf16_to_float(src[j]);
}

CLONES static void to_bf16(const float *src, uint16_t *dst, int64_t n) {
    for (int64_t j = 0; j < n; j++)
        dst[j] = float_to_bf16(src[j]);
}

/* max_j z_j, NaN ignored (a NaN still reaches the sum through exp, and so the loss). */
CLONES static float row_max(const float *z, int64_t n) {
    float part[LANES];
    for (int l = 0; l < LANES; l++)
        part[l] = -INFINITY;
    int64_t body = n - n % LANES;
    for (int64_t j = 0; j < body; j += LANES)
        for (int l = 0; l < LANES; l++)
            part[l] = z[j + l] > part[l] ? z[j + l] : part[l];
    for (int64_t j = body; j < n; j++)
        part[0] = z[j] > part[0] ? z[j] : part[0];
    float m = part[0];
    for (int l = 1; l < LANES; l++)
        m = part[l] > m ? part[l] : m;
    return m;
}

/* sum_j exp(z_j - m). */
CLONES static float row_exp_sum(const float *z, int64_t n, float m) {
    float part[LANES] = {0};
    int64_t body = n - n % LANES;
    for (int64_t j = 0; j < body; j += LANES)
        for (int l = 0; l < LANES; l++)
            part[l] += exp_f32(z[j + l] - m);
    for (int64_t j = body; j < n; j++)
        part[0] += exp_f32(z[j] - m);
    float s = 0.0f;
    for (int l = 0; l < LANES; l++)
        s += part[l];
    return s;
}

/* out_j = exp(z_j - m) * factor (out may be z itself). */
CLONES static void row_scaled_exp(const float *z, float *out, int64_t n, float m, float factor) {
    for (int64_t j = 0; j < n; j++)
        out[j] = exp_f32(z[j] - m) * factor;
}

/* ----------------------------------------------------------------------------- rows split between threads */

typedef struct {
    const void *logits;
    int bf16;
    int64_t vocab;
    const int64_t *targets;
    float *maxes, *sums, *losses; /* forward writes all three; backward reads the first two */
    float scale;                  /* backward */
    void *grad;                   /* backward; NULL in forward */
} Job;

typedef struct {
    const Job *job;
    int failed[MAX_THREADS]; /* a range found no memory for its scratch row: the caller raises MemoryError */
} Run;

static void run_rows(void *context, int64_t begin, int64_t end, int part) {
    Run *run = (Run *)context;
    const Job *job = run->job;
    const int64_t v = job->vocab;
    float *scratch = job->bf16 ? malloc((size_t)v * sizeof(float)) : NULL;
    if (job->bf16 && !scratch) {
        run->failed[part] = 1;
        return;
    }
    for (int64_t i = begin; i < end; i++) {
        const float *z;
        if (job->bf16) {
            to_float((const uint16_t *)job->logits + i * v, scratch, v);
            z = scratch;
        } else {
            z = (const float *)job->logits + i * v;
        }
        const int64_t t = job->targets[i];
        if (!job->grad) {
            const float m = row_max(z, v);
            const float sum = row_exp_sum(z, v, m);
            job->maxes[i] = m;
            job->sums[i] = sum;
            job->losses[i] = (logf(sum) + m) - z[t];
        } else {
            const float scale = job->scale, factor = scale / job->sums[i], zt = z[t]; /* z may be overwritten */
            float *g = job->bf16 ? scratch : (float *)job->grad + i * v;
            row_scaled_exp(z, g, v, job->maxes[i], factor);
            g[t] = exp_f32(zt - job->maxes[i]) * factor + (-scale);
            if (job->bf16)
                to_bf16(scratch, (uint16_t *)job->grad + i * v, v);
        }
    }
    free(scratch);
}

/* ----------------------------------------------------------------------------- Python entry points */

/* Check the shared arguments; 0 on success, -1 with an exception set. */
static int check_job(Job *job, int64_t rows) {
    if (rows < 0 || job->vocab < 1) {
        PyErr_Format(PyExc_ValueError, "need rows >= 0 and vocab >= 1, got %lld and %lld", (long long)rows,
                     (long long)job->vocab);
        return -1;
    }
    if (rows > 0 && (!job->logits || !job->targets || !job->maxes || !job->sums)) {
        PyErr_SetString(PyExc_ValueError, "null buffer address");
        return -1;
    }
    for (int64_t i = 0; i < rows; i++) {
        if (job->targets[i] < 0 || job->targets[i] >= job->vocab) {
            PyErr_Format(PyExc_ValueError, "target %lld of row %lld is outside the vocabulary [0, %lld)",
                         (long long)job->targets[i], (long long)i, (long long)job->vocab);
            return -1;
        }
    }
    return 0;
}

static PyObject *run_job(Job *job, int64_t rows, int threads) {
    if (check_job(job, rows) < 0)
        return NULL;
    Run run = {job, {0}};
    int ranges = rows_ranges(rows, job->vocab, threads), failed = 0;
    Py_BEGIN_ALLOW_THREADS
    parallel_rows(rows, ranges, run_rows, &run);
    Py_END_ALLOW_THREADS
    for (int k = 0; k < ranges; k++)
        failed |= run.failed[k];
    if (failed)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *forward(PyObject *module, PyObject *args) {
    PyObject *logits, *targets, *maxes, *sums, *losses;
    int bf16, threads;
    long long rows, vocab;
    if (!PyArg_ParseTuple(args, "OpLLOOOOi", &logits, &bf16, &rows, &vocab, &targets, &maxes, &sums, &losses,
                          &threads))
        return NULL;
    Job job = {PyLong_AsVoidPtr(logits), bf16, vocab, PyLong_AsVoidPtr(targets), PyLong_AsVoidPtr(maxes),
               PyLong_AsVoidPtr(sums), PyLong_AsVoidPtr(losses), 0.0f, NULL};
    if (PyErr_Occurred())
        return NULL;
    if (rows > 0 && !job.losses) {
        PyErr_SetString(PyExc_ValueError, "null buffer address");
        return NULL;
    }
    return run_job(&job, rows, threads);
}

static PyObject *backward(PyObject *module, PyObject *args) {
    PyObject *logits, *targets, *maxes, *sums, *grad;
    int bf16, threads;
    long long rows, vocab;
    double scale;
    if (!PyArg_ParseTuple(args, "OpLLOOOdOi", &logits, &bf16, &rows, &vocab, &targets, &maxes, &sums, &scale, &grad,
                          &threads))
        return NULL;
    Job job = {PyLong_AsVoidPtr(logits), bf16, vocab, PyLong_AsVoidPtr(targets), PyLong_AsVoidPtr(maxes),
               PyLong_AsVoidPtr(sums), NULL, (float)scale, PyLong_AsVoidPtr(grad)};
    if (PyErr_Occurred())
        return NULL;
    if (rows > 0 && !job.grad) {
        PyErr_SetString(PyExc_ValueError, "null buffer address");
        return NULL;
    }
    return run_job(&job, rows, threads);
}

static PyMethodDef module_methods[] = {
    {"forward", forward, METH_VARARGS,
     "forward(logits, bf16, rows, vocab, targets, maxes, sums, losses, threads): row maxima, sums of exponentials "
     "and per-row losses of (rows, vocab) logits, buffers given by address"},
    {"backward", backward, METH_VARARGS,
     "backward(logits, bf16, rows, vocab, targets, maxes, sums, scale, grad, threads): (softmax - one-hot) * "
     "scale into grad, in the logits' dtype"},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_cross_entropy_native", "Cross-entropy forward and backward over CPU logits, in C.", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__cross_entropy_native(void) { return PyModule_Create(&module_def); }
