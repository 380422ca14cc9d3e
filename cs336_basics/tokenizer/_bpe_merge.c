/* _bpe_merge: the BPE merge phase in C (same algorithm as merging.merge_python, see its docstring).
 *
 * merge(words: list[bytes], counts: list[int], num_merges, on_merge=None) -> list[(a, b)]
 *
 * - words are int32 symbol arrays, merged in place (they only shrink); counts are int64;
 * - pairs live in an open-addressing table keyed by (a << 32 | b); each pair has its count, its
 *   position in an indexed max-heap, and an occurrence list of word indices (append-only, may hold
 *   duplicates and stale entries: a per-word stamp skips duplicates, a word without the pair is skipped);
 * - heap order: higher count first, ties to the lexicographically greater (bytes(a), bytes(b));
 * - during one merge, changed pairs are only marked dirty; their heap positions are fixed once at the end
 *   (the heap orders by a per-pair snapshot of the count taken at its last fix, so it stays a valid heap
 *   while the counts of dirty pairs are out of date).
 * The per-word update touches only pairs next to merge sites (removed once each, deduplicated
 * between sites two apart) and the new pairs around each new symbol; the two sets are disjoint
 * because only the new pairs contain the new symbol, so the result equals a full recount.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "pretok.h"

typedef struct {
    int32_t *sym;
    int32_t len;
    int64_t count;
} Word;

typedef struct {
    int32_t a, b;
    int64_t count;
    int64_t hcount; /* the count the heap is ordered by: count as of the last heap_fix */
    int32_t heap_pos; /* -1: not in the heap */
    int32_t dirty;
    int32_t *occ;
    int32_t occ_len, occ_cap;
} Pair;

typedef struct {
    /* tokens */
    char *tok_bytes;
    int64_t tok_bytes_len, tok_bytes_cap;
    int64_t *tok_off;
    int32_t *tok_len;
    int32_t ntok, tok_cap;
    /* pairs */
    Pair *pairs;
    int32_t npairs, pairs_cap;
    int32_t *table; /* pair index or -1 */
    int64_t table_cap;
    /* heap */
    int32_t *heap;
    int32_t heap_len;
    /* dirty pairs of the current merge */
    int32_t *dirty;
    int32_t ndirty, dirty_cap;
} State;

static void *xrealloc(void *p, size_t n) { return PyMem_RawRealloc(p, n ? n : 1); }

#define GROW(ptr, len, cap, type)                                                   \
    do {                                                                            \
        if ((len) >= (cap)) {                                                       \
            int64_t ncap_ = (cap) ? (int64_t)(cap) * 2 : 16;                         \
            type *np_ = xrealloc((ptr), sizeof(type) * (size_t)ncap_);              \
            if (!np_)                                                               \
                return -1;                                                          \
            (ptr) = np_;                                                            \
            (cap) = ncap_;                                                          \
        }                                                                           \
    } while (0)

static int add_token(State *st, const char *bytes, int32_t len) {
    GROW(st->tok_off, st->ntok, st->tok_cap, int64_t);
    st->tok_len = xrealloc(st->tok_len, sizeof(int32_t) * (size_t)st->tok_cap);
    if (!st->tok_len)
        return -1;
    while (st->tok_bytes_len + len > st->tok_bytes_cap) {
        int64_t cap = st->tok_bytes_cap ? st->tok_bytes_cap * 2 : 4096;
        char *p = xrealloc(st->tok_bytes, (size_t)cap);
        if (!p)
            return -1;
        st->tok_bytes = p;
        st->tok_bytes_cap = cap;
    }
    memcpy(st->tok_bytes + st->tok_bytes_len, bytes, (size_t)len);
    st->tok_off[st->ntok] = st->tok_bytes_len;
    st->tok_len[st->ntok] = len;
    st->tok_bytes_len += len;
    st->ntok++;
    return 0;
}

/* memcmp-style comparison of the bytes of tokens x and y */
static int tok_cmp(const State *st, int32_t x, int32_t y) {
    if (x == y)
        return 0;
    int32_t lx = st->tok_len[x], ly = st->tok_len[y];
    int c = memcmp(st->tok_bytes + st->tok_off[x], st->tok_bytes + st->tok_off[y], (size_t)(lx < ly ? lx : ly));
    if (c)
        return c;
    return (lx > ly) - (lx < ly);
}

/* does pair p come before pair q in the heap (higher count, then greater (bytes, bytes))? */
static int better(const State *st, int32_t p, int32_t q) {
    const Pair *P = &st->pairs[p], *Q = &st->pairs[q];
    if (P->hcount != Q->hcount)
        return P->hcount > Q->hcount;
    int c = tok_cmp(st, P->a, Q->a);
    if (c)
        return c > 0;
    return tok_cmp(st, P->b, Q->b) > 0;
}

