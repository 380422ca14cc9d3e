/* _adamw_native: one AdamW update of many float32 tensors in a single pass over memory.
 *
 * step(params, grads, exp_avgs, exp_avg_sqs, numels, step_sizes, bias2_sqrts,
 *      decay, beta1, beta2, eps, threads) -> None
 *
 * - the first five arguments are sequences of the same length: the addresses of contiguous float32 buffers
 *   (tensor.data_ptr()) and their element counts; tensor i's parameter, moments and gradient are read once
 *   and the first three written back in place;
 * - step_sizes[i] = -lr / (1 - beta1^t_i) and bias2_sqrts[i] = sqrt(1 - beta2^t_i) (t_i: tensor i's step
 *   count after this update); decay = 1 - lr * weight_decay (1.0 when there is no decay: x * 1 == x);
 * - every double is rounded to float32 first, as PyTorch rounds a Python scalar for a float32 tensor.
 *
 * Each element goes through the operations of the per-tensor loop in optimizer.py, in its order and with
 * its roundings, written as PyTorch's CPU kernels compute them:
 *
 *     p = p * decay
 *     m = fma(w, g - m, m)               lerp_(g, w), w = 1 - beta1 < 0.5  (else fma(w - 1, g - m, g))
 *     v = v * beta2
 *     v = fma(c * g, g, v)              addcmul_(g, g, value=c), c = 1 - beta2
 *     d = sqrt(v) / bias2_sqrt + eps
 *     p = p + (step_size * m) / d       addcdiv_(m, d, value=step_size)
 *
 * The file is compiled as ISO C (-std=c11), where GCC contracts no a * b + c into an FMA on its own, so the
 * only fused operations are the two fmaf calls above. The kernel exists in three builds (AVX-512, AVX2+FMA,
 * baseline x86-64/other) picked once at import from what the CPU supports (isa(), use_isa()); all three
 * compute the same correctly rounded operations, so they give the same bits. The elements of the whole list are split into
 * `threads` equal ranges when there are enough of them to repay a thread: on torch's OpenMP threads when built
 * with -fopenmp (setup.py asks for it), else on POSIX threads started for the call; the GIL is released while
 * they run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MIN_ELEMENTS_PER_THREAD (1 << 16) /* below this, one more thread costs more than it saves */
#define MAX_THREADS 64
#define ALIGN_ELEMENTS 16 /* thread ranges start on 64-byte boundaries of the flattened list */

typedef struct {
    float *p;
    const float *g;
    float *m;
    float *v;
    int64_t n;
    float step_size;
    float bias2_sqrt;
} Tensor;

typedef struct {
    float decay, w, beta2, c, eps;
    int small_weight; /* |w| < 0.5: lerp from the start, else from the end (PyTorch's choice) */
} Hyper;

/* The update of one contiguous run of elements, defined once per instruction set below. */
#define UPDATE_BODY                                                                                           \
    {                                                                                                         \
        const float decay = h->decay, w = h->w, beta2 = h->beta2, c = h->c, eps = h->eps;                    \
        const float w1 = w - 1.0f;                                                                            \
        if (h->small_weight) {                                                                                \
            for (int64_t i = 0; i < n; i++) {                                                                 \
                const float gi = g[i];                                                                        \
                const float mi = fmaf(w, gi - m[i], m[i]);                                                    \
                const float vi = fmaf(c * gi, gi, v[i] * beta2);                                              \
                const float d = sqrtf(vi) / bias2_sqrt + eps;                                                 \
                p[i] = p[i] * decay + (step_size * mi) / d;                                                   \
                m[i] = mi;                                                                                    \
                v[i] = vi;                                                                                    \
            }                                                                                                 \
        } else {                                                                                              \
            for (int64_t i = 0; i < n; i++) {                                                                 \
                const float gi = g[i];                                                                        \
                const float mi = fmaf(w1, gi - m[i], gi);                                                     \
                const float vi = fmaf(c * gi, gi, v[i] * beta2);                                              \
                const float d = sqrtf(vi) / bias2_sqrt + eps;                                                 \
                p[i] = p[i] * decay + (step_size * mi) / d;                                                   \
                m[i] = mi;                                                                                    \
                v[i] = vi;                                                                                    \
            }                                                                                                 \
        }                                                                                                     \
    }

