/* _bpe_count: the hot loop of BPE training, pre-tokenize raw UTF-8 bytes and count distinct pre-tokens.
 *
 * PretokenCounter.feed(buffer, classes) walks the buffer with pt_next() (pretok.h, identical to the
 * regex oracle) and counts each pre-token's bytes in an open-addressing hash table (word-at-a-time hash,
 * linear probing, keys copied into one growing arena; each slot keeps the key's first 8 bytes, so
 * short keys, most pre-tokens, compare without touching the arena). Python sees the result once, as a dict, via
 * .to_dict(): creating a bytes object per pre-token *occurrence* is what makes the Python path slow,
 * here it is one per *distinct* pre-token. Counts are 64-bit. Memory is proportional to the number
 * of distinct pre-tokens, not to the input size.
 *
 * pretokenize(buffer, classes) -> list[bytes] exposes pt_next for the equivalence tests.
 * The pure-Python fallback (regex + Counter) in counting.py gives identical results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "pretok.h"

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(addr) __builtin_prefetch(addr)
#else
#define PREFETCH(addr) ((void)0)
#endif

typedef struct {
    uint64_t prefix;   /* the first (up to) 8 key bytes, zero padded: most keys compare without the arena */
    uint64_t count;
    Py_ssize_t offset; /* into the arena; -1 = empty slot */
    uint32_t length;
    uint32_t hash32;   /* high bits of the hash, to rebuild and to reject most mismatches */
} Slot;

typedef struct {
    PyObject_HEAD
    Slot *slots;
    Py_ssize_t capacity; /* power of two */
    Py_ssize_t used;
    char *arena;
    Py_ssize_t arena_len, arena_cap;
    uint64_t total; /* pre-token occurrences */
} Counter;

static inline uint64_t load_upto8(const unsigned char *s, Py_ssize_t n) {
    uint64_t v = 0;
    memcpy(&v, s, (size_t)(n < 8 ? n : 8));
    return v;
}

/* Word-at-a-time hash (most pre-tokens fit in one or two words). */
static inline uint64_t key_hash(const unsigned char *s, Py_ssize_t n, uint64_t prefix) {
    uint64_t h = prefix ^ ((uint64_t)n * 0x9e3779b97f4a7c15ULL);
    for (Py_ssize_t i = 8; i < n; i += 8)
        h = (h ^ pt_mix64(h)) + load_upto8(s + i, n - i) * 0x9e3779b97f4a7c15ULL;
    return pt_mix64(h);
}

static int counter_alloc(Counter *self, Py_ssize_t capacity) {
    Slot *slots = PyMem_RawMalloc(sizeof(Slot) * capacity);
    if (!slots)
        return -1;
    for (Py_ssize_t i = 0; i < capacity; i++)
        slots[i].offset = -1;
    self->slots = slots;
    self->capacity = capacity;
    return 0;
}

static int counter_grow(Counter *self) {
    Slot *old = self->slots;
    Py_ssize_t old_cap = self->capacity;
    if (counter_alloc(self, old_cap * 2) < 0) {
        self->slots = old;
        return -1;
    }
    Py_ssize_t mask = self->capacity - 1;
    for (Py_ssize_t i = 0; i < old_cap; i++) {
        if (old[i].offset < 0)
            continue;
        const unsigned char *key = (const unsigned char *)self->arena + old[i].offset;
        Py_ssize_t j = (Py_ssize_t)(key_hash(key, old[i].length, old[i].prefix) & (uint64_t)mask);
        while (self->slots[j].offset >= 0)
            j = (j + 1) & mask;
        self->slots[j] = old[i];
    }
    PyMem_RawFree(old);
    return 0;
}