static void heap_set(State *st, int32_t i, int32_t p) {
    st->heap[i] = p;
    st->pairs[p].heap_pos = i;
}

static void sift_up(State *st, int32_t i) {
    int32_t p = st->heap[i];
    while (i > 0) {
        int32_t parent = (i - 1) / 2;
        if (!better(st, p, st->heap[parent]))
            break;
        heap_set(st, i, st->heap[parent]);
        i = parent;
    }
    heap_set(st, i, p);
}

static void sift_down(State *st, int32_t i) {
    int32_t p = st->heap[i];
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, best = -1;
        if (l >= st->heap_len)
            break;
        best = l;
        if (r < st->heap_len && better(st, st->heap[r], st->heap[l]))
            best = r;
        if (!better(st, st->heap[best], p))
            break;
        heap_set(st, i, st->heap[best]);
        i = best;
    }
    heap_set(st, i, p);
}

static void heap_remove(State *st, int32_t p) {
    int32_t i = st->pairs[p].heap_pos;
    st->pairs[p].heap_pos = -1;
    st->heap_len--;
    if (i == st->heap_len)
        return;
    int32_t moved = st->heap[st->heap_len];
    heap_set(st, i, moved);
    sift_up(st, i);
    sift_down(st, st->pairs[moved].heap_pos);
}

/* put pair p where its current count says (insert, move, or remove when its count is 0) */
static void heap_fix(State *st, int32_t p) {
    Pair *P = &st->pairs[p];
    /* Several pairs change per merge; ordering by hcount keeps the heap valid for the pairs not
     * fixed yet, so each fix works on a consistent heap. */
    P->hcount = P->count;
    if (P->count <= 0) {
        if (P->heap_pos >= 0)
            heap_remove(st, p);
        return;
    }
    if (P->heap_pos < 0) {
        heap_set(st, st->heap_len, p);
        st->heap_len++;
        sift_up(st, P->heap_pos);
        return;
    }
    sift_up(st, P->heap_pos);
    sift_down(st, P->heap_pos);
}

static uint64_t pair_hash(int32_t a, int32_t b) {
    return pt_mix64(((uint64_t)(uint32_t)a << 32) | (uint32_t)b);
}

static int table_grow(State *st) {
    int64_t cap = st->table_cap ? st->table_cap * 2 : 1 << 16;
    int32_t *t = PyMem_RawMalloc(sizeof(int32_t) * (size_t)cap);
    if (!t)
        return -1;
    memset(t, 0xff, sizeof(int32_t) * (size_t)cap);
    for (int32_t p = 0; p < st->npairs; p++) {
        int64_t j = (int64_t)(pair_hash(st->pairs[p].a, st->pairs[p].b) & (uint64_t)(cap - 1));
        while (t[j] >= 0)
            j = (j + 1) & (cap - 1);
        t[j] = p;
    }
    PyMem_RawFree(st->table);
    st->table = t;
    st->table_cap = cap;
    return 0;
}

/* index of pair (a, b), created with count 0 when absent; -1 when out of memory */
static int32_t pair_get(State *st, int32_t a, int32_t b) {
    int64_t mask = st->table_cap - 1;
    int64_t j = (int64_t)(pair_hash(a, b) & (uint64_t)mask);
    while (st->table[j] >= 0) {
        Pair *P = &st->pairs[st->table[j]];
        if (P->a == a && P->b == b)
            return st->table[j];
        j = (j + 1) & mask;
    }
    if (st->npairs >= st->pairs_cap) {
        int32_t cap = st->pairs_cap ? st->pairs_cap * 2 : 1 << 16;
        Pair *np = xrealloc(st->pairs, sizeof(Pair) * (size_t)cap);
        if (!np)
            return -1;
        st->pairs = np;
        st->pairs_cap = cap;
    }
    int32_t p = st->npairs++;
    Pair *P = &st->pairs[p];
    P->a = a;
    P->b = b;
    P->count = P->hcount = 0;
    P->heap_pos = -1;
    P->dirty = 0;
    P->occ = NULL;
    P->occ_len = P->occ_cap = 0;
    st->table[j] = p;
    if ((int64_t)st->npairs * 2 > st->table_cap && table_grow(st) < 0)
        return -1;
    return p;
}

static int mark_dirty(State *st, int32_t p) {
    if (st->pairs[p].dirty)
        return 0;
    GROW(st->dirty, st->ndirty, st->dirty_cap, int32_t);
    st->dirty[st->ndirty++] = p;
    st->pairs[p].dirty = 1;
    return 0;
}