#define UPDATE_PARAMS                                                                                         \
    (float *restrict p, const float *restrict g, float *restrict m, float *restrict v, int64_t n,            \
     float step_size, float bias2_sqrt, const Hyper *h)

typedef void (*update_fn) UPDATE_PARAMS;

static void update_baseline UPDATE_PARAMS UPDATE_BODY

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define HAVE_X86_BUILDS 1
__attribute__((target("avx2,fma"))) static void update_avx2 UPDATE_PARAMS UPDATE_BODY
__attribute__((target("avx512f,avx512vl,fma"))) static void update_avx512 UPDATE_PARAMS UPDATE_BODY
#endif

typedef struct {
    const char *name;
    update_fn fn;
    int supported;
} Build;

/* Best first; `supported` is filled in at import. */
static Build builds[] = {
#ifdef HAVE_X86_BUILDS
    {"avx512", update_avx512, 0},
    {"avx2", update_avx2, 0},
#endif
    {"baseline", update_baseline, 1},
};
#define NBUILDS ((int)(sizeof(builds) / sizeof(builds[0])))

static update_fn update = update_baseline;
static const char *update_isa = "baseline";

static void pick_update(void) {
#ifdef HAVE_X86_BUILDS
    __builtin_cpu_init();
    builds[0].supported = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("fma");
    builds[1].supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    for (int i = 0; i < NBUILDS; i++) {
        if (builds[i].supported) {
            update = builds[i].fn;
            update_isa = builds[i].name;
            break;
        }
    }
}

typedef struct {
    const Tensor *tensors;
    Py_ssize_t count;
    int64_t begin, end; /* a range of the flattened elements of all tensors */
    const Hyper *h;
} Share;

static void run_share(const Share *s) {
    int64_t offset = 0; /* flattened index of the current tensor's first element */
    for (Py_ssize_t i = 0; i < s->count && offset < s->end; i++) {
        const Tensor *t = &s->tensors[i];
        int64_t lo = s->begin > offset ? s->begin - offset : 0;
        int64_t hi = s->end - offset < t->n ? s->end - offset : t->n;
        if (lo < hi)
            update(t->p + lo, t->g + lo, t->m + lo, t->v + lo, hi - lo, t->step_size, t->bias2_sqrt, s->h);
        offset += t->n;
    }
}

#ifndef _OPENMP
static void *thread_main(void *arg) {
    run_share((const Share *)arg);
    return NULL;
}
#endif

/* Run the update over every tensor on `threads` threads (this one included); 0 on success. */
static int run_all(const Tensor *tensors, Py_ssize_t count, int64_t total, int threads, const Hyper *h) {
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if ((int64_t)threads * MIN_ELEMENTS_PER_THREAD > total)
        threads = (int)(total / MIN_ELEMENTS_PER_THREAD);
    if (threads < 1)
        threads = 1;
    Share shares[MAX_THREADS];
    int64_t per = (total + threads - 1) / threads;
    per = (per + ALIGN_ELEMENTS - 1) / ALIGN_ELEMENTS * ALIGN_ELEMENTS;
    for (int k = 0; k < threads; k++) {
        int64_t begin = per * k < total ? per * k : total;
        int64_t end = per * (k + 1) < total ? per * (k + 1) : total;
        shares[k] = (Share){tensors, count, begin, end, h};
    }
#ifdef _OPENMP
    /* torch's own OpenMP runtime: its worker threads are already running (spinning after torch's last parallel
     * region), so they take a share at once, where threads of our own would compete with them for the cores */
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int k = 0; k < threads; k++)
        run_share(&shares[k]);
#else
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int k = 1; k < threads; k++)
        started[k] = pthread_create(&ids[k], NULL, thread_main, &shares[k]) == 0;
    run_share(&shares[0]);
    for (int k = 1; k < threads; k++) {
        if (started[k])
            pthread_join(ids[k], NULL);
        else
            run_share(&shares[k]); /* no thread could be started: do its share here */
    }
#endif
    return 0;
}

/* Item i of a fast sequence as an address (NULL with an exception set if it is not an int). */
static void *address_at(PyObject *seq, Py_ssize_t i) { return PyLong_AsVoidPtr(PySequence_Fast_GET_ITEM(seq, i)); }

