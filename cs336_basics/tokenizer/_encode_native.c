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
 * Merging inside one pre-token follows the handout: the pair of lowest merge rank first, every occurrence
 * left to right, and never a rank below one already applied. Short pre-tokens use repeated scans (fast
 * for the usual < 20 bytes); long ones per-rank buckets over a linked list of symbols (see
 * merge_buckets), linear apart from small sorts, so a megabyte-long run of one character is not
 * quadratic. (A binary heap of (rank, position), as in the Python fallback, was 3x slower here: its
 * sift-downs miss the cache.) Tests check both against the Python merge_scan on random inputs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pretok.h"

#define SCAN_MAX 32          /* pre-tokens up to this many bytes use the scan merge */
#define CACHE_SLOTS (1u << 18)
#define CACHE_MAX_ENTRIES (1u << 17)
#define CACHE_KEY_BYTES (4u << 20)
#define CACHE_IDS (1u << 20)
#define CACHE_MAX_KEY 128    /* longer pre-tokens are not cached */
#define EMPTY_KEY UINT64_MAX

typedef struct {
    uint64_t key; /* (left << 32) | right; EMPTY_KEY when free */
    int32_t rank;
    uint32_t merged;
} PairSlot;

typedef struct {
    uint64_t hash;
    uint32_t key_off, key_len; /* key_len == 0: free */
    uint32_t ids_off, ids_len;
} CacheSlot;

typedef struct {
    PyObject_HEAD
    uint32_t byte_ids[256];
    PairSlot *pairs;
    uint64_t pair_mask;
    uint8_t *classes; /* 0x110000 entries */
    CacheSlot *slots;
    unsigned char *keys;
    uint32_t *ids;
    uint32_t n_entries, keys_used, ids_used;
    int32_t n_ranks;
    int32_t *bucket_head, *bucket_tail; /* per rank; all -1 between calls (see merge_buckets) */
} Encoder;

/* ------------------------------------------------------------------------------------------ pair table */
static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static inline const PairSlot *pair_get(const Encoder *e, uint32_t a, uint32_t b) {
    uint64_t key = ((uint64_t)a << 32) | b;
    uint64_t i = mix64(key) & e->pair_mask;
    for (;;) {
        const PairSlot *s = &e->pairs[i];
        if (s->key == key)
            return s;
        if (s->key == EMPTY_KEY)
            return NULL;
        i = (i + 1) & e->pair_mask;
    }
}

/* ------------------------------------------------------------------------------------------ merging */
/* Scan merge in place on ids[0..n); returns the new length. */
static Py_ssize_t merge_scan(const Encoder *e, uint32_t *ids, Py_ssize_t n) {
    int32_t last = -1;
    while (n > 1) {
        int32_t best = INT32_MAX;
        Py_ssize_t bi = -1;
        for (Py_ssize_t i = 0; i + 1 < n; i++) {
            const PairSlot *s = pair_get(e, ids[i], ids[i + 1]);
            if (s && s->rank > last && s->rank < best) {
                best = s->rank;
                bi = i;
            }
        }
        if (bi < 0)
            break;
        uint32_t a = ids[bi], b = ids[bi + 1], m = pair_get(e, a, b)->merged;
        Py_ssize_t w = bi, i = bi;
        while (i < n) {
            if (i + 1 < n && ids[i] == a && ids[i + 1] == b) {
                ids[w++] = m;
                i += 2;
            } else {
                ids[w++] = ids[i++];
            }
        }
        n = w;
        last = best;
    }
    return n;
}

/* Bucket merge: the same result as merge_scan in O(n) plus small sorts, with sequential memory access.
 * Candidate pairs are kept in one bucket per rank (a linked list through a shared pool, in push order) and
 * a small heap holds the ranks whose bucket is non-empty. A bucket is complete when its rank is reached
 * (a merge never creates a pair of its own rank), so it is sorted by position and swept left to right,
 * which is exactly "merge every occurrence, left to right". Every popped bucket is emptied, so the
 * per-rank head/tail arrays are all -1 again on return and are reused without clearing. */
typedef struct {
    int32_t pos, next;
} BucketEntry;

typedef struct {
    const Encoder *e;
    BucketEntry *pool;
    Py_ssize_t used;
    int32_t *ranks; /* min-heap of ranks with a non-empty bucket */
    Py_ssize_t n_ranks;
} Buckets;

