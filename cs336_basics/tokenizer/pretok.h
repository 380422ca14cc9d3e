/* pretok.h: the GPT-2 pre-tokenizer over raw UTF-8 bytes, shared by every C extension of the tokenizer.
 *
 * Self-contained (static inline only; needs <Python.h> for Py_ssize_t and <stdint.h>), so each extension
 * just #includes it. It reproduces, byte for byte, what the Python oracle
 *     regex.findall(GPT2_PATTERN, data.decode("utf-8", "surrogateescape"))
 * returns, for the pattern
 *     '(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Every character matches one alternative, so the matches tile the text and a pre-tokenizer only needs
 * "where does the match starting at byte i end": pt_next().
 *
 * Character classes come from a 0x110000-entry table built by pretokenize.char_class_table() from the
 * regex module itself (bit 1 = \p{L}, 2 = \p{N}, 4 = \s), so Unicode semantics match exactly.
 *
 * UTF-8 decoding is as strict as Python's (no overlongs, no encoded surrogates, nothing above U+10FFFF).
 * A byte that does not start a valid sequence is one character U+DC00+byte, exactly what surrogateescape
 * produces; its table class is 0 ("other"). Because an invalid lead byte never swallows a following lead
 * byte, resynchronising one byte at a time equals Python's decoding.
 */
#ifndef CS336_PRETOK_H
#define CS336_PRETOK_H

#include <Python.h>
#include <stdint.h>

#define PT_LETTER 1
#define PT_NUMBER 2
#define PT_SPACE 4

/* A 64-bit finaliser (MurmurHash3's fmix64): spreads any key bits over the word, for hash tables. */
static inline uint64_t pt_mix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

/* Decode the character at s[i] (i < n): store its code point, return its length in bytes (1..4). */
static inline int pt_decode(const unsigned char *s, Py_ssize_t n, Py_ssize_t i, uint32_t *cp) {
    unsigned char c0 = s[i];
    if (c0 < 0x80) {
        *cp = c0;
        return 1;
    }
    Py_ssize_t left = n - i;
    if (c0 >= 0xC2 && c0 <= 0xDF) {
        if (left >= 2 && (s[i + 1] & 0xC0) == 0x80) {
            *cp = ((uint32_t)(c0 & 0x1F) << 6) | (s[i + 1] & 0x3F);
            return 2;
        }
    } else if (c0 >= 0xE0 && c0 <= 0xEF) {
        if (left >= 3) {
            unsigned char c1 = s[i + 1], c2 = s[i + 2];
            /* E0 needs A0..BF (no overlong), ED needs 80..9F (no surrogates). */
            unsigned char lo = c0 == 0xE0 ? 0xA0 : 0x80, hi = c0 == 0xED ? 0x9F : 0xBF;
            if (c1 >= lo && c1 <= hi && (c2 & 0xC0) == 0x80) {
                *cp = ((uint32_t)(c0 & 0x0F) << 12) | ((uint32_t)(c1 & 0x3F) << 6) | (c2 & 0x3F);
                return 3;
            }
        }
    } else if (c0 >= 0xF0 && c0 <= 0xF4) {
        if (left >= 4) {
            unsigned char c1 = s[i + 1], c2 = s[i + 2], c3 = s[i + 3];
            /* F0 needs 90..BF (no overlong), F4 needs 80..8F (<= U+10FFFF). */
            unsigned char lo = c0 == 0xF0 ? 0x90 : 0x80, hi = c0 == 0xF4 ? 0x8F : 0xBF;
            if (c1 >= lo && c1 <= hi && (c2 & 0xC0) == 0x80 && (c3 & 0xC0) == 0x80) {
                *cp = ((uint32_t)(c0 & 0x07) << 18) | ((uint32_t)(c1 & 0x3F) << 12) |
                      ((uint32_t)(c2 & 0x3F) << 6) | (c3 & 0x3F);
                return 4;
            }
        }
    }
    *cp = 0xDC00u + c0; /* surrogateescape */
    return 1;
}

/* Class bits of the character at s[i]; its byte length goes to *len. */
static inline uint8_t pt_class(const unsigned char *s, Py_ssize_t n, Py_ssize_t i, const uint8_t *classes,
                               int *len) {
    uint32_t cp;
    *len = pt_decode(s, n, i, &cp);
    return classes[cp];
}

/* End of the run of characters starting at i whose class satisfies the mask test
 * (want != 0: class & want; want == 0: "other", i.e. class has none of L/N/S). */
static inline Py_ssize_t pt_run(const unsigned char *s, Py_ssize_t n, Py_ssize_t i, const uint8_t *classes,
                                uint8_t want) {
    while (i < n) {
        int len;
        uint8_t c;
        if (s[i] < 0x80) { /* ASCII fast path */
            c = classes[s[i]];
            len = 1;
        } else {
            c = pt_class(s, n, i, classes, &len);
        }
        int ok = want ? (c & want) != 0 : (c & (PT_LETTER | PT_NUMBER | PT_SPACE)) == 0;
        if (!ok)
            break;
        i += len;
    }
    return i;
}

/* Exclusive end of the GPT-2 pre-token that starts at byte i (0 <= i < n). */
static inline Py_ssize_t pt_next(const unsigned char *s, Py_ssize_t n, Py_ssize_t i, const uint8_t *classes) {
    unsigned char c0 = s[i];
    /* 1. '(?:[sdmt]|ll|ve|re) */
    if (c0 == '\'' && i + 1 < n) {
        unsigned char a = s[i + 1];
        if (a == 's' || a == 'd' || a == 'm' || a == 't')
            return i + 2;
        if (i + 2 < n) {
            unsigned char b = s[i + 2];
            if ((a == 'l' && b == 'l') || (a == 'v' && b == 'e') || (a == 'r' && b == 'e'))
                return i + 3;
        }
    }
    int len;
    /* 2-4 with the optional leading space: " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+" */
    if (c0 == ' ' && i + 1 < n) {
        uint8_t c1 = pt_class(s, n, i + 1, classes, &len);
        if (c1 & PT_LETTER)
            return pt_run(s, n, i + 1, classes, PT_LETTER);
        if (c1 & PT_NUMBER)
            return pt_run(s, n, i + 1, classes, PT_NUMBER);
        if (!(c1 & PT_SPACE))
            return pt_run(s, n, i + 1, classes, 0);
        /* a space before whitespace: falls through to the whitespace alternatives */
    }
    uint8_t c = pt_class(s, n, i, classes, &len);
    if (c & PT_LETTER)
        return pt_run(s, n, i, classes, PT_LETTER);
    if (c & PT_NUMBER)
        return pt_run(s, n, i, classes, PT_NUMBER);
    if (!(c & PT_SPACE))
        return pt_run(s, n, i, classes, 0);
    /* 5-6: "\s+(?!\S)|\s+": the whole run if it ends the text; otherwise the run minus its last
     * character (which the next pre-token takes, e.g. " word"), unless the run is one character. */
    Py_ssize_t j = i, last = i;
    while (j < n) {
        int l;
        uint8_t cj = s[j] < 0x80 ? classes[s[j]] : pt_class(s, n, j, classes, &l);
        if (s[j] < 0x80)
            l = 1;
        if (!(cj & PT_SPACE))
            break;
        last = j;
        j += l;
    }
    if (j == n || last == i)
        return j;
    return last;
}

#endif /* CS336_PRETOK_H */