static PyObject *step(PyObject *module, PyObject *args) {
    PyObject *lists[7];
    double decay, beta1, beta2, eps;
    int threads;
    if (!PyArg_ParseTuple(args, "OOOOOOOddddi", &lists[0], &lists[1], &lists[2], &lists[3], &lists[4], &lists[5],
                          &lists[6], &decay, &beta1, &beta2, &eps, &threads))
        return NULL;
    static const char *names[7] = {"params", "grads", "exp_avgs", "exp_avg_sqs", "numels", "step_sizes",
                                   "bias2_sqrts"};
    PyObject *seqs[7] = {NULL};
    Tensor *tensors = NULL;
    PyObject *result = NULL;
    Py_ssize_t count = -1;
    for (int k = 0; k < 7; k++) {
        seqs[k] = PySequence_Fast(lists[k], names[k]);
        if (!seqs[k])
            goto done;
        Py_ssize_t len = PySequence_Fast_GET_SIZE(seqs[k]);
        if (count >= 0 && len != count) {
            PyErr_Format(PyExc_ValueError, "%s has %zd items, params has %zd", names[k], len, count);
            goto done;
        }
        count = len;
    }
    tensors = PyMem_Calloc(count ? count : 1, sizeof(Tensor));
    if (!tensors) {
        PyErr_NoMemory();
        goto done;
    }
    int64_t total = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        Tensor *t = &tensors[i];
        t->p = address_at(seqs[0], i);
        t->g = address_at(seqs[1], i);
        t->m = address_at(seqs[2], i);
        t->v = address_at(seqs[3], i);
        t->n = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seqs[4], i));
        t->step_size = (float)PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seqs[5], i));
        t->bias2_sqrt = (float)PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seqs[6], i));
        if (PyErr_Occurred())
            goto done;
        if (t->n < 0 || (t->n > 0 && (!t->p || !t->g || !t->m || !t->v))) {
            PyErr_Format(PyExc_ValueError, "tensor %zd: null address or negative element count", i);
            goto done;
        }
        total += t->n;
    }
    const float w = (float)(1.0 - beta1);
    Hyper h = {(float)decay, w, (float)beta2, (float)(1.0 - beta2), (float)eps, fabsf(w) < 0.5f};
    Py_BEGIN_ALLOW_THREADS
    run_all(tensors, count, total, threads, &h);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    for (int k = 0; k < 7; k++)
        Py_XDECREF(seqs[k]);
    PyMem_Free(tensors);
    return result;
}

/* use_isa(name) -> previous name: run another build this CPU supports (tests compare their results). */
static PyObject *use_isa(PyObject *module, PyObject *arg) {
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name)
        return NULL;
    for (int i = 0; i < NBUILDS; i++) {
        if (strcmp(builds[i].name, name) == 0 && builds[i].supported) {
            PyObject *previous = PyUnicode_FromString(update_isa);
            update = builds[i].fn;
            update_isa = builds[i].name;
            return previous;
        }
    }
    return PyErr_Format(PyExc_ValueError, "no build %s for this CPU", name);
}

static PyObject *isa(PyObject *module, PyObject *unused) { return PyUnicode_FromString(update_isa); }

static PyObject *supported_isas(PyObject *module, PyObject *unused) {
    PyObject *out = PyList_New(0);
    for (int i = 0; out && i < NBUILDS; i++) {
        if (!builds[i].supported)
            continue;
        PyObject *name = PyUnicode_FromString(builds[i].name);
        if (!name || PyList_Append(out, name) < 0)
            Py_CLEAR(out);
        Py_XDECREF(name);
    }
    return out;
}

static PyMethodDef module_methods[] = {
    {"isa", isa, METH_NOARGS, "isa() -> the build that runs: 'avx512', 'avx2' or 'baseline'"},
    {"supported_isas", supported_isas, METH_NOARGS, "supported_isas() -> the builds this CPU can run, best first"},
    {"use_isa", use_isa, METH_O, "use_isa(name) -> previous: run another supported build"},
    {"step", step, METH_VARARGS,
     "step(params, grads, exp_avgs, exp_avg_sqs, numels, step_sizes, bias2_sqrts, decay, beta1, beta2, eps, "
     "threads): one AdamW update of contiguous float32 buffers given by address, in place"},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_adamw_native", "AdamW's update of float32 tensors in one pass, in C.", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__adamw_native(void) {
    pick_update();
    return PyModule_Create(&module_def);
}