/* Returns -1 when out of memory (sets no Python error: it runs without the GIL). */
static int counter_add_hashed(Counter *self, const unsigned char *s, Py_ssize_t n, uint64_t times, uint64_t prefix,
                              uint64_t h) {
    uint32_t h32 = (uint32_t)(h >> 32);
    Py_ssize_t mask = self->capacity - 1;
    Py_ssize_t j = (Py_ssize_t)(h & (uint64_t)mask);
    for (;;) {
        Slot *slot = &self->slots[j];
        if (slot->offset < 0)
            break;
        if (slot->hash32 == h32 && slot->prefix == prefix && slot->length == (uint32_t)n &&
            (n <= 8 || memcmp(self->arena + slot->offset + 8, s + 8, (size_t)(n - 8)) == 0)) {
            slot->count += times;
            return 0;
        }
        j = (j + 1) & mask;
    }
    if (n > UINT32_MAX)
        return -1;
    if (self->arena_len + n > self->arena_cap) {
        Py_ssize_t cap = self->arena_cap ? self->arena_cap : 1 << 20;
        while (self->arena_len + n > cap)
            cap *= 2;
        char *arena = PyMem_RawRealloc(self->arena, cap);
        if (!arena)
            return -1;
        self->arena = arena;
        self->arena_cap = cap;
    }
    memcpy(self->arena + self->arena_len, s, n);
    Slot *slot = &self->slots[j];
    slot->prefix = prefix;
    slot->hash32 = h32;
    slot->count = times;
    slot->offset = self->arena_len;
    slot->length = (uint32_t)n;
    self->arena_len += n;
    self->used++;
    if (self->used * 2 > self->capacity && counter_grow(self) < 0)
        return -1;
    return 0;
}

static inline int counter_add(Counter *self, const unsigned char *s, Py_ssize_t n, uint64_t times) {
    uint64_t prefix = load_upto8(s, n);
    return counter_add_hashed(self, s, n, times, prefix, key_hash(s, n, prefix));
}

static int Counter_init(Counter *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "", kwlist))
        return -1;
    if (counter_alloc(self, 1 << 16) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void Counter_dealloc(Counter *self) {
    PyMem_RawFree(self->slots);
    PyMem_RawFree(self->arena);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int get_classes(PyObject *obj, Py_buffer *view) {
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0)
        return -1;
    if (view->len != 0x110000) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "classes must be char_class_table() (0x110000 bytes)");
        return -1;
    }
    return 0;
}

/* Parse (buffer, classes) arguments; on success both buffers must be released by the caller. */
static int parse_data_and_classes(PyObject *args, Py_buffer *data, Py_buffer *classes) {
    PyObject *classes_obj;
    if (!PyArg_ParseTuple(args, "y*O", data, &classes_obj))
        return -1;
    if (get_classes(classes_obj, classes) < 0) {
        PyBuffer_Release(data);
        return -1;
    }
    return 0;
}

static PyObject *Counter_feed(Counter *self, PyObject *args) {
    Py_buffer data, classes;
    if (parse_data_and_classes(args, &data, &classes) < 0)
        return NULL;
    const unsigned char *s = data.buf;
    const uint8_t *table = classes.buf;
    Py_ssize_t n = data.len, i = 0;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    /* Software pipelining: the table probe is a likely cache miss, so the next pre-token is found and
     * hashed, and its slot prefetched, before the current one is counted. */
    Py_ssize_t j = n > 0 ? pt_next(s, n, 0, table) : 0;
    uint64_t prefix = n > 0 ? load_upto8(s, j) : 0;
    uint64_t h = n > 0 ? key_hash(s, j, prefix) : 0;
    while (i < n) {
        Py_ssize_t k = n, ln = 0;
        uint64_t prefix2 = 0, h2 = 0;
        if (j < n) {
            k = pt_next(s, n, j, table);
            ln = k - j;
            prefix2 = load_upto8(s + j, ln);
            h2 = key_hash(s + j, ln, prefix2);
            PREFETCH(&self->slots[h2 & (uint64_t)(self->capacity - 1)]);
        }
        if (counter_add_hashed(self, s + i, j - i, 1, prefix, h) < 0) {
            failed = 1;
            break;
        }
        self->total++;
        i = j;
        j = k;
        prefix = prefix2;
        h = h2;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&classes);
    if (failed)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Counter_to_dict(Counter *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = PyDict_New();
    if (!out)
        return NULL;
    for (Py_ssize_t i = 0; i < self->capacity; i++) {
        Slot *slot = &self->slots[i];
        if (slot->offset < 0)
            continue;
        PyObject *key = PyBytes_FromStringAndSize(self->arena + slot->offset, slot->length);
        PyObject *val = PyLong_FromUnsignedLongLong(slot->count);
        if (!key || !val || PyDict_SetItem(out, key, val) < 0) {
            Py_XDECREF(key);
            Py_XDECREF(val);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(key);
        Py_DECREF(val);
    }
    return out;
}

static PyObject *Counter_update(Counter *self, PyObject *arg) {
    /* Add a {bytes: count} mapping (another worker's result) into this table. */
    if (!PyDict_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "update() needs a dict of bytes -> int");
        return NULL;
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(arg, &pos, &key, &value)) {
        if (!PyBytes_Check(key)) {
            PyErr_SetString(PyExc_TypeError, "update() keys must be bytes");
            return NULL;
        }
        unsigned long long times = PyLong_AsUnsignedLongLong(value);
        if (times == (unsigned long long)-1 && PyErr_Occurred())
            return NULL;
        if (counter_add(self, (const unsigned char *)PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), times) < 0)
            return PyErr_NoMemory();
        self->total += times;
    }
    Py_RETURN_NONE;
}

