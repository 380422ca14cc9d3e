/* _encode_native.c: the hot path of byte-level BPE encoding, in C.
 *
 * Encoder(byte_ids, merges, classes) holds
 *   - a pair table (left id, right id) -> (rank, merged id), open addressing;
 *   - a pre-token cache: pre-token bytes -> ids, in fixed arenas allocated up front (cleared when full),
 *     so encoding never grows memory after construction;
 *   - the character-class table of pretokenize.char_class_table(), for pretok.h's pt_next().
 * Encoder.encode(buffer) pre-tokenizes raw UTF-8 (no special tokens: Python splits those first) and
 * returns the ids as a list (encode) or as native uint32 bytes (encode_u32).
 *
 * Merging inside one pre-token (the merge table and both merge algorithms) lives in encode_merges.h.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "encode_merges.h"
#include "pretok.h"

#define SCAN_MAX 32          /* pre-tokens up to this many bytes use the scan merge */
#define CACHE_SLOTS (1u << 18)
#define CACHE_MAX_ENTRIES (1u << 17)
#define CACHE_KEY_BYTES (4u << 20)
#define CACHE_IDS (1u << 20)
#define CACHE_MAX_KEY 128    /* longer pre-tokens are not cached */

typedef struct {
    uint64_t hash;
    uint32_t key_off, key_len; /* key_len == 0: free */
    uint32_t ids_off, ids_len;
} CacheSlot;

typedef struct {
    PyObject_HEAD
    uint32_t byte_ids[256];
    MergeTable mt;
    uint8_t *classes; /* 0x110000 entries */
    CacheSlot *slots;
    unsigned char *keys;
    uint32_t *ids;
    uint32_t n_entries, keys_used, ids_used;
} Encoder;

/* ------------------------------------------------------------------------------------------ output buffer */
typedef struct {
    uint32_t *data;
    Py_ssize_t len, cap;
} IdBuf;

static int idbuf_reserve(IdBuf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra)
        cap *= 2;
    uint32_t *d = realloc(b->data, sizeof(uint32_t) * cap);
    if (!d)
        return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

/* ------------------------------------------------------------------------------------------ cache */
static inline uint64_t hash_bytes(const unsigned char *s, Py_ssize_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0x100000001B3ULL;
        h ^= h >> 29;
    }
    uint64_t w = 0;
    memcpy(&w, s + i, (size_t)(n - i));
    h = (h ^ w) * 0x100000001B3ULL;
    return pt_mix64(h);
}

static void cache_clear(Encoder *e) {
    memset(e->slots, 0, sizeof(CacheSlot) * CACHE_SLOTS);
    e->n_entries = e->keys_used = e->ids_used = 0;
}