/* count += delta for pair (a, b); with word >= 0 also record the word as an occurrence */
static int pair_add(State *st, int32_t a, int32_t b, int64_t delta, int32_t word) {
    int32_t p = pair_get(st, a, b);
    if (p < 0)
        return -1;
    Pair *P = &st->pairs[p];
    P->count += delta;
    if (word >= 0 && (P->occ_len == 0 || P->occ[P->occ_len - 1] != word)) {
        GROW(P->occ, P->occ_len, P->occ_cap, int32_t);
        P->occ[P->occ_len++] = word;
    }
    return mark_dirty(st, p);
}

static void state_free(State *st, Word *words, Py_ssize_t nwords) {
    for (int32_t p = 0; p < st->npairs; p++)
        PyMem_RawFree(st->pairs[p].occ);
    PyMem_RawFree(st->pairs);
    PyMem_RawFree(st->table);
    PyMem_RawFree(st->heap);
    PyMem_RawFree(st->dirty);
    PyMem_RawFree(st->tok_bytes);
    PyMem_RawFree(st->tok_off);
    PyMem_RawFree(st->tok_len);
    if (words) {
        for (Py_ssize_t i = 0; i < nwords; i++)
            PyMem_RawFree(words[i].sym);
        PyMem_RawFree(words);
    }
}

/* merge (a, b) -> z in one word and update pair counts; returns -1 on out of memory */
static int merge_word(State *st, Word *w, int32_t wi, int32_t a, int32_t b, int32_t z) {
    int32_t n = w->len, *s = w->sym;
    int32_t i, first = -1;
    for (i = 0; i + 1 < n; i++)
        if (s[i] == a && s[i + 1] == b) {
            first = i;
            break;
        }
    if (first < 0)
        return 0; /* stale occurrence */
    int64_t c = w->count;
    /* remove the old pairs touching a site (each once), computing the new word in place */
    int32_t last_old = -1, out = first;
    i = first;
    while (i < n) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            for (int32_t k = i - 1; k <= i + 1; k++)
                if (k >= 0 && k < n - 1 && k > last_old) {
                    if (pair_add(st, s[k], s[k + 1], -c, -1) < 0)
                        return -1;
                    last_old = k;
                }
            /* the window above reads s[i-1..i+2]: still old values, since out <= i - 1 after a
             * site only overwrites positions < i (out advances by 1 per 2 consumed) */
            s[out++] = z;
            i += 2;
        } else {
            s[out++] = s[i++];
        }
    }
    w->len = out;
    int32_t last_new = -1;
    for (int32_t q = 0; q < out; q++) {
        if (s[q] != z)
            continue;
        for (int32_t k = q - 1; k <= q; k++)
            if (k >= 0 && k < out - 1 && k > last_new) {
                if (pair_add(st, s[k], s[k + 1], c, wi) < 0)
                    return -1;
                last_new = k;
            }
    }
    return 0;
}

