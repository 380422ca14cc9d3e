/* _vector_math.h: what the C kernels of the model and the loss share (included by their .c files).
 *
 * - bf16_to_float / float_to_bf16: bfloat16 is the top half of a float32; the conversion back rounds to nearest,
 *   ties to even, and turns any NaN into the quiet NaN 0x7FC0, as PyTorch converts.
 * - exp_f32: exp in float32 written so that loops calling it vectorise (libm's expf does not): x = k ln2 + r
 *   with k the integer nearest x / ln2 and |r| <= ln2 / 2 (Cody and Waite's two-part ln2, whose first part
 *   times k is exact), exp(r) by its Taylor series to degree 7 (truncation error below 0.1 ulp on that
 *   interval), and 2^k put into the exponent bits. Accurate to a few ulps; 0 below -87 (where the true value is
 *   at most a float32 denormal), +inf above 88, NaN for NaN.
 * - CLONES: GCC's target_clones, so every function marked with it exists in AVX-512, AVX2 and baseline builds
 *   and the loader picks the best the CPU has. The code is ISO C (-std=c11), where no multiply-add is contracted
 *   into an FMA, and reductions keep LANES explicit partial results: every build computes the same operations
 *   in the same order, so all give the same bits.
 * - parallel_rows: split rows [0, rows) into contiguous ranges, one per thread, when there are enough elements
 *   to repay it: on torch's OpenMP threads when built with -fopenmp (setup.py asks for it), else on POSIX
 *   threads started for the call.
 *
 * Reference: W. J. Cody and W. Waite, Software Manual for the Elementary Functions (1980).
 */
#ifndef CS336_VECTOR_MATH_H
#define CS336_VECTOR_MATH_H

#include <math.h>
#include <pthread.h>
#include <stdint.h>

#define LANES 16                          /* partial results per reduction (one AVX-512 register of floats) */
#define MIN_ELEMENTS_PER_THREAD (1 << 16) /* below this, one more thread costs more than it saves */
#define MAX_THREADS 64

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

typedef union {
    float f;
    uint32_t u;
} Bits;

static inline float bf16_to_float(uint16_t h) {
    Bits b;
    b.u = (uint32_t)h << 16;
    return b.f;
}

static inline uint16_t float_to_bf16(float f) {
    Bits b;
    b.f = f;
    uint16_t rounded = (uint16_t)((b.u + 0x7FFFu + ((b.u >> 16) & 1u)) >> 16);
    return f != f ? (uint16_t)0x7FC0 : rounded;
}

#define EXP_MIN (-87.0f)          /* below: 0 (2^k stays a normal float down to here) */
#define EXP_MAX 88.0f             /* above: +inf */
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f       /* 9 significant bits: k * LN2_HI is exact for |k| < 2^15 */
#define LN2_LO (-2.12194440e-4f)  /* ln 2 - LN2_HI */
#define ROUNDER 12582912.0f       /* 1.5 * 2^23: adding and subtracting it rounds to an integer */

static inline float exp_f32(float x) {
    float xc = x < EXP_MIN ? EXP_MIN : (x > EXP_MAX ? EXP_MAX : x);
    float k = (xc * LOG2E + ROUNDER) - ROUNDER; /* nearest integer to x / ln 2 */
    float r = (xc - k * LN2_HI) - k * LN2_LO;   /* |r| <= ln2 / 2 */
    float p = 1.0f / 5040.0f;                   /* Taylor series of exp(r), Horner form, from r^7 / 7! */
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    Bits two_k;
    two_k.u = (uint32_t)((int32_t)k + 127) << 23;
    float y = p * two_k.f;
    y = x < EXP_MIN ? 0.0f : y;
    y = x > EXP_MAX ? INFINITY : y;
    return x != x ? x : y;
}

/* Calls body(context, begin, end, part) for contiguous ranges of [0, rows), `part` numbering the range, on up
 * to `threads` threads (fewer when rows * row_elements is small); returns the number of ranges. */
typedef void (*RowsBody)(void *context, int64_t begin, int64_t end, int part);

#ifndef _OPENMP
typedef struct {
    RowsBody body;
    void *context;
    int64_t begin, end;
    int part;
} RowsShare;

static void *rows_thread_main(void *arg) {
    RowsShare *s = (RowsShare *)arg;
    s->body(s->context, s->begin, s->end, s->part);
    return NULL;
}
#endif

static inline int rows_ranges(int64_t rows, int64_t row_elements, int threads) {
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if ((int64_t)threads * MIN_ELEMENTS_PER_THREAD > rows * row_elements)
        threads = (int)(rows * row_elements / MIN_ELEMENTS_PER_THREAD);
    if (threads > rows)
        threads = (int)rows;
    return threads < 1 ? 1 : threads;
}

static int parallel_rows(int64_t rows, int ranges, RowsBody body, void *context) {
    const int64_t per = (rows + ranges - 1) / ranges;
#ifdef _OPENMP
    /* torch's own OpenMP runtime (the process has one libgomp.so.1): its worker threads are already running,
     * and spinning after torch's last parallel region, so they take a range at once; threads of our own
     * would compete with them for the cores. */
#pragma omp parallel for num_threads(ranges) schedule(static, 1)
    for (int k = 0; k < ranges; k++) {
        int64_t begin = per * k < rows ? per * k : rows;
        int64_t end = per * (k + 1) < rows ? per * (k + 1) : rows;
        body(context, begin, end, k);
    }
#else
    RowsShare shares[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int k = 0; k < ranges; k++) {
        int64_t begin = per * k < rows ? per * k : rows;
        int64_t end = per * (k + 1) < rows ? per * (k + 1) : rows;
        shares[k] = (RowsShare){body, context, begin, end, k};
    }
    for (int k = 1; k < ranges; k++)
        started[k] = pthread_create(&ids[k], NULL, rows_thread_main, &shares[k]) == 0;
    rows_thread_main(&shares[0]);
    for (int k = 1; k < ranges; k++) {
        if (started[k])
            pthread_join(ids[k], NULL);
        else
            rows_thread_main(&shares[k]); /* no thread could be started: do its range here */
    }
#endif
    return ranges;
}

#endif