/* Append the ids of one pre-token s[0..n) to out. */
static int encode_piece(Encoder *e, const unsigned char *s, Py_ssize_t n, IdBuf *out) {
    if (n == 1) {
        if (idbuf_reserve(out, 1) < 0)
            return -1;
        out->data[out->len++] = e->byte_ids[s[0]];
        return 0;
    }
    uint64_t h = 0;
    uint32_t slot = 0;
    int cacheable = n <= CACHE_MAX_KEY;
    if (cacheable) {
        h = hash_bytes(s, n);
        slot = (uint32_t)h & (CACHE_SLOTS - 1);
        for (;;) {
            CacheSlot *c = &e->slots[slot];
            if (c->key_len == 0)
                break;
            if (c->hash == h && c->key_len == (uint32_t)n && memcmp(e->keys + c->key_off, s, n) == 0) {
                if (idbuf_reserve(out, c->ids_len) < 0)
                    return -1;
                memcpy(out->data + out->len, e->ids + c->ids_off, sizeof(uint32_t) * c->ids_len);
                out->len += c->ids_len;
                return 0;
            }
            slot = (slot + 1) & (CACHE_SLOTS - 1);
        }
    }
    if (idbuf_reserve(out, n) < 0)
        return -1;
    uint32_t *ids = out->data + out->len;
    for (Py_ssize_t i = 0; i < n; i++)
        ids[i] = e->byte_ids[s[i]];
    Py_ssize_t m = n <= SCAN_MAX ? merge_scan(&e->mt, ids, n) : merge_buckets(&e->mt, ids, n);
    if (m < 0)
        return -1;
    out->len += m;
    if (cacheable) {
        if (e->n_entries >= CACHE_MAX_ENTRIES || e->keys_used + n > CACHE_KEY_BYTES || e->ids_used + m > CACHE_IDS) {
            cache_clear(e);
            slot = (uint32_t)h & (CACHE_SLOTS - 1); /* the table is empty now */
        }
        CacheSlot *c = &e->slots[slot];
        c->hash = h;
        c->key_off = e->keys_used;
        c->key_len = (uint32_t)n;
        c->ids_off = e->ids_used;
        c->ids_len = (uint32_t)m;
        memcpy(e->keys + e->keys_used, s, n);
        memcpy(e->ids + e->ids_used, ids, sizeof(uint32_t) * m);
        e->keys_used += (uint32_t)n;
        e->ids_used += (uint32_t)m;
        e->n_entries++;
    }
    return 0;
}