static PyObject *py_merge(PyObject *module, PyObject *args) {
    PyObject *words_obj, *counts_obj, *callback = Py_None;
    Py_ssize_t num_merges;
    if (!PyArg_ParseTuple(args, "OOn|O", &words_obj, &counts_obj, &num_merges, &callback))
        return NULL;
    PyObject *wseq = PySequence_Fast(words_obj, "words must be a sequence of bytes");
    if (!wseq)
        return NULL;
    PyObject *cseq = PySequence_Fast(counts_obj, "counts must be a sequence of ints");
    if (!cseq) {
        Py_DECREF(wseq);
        return NULL;
    }
    Py_ssize_t nwords = PySequence_Fast_GET_SIZE(wseq);
    if (PySequence_Fast_GET_SIZE(cseq) != nwords || nwords > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "words and counts must have the same length (< 2**31)");
        Py_DECREF(wseq);
        Py_DECREF(cseq);
        return NULL;
    }
    State st;
    memset(&st, 0, sizeof st);
    Word *words = PyMem_RawCalloc((size_t)nwords + 1, sizeof(Word));
    PyObject *result = NULL;
    int32_t *stamp = NULL;
    if (!words || table_grow(&st) < 0)
        goto nomem;
    for (int i = 0; i < 256; i++) {
        char c = (char)i;
        if (add_token(&st, &c, 1) < 0)
            goto nomem;
    }
    for (Py_ssize_t wi = 0; wi < nwords; wi++) {
        PyObject *w = PySequence_Fast_GET_ITEM(wseq, wi);
        if (!PyBytes_Check(w)) {
            PyErr_SetString(PyExc_TypeError, "words must be bytes");
            goto fail;
        }
        long long count = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(cseq, wi));
        if (count == -1 && PyErr_Occurred())
            goto fail;
        Py_ssize_t len = PyBytes_GET_SIZE(w);
        const unsigned char *bytes = (const unsigned char *)PyBytes_AS_STRING(w);
        words[wi].sym = PyMem_RawMalloc(sizeof(int32_t) * (size_t)(len ? len : 1));
        if (!words[wi].sym)
            goto nomem;
        words[wi].len = (int32_t)len;
        words[wi].count = count;
        for (Py_ssize_t k = 0; k < len; k++)
            words[wi].sym[k] = bytes[k];
        for (Py_ssize_t k = 0; k + 1 < len; k++)
            if (pair_add(&st, bytes[k], bytes[k + 1], count, (int32_t)wi) < 0)
                goto nomem;
    }
    stamp = PyMem_RawMalloc(sizeof(int32_t) * (size_t)(nwords + 1));
    st.heap = PyMem_RawMalloc(sizeof(int32_t) * (size_t)(st.npairs + 1));
    if (!stamp || !st.heap)
        goto nomem;
    memset(stamp, 0xff, sizeof(int32_t) * (size_t)(nwords + 1));
    for (int32_t i = 0; i < st.ndirty; i++) {
        int32_t p = st.dirty[i];
        st.pairs[p].dirty = 0;
        st.pairs[p].hcount = st.pairs[p].count;
        if (st.pairs[p].count > 0) {
            heap_set(&st, st.heap_len, p);
            st.heap_len++;
        }
    }
    st.ndirty = 0;
    for (int32_t i = st.heap_len / 2 - 1; i >= 0; i--)
        sift_down(&st, i);
    int32_t heap_cap = st.npairs + 1;

    result = PyList_New(0);
    if (!result)
        goto fail;
    for (Py_ssize_t m = 0; m < num_merges && st.heap_len > 0; m++) {
        int32_t top = st.heap[0];
        int32_t a = st.pairs[top].a, b = st.pairs[top].b;
        PyObject *item = Py_BuildValue("(ii)", a, b);
        if (!item || PyList_Append(result, item) < 0) {
            Py_XDECREF(item);
            goto fail;
        }
        Py_DECREF(item);
        int32_t z = st.ntok;
        int32_t la = st.tok_len[a], lb = st.tok_len[b];
        char *buf = PyMem_RawMalloc((size_t)(la + lb));
        if (!buf)
            goto nomem;
        memcpy(buf, st.tok_bytes + st.tok_off[a], (size_t)la);
        memcpy(buf + la, st.tok_bytes + st.tok_off[b], (size_t)lb);
        int rc = add_token(&st, buf, la + lb);
        PyMem_RawFree(buf);
        if (rc < 0)
            goto nomem;
        /* take the occurrence list: pair_add never appends to it (new pairs all contain z) */
        int32_t *occ = st.pairs[top].occ;
        int32_t occ_len = st.pairs[top].occ_len;
        st.pairs[top].occ = NULL;
        st.pairs[top].occ_len = st.pairs[top].occ_cap = 0;
        int failed = 0;
        Py_BEGIN_ALLOW_THREADS
        for (int32_t k = 0; k < occ_len && !failed; k++) {
            int32_t wi = occ[k];
            if (stamp[wi] == (int32_t)m)
                continue;
            stamp[wi] = (int32_t)m;
            if (merge_word(&st, &words[wi], wi, a, b, z) < 0)
                failed = 1;
        }
        Py_END_ALLOW_THREADS
        PyMem_RawFree(occ);
        if (failed)
            goto nomem;
        if (st.npairs + 1 > heap_cap) {
            int32_t cap = heap_cap;
            while (cap < st.npairs + 1)
                cap *= 2;
            int32_t *h = xrealloc(st.heap, sizeof(int32_t) * (size_t)cap);
            if (!h)
                goto nomem;
            st.heap = h;
            heap_cap = cap;
        }
        for (int32_t i = 0; i < st.ndirty; i++) {
            int32_t p = st.dirty[i];
            st.pairs[p].dirty = 0;
            heap_fix(&st, p);
        }
        st.ndirty = 0;
        if (st.pairs[top].heap_pos >= 0) { /* defensive: its count must be 0 now */
            st.pairs[top].count = 0;
            heap_fix(&st, top);
        }
        if (callback != Py_None && ((m + 1) % 64 == 0 || m + 1 == num_merges)) {
            PyObject *r = PyObject_CallFunction(callback, "n", m + 1);
            if (!r)
                goto fail;
            Py_DECREF(r);
        }
    }
    PyMem_RawFree(stamp);
    state_free(&st, words, nwords);
    Py_DECREF(wseq);
    Py_DECREF(cseq);
    return result;
nomem:
    PyErr_NoMemory();
fail:
    Py_XDECREF(result);
    PyMem_RawFree(stamp);
    state_free(&st, words, nwords);
    Py_DECREF(wseq);
    Py_DECREF(cseq);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"merge", py_merge, METH_VARARGS,
     "merge(words: list[bytes], counts: list[int], num_merges, on_merge=None) -> list[(a, b)] token-id pairs"},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_bpe_merge", "The BPE merge phase in C.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__bpe_merge(void) { return PyModule_Create(&module_def); }
