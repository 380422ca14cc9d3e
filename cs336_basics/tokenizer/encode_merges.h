/* encode_merges.h: the merge table and the two merge algorithms of the C encoder (_encode_native.c).
 *
 * A MergeTable maps a pair of ids (left, right) to (rank, merged id) by open addressing. Merging inside one
 * pre-token follows the handout: the pair of lowest merge rank first, every occurrence left to right, and
 * never a rank below one already applied. merge_scan (repeated scans) is fast for the usual short
 * pre-tokens; merge_buckets is linear apart from small sorts, for long ones (a megabyte-long run of one
 * character); tokenizer.py has the same two algorithms in Python. A binary heap of (rank, position) was
 * 3x slower here: its sift-downs miss the cache. Tests check both against the Python merge_scan.
 *
 * Static functions only; included by one extension.
 */
#ifndef CS336_ENCODE_MERGES_H
#define CS336_ENCODE_MERGES_H

#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pretok.h" /* pt_mix64 */

#define EMPTY_KEY UINT64_MAX

typedef struct {
    uint64_t key; /* (left << 32) | right; EMPTY_KEY when free */
    int32_t rank;
    uint32_t merged;
} PairSlot;

typedef struct {
    PairSlot *pairs;
    uint64_t pair_mask;
    int32_t n_ranks;
    int32_t *bucket_head, *bucket_tail; /* per rank; all -1 between calls (see merge_buckets) */
} MergeTable;

/* ------------------------------------------------------------------------------------------ pair table */
static inline const PairSlot *pair_get(const MergeTable *t, uint32_t a, uint32_t b) {
    uint64_t key = ((uint64_t)a << 32) | b;
    uint64_t i = pt_mix64(key) & t->pair_mask;
    for (;;) {
        const PairSlot *s = &t->pairs[i];
        if (s->key == key)
            return s;
        if (s->key == EMPTY_KEY)
            return NULL;
        i = (i + 1) & t->pair_mask;
    }
}