static int encode_all(Encoder *e, const unsigned char *s, Py_ssize_t n, IdBuf *out) {
    if (idbuf_reserve(out, n / 3 + 16) < 0)
        return -1;
    Py_ssize_t i = 0;
    while (i < n) {
        Py_ssize_t j = pt_next(s, n, i, e->classes);
        if (encode_piece(e, s + i, j - i, out) < 0)
            return -1;
        i = j;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ Python API */
static void Encoder_dealloc(Encoder *e) {
    merge_table_free(&e->mt);
    free(e->classes);
    free(e->slots);
    free(e->keys);
    free(e->ids);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

static int Encoder_init(Encoder *e, PyObject *args, PyObject *kwds) {
    PyObject *byte_ids, *merges;
    Py_buffer classes;
    static char *kwlist[] = {"byte_ids", "merges", "classes", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOy*", kwlist, &byte_ids, &merges, &classes))
        return -1;
    int rc = -1;
    PyObject *bseq = NULL;
    if (classes.len != 0x110000) {
        PyErr_SetString(PyExc_ValueError, "classes must have 0x110000 entries");
        goto done;
    }
    bseq = PySequence_Fast(byte_ids, "byte_ids must be a sequence");
    if (!bseq)
        goto done;
    if (PySequence_Fast_GET_SIZE(bseq) != 256) {
        PyErr_SetString(PyExc_ValueError, "byte_ids must have 256 entries");
        goto done;
    }
    for (int b = 0; b < 256; b++) {
        unsigned long v = PyLong_AsUnsignedLong(PySequence_Fast_GET_ITEM(bseq, b));
        if (PyErr_Occurred())
            goto done;
        e->byte_ids[b] = (uint32_t)v;
    }
    if (merge_table_build(&e->mt, merges) < 0)
        goto done;
    free(e->classes);
    e->classes = malloc(0x110000);
    free(e->slots);
    e->slots = calloc(CACHE_SLOTS, sizeof(CacheSlot));
    free(e->keys);
    e->keys = malloc(CACHE_KEY_BYTES);
    free(e->ids);
    e->ids = malloc(sizeof(uint32_t) * CACHE_IDS);
    if (!e->classes || !e->slots || !e->keys || !e->ids) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(e->classes, classes.buf, 0x110000);
    e->n_entries = e->keys_used = e->ids_used = 0;
    rc = 0;
done:
    Py_XDECREF(bseq);
    PyBuffer_Release(&classes);
    return rc;
}

static PyObject *ids_to_list(const IdBuf *b) {
    PyObject *list = PyList_New(b->len);
    if (!list)
        return NULL;
    for (Py_ssize_t i = 0; i < b->len; i++) {
        PyObject *v = PyLong_FromUnsignedLong(b->data[i]);
        if (!v) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

static PyObject *encode_impl(Encoder *e, PyObject *arg, int as_bytes) {
    if (!e->mt.pairs) {
        PyErr_SetString(PyExc_RuntimeError, "Encoder not initialised");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    IdBuf out = {NULL, 0, 0};
    PyObject *result = NULL;
    if (encode_all(e, (const unsigned char *)view.buf, view.len, &out) < 0)
        PyErr_NoMemory();
    else if (as_bytes)
        result = PyBytes_FromStringAndSize((const char *)out.data, out.len * (Py_ssize_t)sizeof(uint32_t));
    else
        result = ids_to_list(&out);
    free(out.data);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *Encoder_encode(Encoder *e, PyObject *arg) { return encode_impl(e, arg, 0); }

static PyObject *Encoder_encode_u32(Encoder *e, PyObject *arg) { return encode_impl(e, arg, 1); }

/* Merge one pre-token given as ids (no cache, no pre-tokenization): for equivalence tests. */
static PyObject *Encoder_merge(Encoder *e, PyObject *args) {
    PyObject *seq;
    int algorithm;
    if (!PyArg_ParseTuple(args, "Oi", &seq, &algorithm))
        return NULL;
    PyObject *fast = PySequence_Fast(seq, "ids must be a sequence");
    if (!fast)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    IdBuf b = {NULL, 0, 0};
    if (idbuf_reserve(&b, n + 1) < 0) {
        Py_DECREF(fast);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        b.data[i] = (uint32_t)PyLong_AsUnsignedLong(PySequence_Fast_GET_ITEM(fast, i));
        if (PyErr_Occurred()) {
            Py_DECREF(fast);
            free(b.data);
            return NULL;
        }
    }
    Py_DECREF(fast);
    b.len = n < 2 ? n : (algorithm == 1 ? merge_buckets(&e->mt, b.data, n) : merge_scan(&e->mt, b.data, n));
    PyObject *res = b.len < 0 ? PyErr_NoMemory() : ids_to_list(&b);
    free(b.data);
    return res;
}

static PyObject *Encoder_cache_info(Encoder *e, PyObject *Py_UNUSED(ignored)) {
    return Py_BuildValue("{s:I,s:I,s:I,s:I}", "entries", e->n_entries, "max_entries", CACHE_MAX_ENTRIES,
                         "key_bytes", e->keys_used, "ids", e->ids_used);
}

static PyMethodDef Encoder_methods[] = {
    {"encode", (PyCFunction)Encoder_encode, METH_O, "encode(buffer) -> list[int]: ids of special-free UTF-8 bytes"},
    {"encode_u32", (PyCFunction)Encoder_encode_u32, METH_O, "encode_u32(buffer) -> bytes: the ids as native uint32"},
    {"merge", (PyCFunction)Encoder_merge, METH_VARARGS, "merge(ids, algorithm) -> list[int]: merge one pre-token (0 scan, 1 buckets)"},
    {"cache_info", (PyCFunction)Encoder_cache_info, METH_NOARGS, "cache statistics"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cs336_basics.tokenizer._encode_native.Encoder",
    .tp_basicsize = sizeof(Encoder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Encoder(byte_ids, merges[(left, right, merged, rank)], classes): BPE encoder with a pre-token cache",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Encoder_init,
    .tp_dealloc = (destructor)Encoder_dealloc,
    .tp_methods = Encoder_methods,
};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_encode_native",
                                       "C hot path of byte-level BPE encoding (see tokenizer.py)", -1, NULL};

PyMODINIT_FUNC PyInit__encode_native(void) {
    if (PyType_Ready(&EncoderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m)
        return NULL;
    Py_INCREF(&EncoderType);
    if (PyModule_AddObject(m, "Encoder", (PyObject *)&EncoderType) < 0) {
        Py_DECREF(&EncoderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