static void rank_push(Buckets *b, int32_t r) {
    Py_ssize_t i = b->n_ranks++;
    while (i > 0 && b->ranks[(i - 1) / 2] > r) {
        b->ranks[i] = b->ranks[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    b->ranks[i] = r;
}

static int32_t rank_pop(Buckets *b) {
    int32_t top = b->ranks[0], last = b->ranks[--b->n_ranks];
    Py_ssize_t i = 0, m = b->n_ranks;
    for (;;) {
        Py_ssize_t c = 2 * i + 1;
        if (c >= m)
            break;
        if (c + 1 < m && b->ranks[c + 1] < b->ranks[c])
            c++;
        if (b->ranks[c] >= last)
            break;
        b->ranks[i] = b->ranks[c];
        i = c;
    }
    if (m > 0)
        b->ranks[i] = last;
    return top;
}

static inline void bucket_add(Buckets *b, int32_t rank, int32_t pos) {
    int32_t *head = b->e->bucket_head, *tail = b->e->bucket_tail;
    int32_t idx = (int32_t)b->used++;
    b->pool[idx].pos = pos;
    b->pool[idx].next = -1;
    if (head[rank] < 0) {
        head[rank] = idx;
        rank_push(b, rank);
    } else {
        b->pool[tail[rank]].next = idx;
    }
    tail[rank] = idx;
}

static int cmp_i32(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

static Py_ssize_t merge_buckets(const Encoder *e, uint32_t *ids, Py_ssize_t n) {
    /* Pool: n - 1 initial pairs + at most 2 per merge (n - 1 merges). */
    int32_t *nxt = malloc(sizeof(int32_t) * n), *prv = malloc(sizeof(int32_t) * n);
    int32_t *order = malloc(sizeof(int32_t) * 3 * n);
    Buckets b = {e, malloc(sizeof(BucketEntry) * 3 * n), 0, malloc(sizeof(int32_t) * 3 * n), 0};
    if (!nxt || !prv || !order || !b.pool || !b.ranks) {
        free(nxt), free(prv), free(order), free(b.pool), free(b.ranks);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        nxt[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prv[i] = (int32_t)i - 1;
        if (i + 1 < n) {
            const PairSlot *s = pair_get(e, ids[i], ids[i + 1]);
            if (s)
                bucket_add(&b, s->rank, (int32_t)i);
        }
    }
    int32_t last = -1;
    while (b.n_ranks > 0) {
        int32_t rank = rank_pop(&b);
        Py_ssize_t m = 0;
        int sorted = 1;
        for (int32_t x = e->bucket_head[rank]; x >= 0; x = b.pool[x].next) {
            order[m] = b.pool[x].pos;
            if (m > 0 && order[m] < order[m - 1])
                sorted = 0;
            m++;
        }
        e->bucket_head[rank] = e->bucket_tail[rank] = -1;
        if (rank < last)
            continue; /* below a rank already applied: never fires (handout order) */
        if (!sorted)
            qsort(order, m, sizeof(int32_t), cmp_i32);
        for (Py_ssize_t t = 0; t < m; t++) {
            int32_t i = order[t], j = nxt[i];
            if (j < 0 || ids[i] == UINT32_MAX)
                continue;
            const PairSlot *s = pair_get(e, ids[i], ids[j]);
            if (!s || s->rank != rank)
                continue;
            uint32_t merged = s->merged;
            ids[i] = merged;
            ids[j] = UINT32_MAX; /* removed */
            int32_t k = nxt[j];
            nxt[i] = k;
            if (k >= 0)
                prv[k] = i;
            int32_t p = prv[i];
            if (p >= 0 && (s = pair_get(e, ids[p], merged)) != NULL)
                bucket_add(&b, s->rank, p);
            if (k >= 0 && (s = pair_get(e, merged, ids[k])) != NULL)
                bucket_add(&b, s->rank, i);
        }
        last = rank;
    }
    Py_ssize_t w = 0;
    for (int32_t i = 0; i >= 0; i = nxt[i])
        ids[w++] = ids[i];
    free(nxt), free(prv), free(order), free(b.pool), free(b.ranks);
    return w;
}

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
    return mix64(h);
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
    Py_ssize_t m = n <= SCAN_MAX ? merge_scan(e, ids, n) : merge_buckets(e, ids, n);
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
    free(e->pairs);
    free(e->classes);
    free(e->slots);
    free(e->keys);
    free(e->ids);
    free(e->bucket_head);
    free(e->bucket_tail);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

static int Encoder_init(Encoder *e, PyObject *args, PyObject *kwds) {
    PyObject *byte_ids, *merges;
    Py_buffer classes;
    static char *kwlist[] = {"byte_ids", "merges", "classes", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOy*", kwlist, &byte_ids, &merges, &classes))
        return -1;
    int rc = -1;
    PyObject *bseq = NULL, *mseq = NULL;
    if (classes.len != 0x110000) {
        PyErr_SetString(PyExc_ValueError, "classes must have 0x110000 entries");
        goto done;
    }
    bseq = PySequence_Fast(byte_ids, "byte_ids must be a sequence");
    mseq = PySequence_Fast(merges, "merges must be a sequence");
    if (!bseq || !mseq)
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
    Py_ssize_t nm = PySequence_Fast_GET_SIZE(mseq);
    uint64_t cap = 16;
    while (cap < (uint64_t)nm * 2 + 16)
        cap *= 2;
    free(e->pairs);
    e->pairs = malloc(sizeof(PairSlot) * cap);
    e->pair_mask = cap - 1;
    free(e->classes);
    e->classes = malloc(0x110000);
    free(e->slots);
    e->slots = calloc(CACHE_SLOTS, sizeof(CacheSlot));
    free(e->keys);
    e->keys = malloc(CACHE_KEY_BYTES);
    free(e->ids);
    e->ids = malloc(sizeof(uint32_t) * CACHE_IDS);
    if (!e->pairs || !e->classes || !e->slots || !e->keys || !e->ids) {
        PyErr_NoMemory();
        goto done;
    }
    int32_t n_ranks = 0;
    for (Py_ssize_t r = 0; r < nm; r++) {
        PyObject *item = PySequence_Fast_GET_ITEM(mseq, r);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4) {
            PyErr_SetString(PyExc_TypeError, "merges must be (left, right, merged, rank) tuples");
            goto done;
        }
        long rank = PyLong_AsLong(PyTuple_GET_ITEM(item, 3));
        if (rank < 0 || rank >= INT32_MAX) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "merge rank out of range");
            goto done;
        }
        if (rank + 1 > n_ranks)
            n_ranks = (int32_t)rank + 1;
    }
    free(e->bucket_head);
    free(e->bucket_tail);
    e->n_ranks = n_ranks;
    e->bucket_head = malloc(sizeof(int32_t) * (n_ranks + 1));
    e->bucket_tail = malloc(sizeof(int32_t) * (n_ranks + 1));
    if (!e->bucket_head || !e->bucket_tail) {
        PyErr_NoMemory();
        goto done;
    }
    memset(e->bucket_head, 0xff, sizeof(int32_t) * (n_ranks + 1));
    memset(e->bucket_tail, 0xff, sizeof(int32_t) * (n_ranks + 1));
    memcpy(e->classes, classes.buf, 0x110000);
    e->n_entries = e->keys_used = e->ids_used = 0;
    for (uint64_t i = 0; i < cap; i++)
        e->pairs[i].key = EMPTY_KEY;
    for (Py_ssize_t r = 0; r < nm; r++) {
        unsigned long a, b, m;
        long rank;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(mseq, r), "kkkl", &a, &b, &m, &rank))
            goto done;
        uint64_t key = ((uint64_t)a << 32) | b;
        uint64_t i = mix64(key) & e->pair_mask;
        while (e->pairs[i].key != EMPTY_KEY && e->pairs[i].key != key)
            i = (i + 1) & e->pair_mask;
        if (e->pairs[i].key == key)
            continue; /* a repeated merge keeps its first (lowest) rank */
        e->pairs[i].key = key;
        e->pairs[i].rank = (int32_t)rank;
        e->pairs[i].merged = (uint32_t)m;
    }
    rc = 0;
done:
    Py_XDECREF(bseq);
    Py_XDECREF(mseq);
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
    if (!e->pairs) {
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
    b.len = n < 2 ? n : (algorithm == 1 ? merge_buckets(e, b.data, n) : merge_scan(e, b.data, n));
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