/* ------------------------------------------------------------------------------------------ merging */
/* Scan merge in place on ids[0..n); returns the new length. */
static Py_ssize_t merge_scan(const MergeTable *t, uint32_t *ids, Py_ssize_t n) {
    int32_t last = -1;
    while (n > 1) {
        int32_t best = INT32_MAX;
        Py_ssize_t bi = -1;
        for (Py_ssize_t i = 0; i + 1 < n; i++) {
            const PairSlot *s = pair_get(t, ids[i], ids[i + 1]);
            if (s && s->rank > last && s->rank < best) {
                best = s->rank;
                bi = i;
            }
        }
        if (bi < 0)
            break;
        uint32_t a = ids[bi], b = ids[bi + 1], m = pair_get(t, a, b)->merged;
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
    const MergeTable *t;
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
    int32_t *head = b->t->bucket_head, *tail = b->t->bucket_tail;
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

static Py_ssize_t merge_buckets(const MergeTable *t, uint32_t *ids, Py_ssize_t n) {
    if (n >= INT32_MAX / 3)
        return -1; /* positions are int32: a single pre-token of ~700 MB is refused (MemoryError) */
    /* Pool: n - 1 initial pairs + at most 2 per merge (n - 1 merges). */
    int32_t *nxt = malloc(sizeof(int32_t) * n), *prv = malloc(sizeof(int32_t) * n);
    int32_t *order = malloc(sizeof(int32_t) * 3 * n);
    Buckets b = {t, malloc(sizeof(BucketEntry) * 3 * n), 0, malloc(sizeof(int32_t) * 3 * n), 0};
    if (!nxt || !prv || !order || !b.pool || !b.ranks) {
        free(nxt), free(prv), free(order), free(b.pool), free(b.ranks);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        nxt[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prv[i] = (int32_t)i - 1;
        if (i + 1 < n) {
            const PairSlot *s = pair_get(t, ids[i], ids[i + 1]);
            if (s)
                bucket_add(&b, s->rank, (int32_t)i);
        }
    }
    int32_t last = -1;
    while (b.n_ranks > 0) {
        int32_t rank = rank_pop(&b);
        Py_ssize_t m = 0;
        int sorted = 1;
        for (int32_t x = t->bucket_head[rank]; x >= 0; x = b.pool[x].next) {
            order[m] = b.pool[x].pos;
            if (m > 0 && order[m] < order[m - 1])
                sorted = 0;
            m++;
        }
        t->bucket_head[rank] = t->bucket_tail[rank] = -1;
        if (rank < last)
            continue; /* below a rank already applied: never fires (handout order) */
        if (!sorted)
            qsort(order, m, sizeof(int32_t), cmp_i32);
        for (Py_ssize_t q = 0; q < m; q++) {
            int32_t i = order[q], j = nxt[i];
            if (j < 0 || ids[i] == UINT32_MAX)
                continue;
            const PairSlot *s = pair_get(t, ids[i], ids[j]);
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
            if (p >= 0 && (s = pair_get(t, ids[p], merged)) != NULL)
                bucket_add(&b, s->rank, p);
            if (k >= 0 && (s = pair_get(t, merged, ids[k])) != NULL)
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

/* ------------------------------------------------------------------------------------------ building */
static void merge_table_free(MergeTable *t) {
    free(t->pairs);
    free(t->bucket_head);
    free(t->bucket_tail);
    memset(t, 0, sizeof(*t));
}

/* Fill from a sequence of (left, right, merged, rank) tuples; -1 with a Python exception on bad input. */
static int merge_table_build(MergeTable *t, PyObject *merges) {
    merge_table_free(t);
    PyObject *seq = PySequence_Fast(merges, "merges must be a sequence");
    if (!seq)
        return -1;
    Py_ssize_t nm = PySequence_Fast_GET_SIZE(seq);
    int32_t n_ranks = 0;
    for (Py_ssize_t r = 0; r < nm; r++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, r);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4) {
            PyErr_SetString(PyExc_TypeError, "merges must be (left, right, merged, rank) tuples");
            goto fail;
        }
        long rank = PyLong_AsLong(PyTuple_GET_ITEM(item, 3));
        if (rank < 0 || rank >= INT32_MAX) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "merge rank out of range");
            goto fail;
        }
        if (rank + 1 > n_ranks)
            n_ranks = (int32_t)rank + 1;
    }
    uint64_t cap = 16;
    while (cap < (uint64_t)nm * 2 + 16)
        cap *= 2;
    t->pairs = malloc(sizeof(PairSlot) * cap);
    t->pair_mask = cap - 1;
    t->n_ranks = n_ranks;
    t->bucket_head = malloc(sizeof(int32_t) * (n_ranks + 1));
    t->bucket_tail = malloc(sizeof(int32_t) * (n_ranks + 1));
    if (!t->pairs || !t->bucket_head || !t->bucket_tail) {
        PyErr_NoMemory();
        goto fail;
    }
    memset(t->bucket_head, 0xff, sizeof(int32_t) * (n_ranks + 1));
    memset(t->bucket_tail, 0xff, sizeof(int32_t) * (n_ranks + 1));
    for (uint64_t i = 0; i < cap; i++)
        t->pairs[i].key = EMPTY_KEY;
    for (Py_ssize_t r = 0; r < nm; r++) {
        unsigned long a, b, m;
        long rank;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, r), "kkkl", &a, &b, &m, &rank))
            goto fail;
        uint64_t key = ((uint64_t)a << 32) | b;
        uint64_t i = pt_mix64(key) & t->pair_mask;
        while (t->pairs[i].key != EMPTY_KEY && t->pairs[i].key != key)
            i = (i + 1) & t->pair_mask;
        if (t->pairs[i].key == key)
            continue; /* a repeated merge keeps its first (lowest) rank */
        t->pairs[i].key = key;
        t->pairs[i].rank = (int32_t)rank;
        t->pairs[i].merged = (uint32_t)m;
    }
    Py_DECREF(seq);
    return 0;
fail:
    Py_DECREF(seq);
    merge_table_free(t);
    return -1;
}

#endif /* CS336_ENCODE_MERGES_H */