static PyObject *Counter_distinct(Counter *self, void *closure) { return PyLong_FromSsize_t(self->used); }
static PyObject *Counter_total(Counter *self, void *closure) { return PyLong_FromUnsignedLongLong(self->total); }
static PyObject *Counter_nbytes(Counter *self, void *closure) {
    return PyLong_FromSsize_t(self->capacity * (Py_ssize_t)sizeof(Slot) + self->arena_cap);
}

static PyMethodDef Counter_methods[] = {
    {"feed", (PyCFunction)Counter_feed, METH_VARARGS, "feed(buffer, classes): count the pre-tokens of raw bytes"},
    {"to_dict", (PyCFunction)Counter_to_dict, METH_NOARGS, "the counts as {bytes: int}"},
    {"update", (PyCFunction)Counter_update, METH_O, "update(dict): add another {bytes: int} count"},
    {NULL},
};

static PyGetSetDef Counter_getset[] = {
    {"distinct", (getter)Counter_distinct, NULL, "number of distinct pre-tokens", NULL},
    {"total", (getter)Counter_total, NULL, "number of pre-token occurrences", NULL},
    {"nbytes", (getter)Counter_nbytes, NULL, "bytes held by the table and its arena", NULL},
    {NULL},
};

static PyTypeObject CounterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cs336_basics.tokenizer._bpe_count.PretokenCounter",
    .tp_basicsize = sizeof(Counter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Counter_init,
    .tp_dealloc = (destructor)Counter_dealloc,
    .tp_methods = Counter_methods,
    .tp_getset = Counter_getset,
    .tp_doc = "Pre-tokenize raw UTF-8 bytes with the GPT-2 pattern and count distinct pre-tokens.",
};

static PyObject *pretokenize(PyObject *module, PyObject *args) {
    Py_buffer data, classes;
    if (parse_data_and_classes(args, &data, &classes) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    const unsigned char *s = data.buf;
    Py_ssize_t n = data.len, i = 0;
    while (out && i < n) {
        Py_ssize_t j = pt_next(s, n, i, classes.buf);
        PyObject *tok = PyBytes_FromStringAndSize((const char *)s + i, j - i);
        if (!tok || PyList_Append(out, tok) < 0) {
            Py_XDECREF(tok);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(tok);
        i = j;
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&classes);
    return out;
}

static PyMethodDef module_methods[] = {
    {"pretokenize", pretokenize, METH_VARARGS, "pretokenize(buffer, classes) -> list[bytes] (GPT-2 pattern)"},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_bpe_count", "GPT-2 pre-tokenization and pre-token counting in C.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__bpe_count(void) {
    if (PyType_Ready(&CounterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    Py_INCREF(&CounterType);
    if (PyModule_AddObject(m, "PretokenCounter", (PyObject *)&CounterType) < 0) {
        Py_DECREF(&CounterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
