/* The engine's power sums in one pass: for values v and a shift c, the sums of d, d^2, d^3 and d^4 with
 * d = v - c, which numpy takes two passes over memory and four dot products to form (see moments.PowerSums).
 *
 *   power_sums(values, shift) -> (s1, s2, s3, s4)       values: a contiguous float64 buffer
 *
 * d and d^2 are numpy's bit for bit (a subtraction and a product); only the order of the additions differs,
 * which changes the sums by float rounding.
 *
 * And the model tap's sums in one pass (see models/tap.py), for values viewed as rows of `width` values (a
 * feature map's channels of one input each: height x width positions):
 *
 *   row_sums(values, width) -> (sum v, sum v^2, sum over rows of (row sum)^2)
 *                                                        values: a C-contiguous float32 or float64 buffer
 *
 * accumulated in float64 (a float32 value's square is exact in float64): the error is float64 rounding of sums
 * of terms, whatever the size, except that the AVX2 loop sums float32 values in float32 within spans of 512
 * (16 values to a lane) before float64 takes over (see rows_f32_avx2).
 *
 * On x86-64 with GCC or Clang AVX2 versions are chosen at import when the CPU has AVX2 and FMA; otherwise plain
 * C. The loops run without the GIL (the engine's worker threads run at once). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__amd64__)) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2_PATH 1
#include <immintrin.h>
#endif

/* One value's d = v - shift and its powers, added to the four sums in acc. */
static inline void sum_one(double v, double shift, double acc[4]) {
    double d = v - shift;
    double d2 = d * d;
    acc[0] += d;
    acc[1] += d2;
    acc[2] += d2 * d;
    acc[3] += d2 * d2;
}

static void sums_plain(const double *v, Py_ssize_t n, double shift, double out[4]) {
    double s[4][4] = {{0}};  /* four lanes: lane k takes every fourth value */
    Py_ssize_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++) sum_one(v[i + k], shift, s[k]);
    for (int r = 0; r < 4; r++) out[r] = (s[0][r] + s[1][r]) + (s[2][r] + s[3][r]);
    for (; i < n; i++) sum_one(v[i], shift, out);
}

#ifdef HAVE_AVX2_PATH
__attribute__((target("avx2"))) static inline double hsum(__m256d a) {
    __m128d lo = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(lo) + _mm_cvtsd_f64(_mm_unpackhi_pd(lo, lo));
}

__attribute__((target("avx2"))) static void sums_avx2(const double *v, Py_ssize_t n, double shift, double out[4]) {
    const __m256d zero = _mm256_setzero_pd(), c = _mm256_set1_pd(shift);
    /* two accumulators of each sum, so that the additions of one do not wait for the last */
    __m256d a1 = zero, a2 = zero, b1 = zero, b2 = zero, c1 = zero, c2 = zero, e1 = zero, e2 = zero;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256d d = _mm256_sub_pd(_mm256_loadu_pd(v + i), c), f = _mm256_sub_pd(_mm256_loadu_pd(v + i + 4), c);
        __m256d d2 = _mm256_mul_pd(d, d), f2 = _mm256_mul_pd(f, f);
        a1 = _mm256_add_pd(a1, d);
        a2 = _mm256_add_pd(a2, f);
        b1 = _mm256_add_pd(b1, d2);
        b2 = _mm256_add_pd(b2, f2);
        c1 = _mm256_add_pd(c1, _mm256_mul_pd(d2, d));
        c2 = _mm256_add_pd(c2, _mm256_mul_pd(f2, f));
        e1 = _mm256_add_pd(e1, _mm256_mul_pd(d2, d2));
        e2 = _mm256_add_pd(e2, _mm256_mul_pd(f2, f2));
    }
    out[0] = hsum(_mm256_add_pd(a1, a2));
    out[1] = hsum(_mm256_add_pd(b1, b2));
    out[2] = hsum(_mm256_add_pd(c1, c2));
    out[3] = hsum(_mm256_add_pd(e1, e2));
    for (; i < n; i++) sum_one(v[i], shift, out);
}
#endif

/* row_sums: `rows` rows of `width` values from v (float32 or float64, each a float64 before any arithmetic)
 * into out: the sum, the sum of squares and the sum of the squared row sums. Per row four lanes (plain C) or
 * four vectors of four (AVX2) of row sums, and as many of squares kept across the rows. */
#define ROW_SUMS_PLAIN(NAME, T)                                                                              \
    static void NAME(const void *values, Py_ssize_t rows, Py_ssize_t width, double out[3]) {                 \
        const T *v = (const T *)values;                                                                      \
        double q[4] = {0, 0, 0, 0}, total = 0, squared_rows = 0;                                             \
        for (Py_ssize_t r = 0; r < rows; r++, v += width) {                                                  \
            double s[4] = {0, 0, 0, 0};                                                                      \
            Py_ssize_t i = 0;                                                                                \
            for (; i + 4 <= width; i += 4)                                                                   \
                for (int k = 0; k < 4; k++) {                                                                \
                    double d = (double)v[i + k];                                                             \
                    s[k] += d;                                                                               \
                    q[k] += d * d;                                                                           \
                }                                                                                            \
            double row = (s[0] + s[1]) + (s[2] + s[3]);                                                      \
            for (; i < width; i++) {                                                                         \
                double d = (double)v[i];                                                                     \
                row += d;                                                                                    \
                q[0] += d * d;                                                                               \
            }                                                                                                \
            total += row;                                                                                    \
            squared_rows += row * row;                                                                       \
        }                                                                                                    \
        out[0] = total;                                                                                      \
        out[1] = (q[0] + q[1]) + (q[2] + q[3]);                                                              \
        out[2] = squared_rows;                                                                               \
    }

ROW_SUMS_PLAIN(rows_f32_plain, float)
ROW_SUMS_PLAIN(rows_f64_plain, double)

#ifdef HAVE_AVX2_PATH
__attribute__((target("avx2"))) static inline __m256d load4_f32(const float *p) {
    return _mm256_cvtps_pd(_mm_loadu_ps(p));  /* exact: every float32 is a float64 */
}
__attribute__((target("avx2"))) static inline __m256d load4_f64(const double *p) { return _mm256_loadu_pd(p); }

/* The row loops ask for the cache lines 4 KiB ahead of the ones they read (a prefetch never faults, so past the
 * end of the values is harmless). A model's activations come to these loops from memory, not from the cache, and
 * one core's hardware prefetchers alone kept too few lines in flight: in normstats model's draws (resnet18, batch
 * 8, one core) the reductions took 48 ms a draw with it against 58 without (medians of 6 draws each, interleaved;
 * 2, 8 and 16 KiB ahead did the same; prefetching into the L2 only about the same, non-temporally worse). */
#define PREFETCH_BYTES 4096

#define ROW_SUMS_AVX2(NAME, T, LOAD)                                                                         \
    __attribute__((target("avx2,fma"))) static void NAME(const void *values, Py_ssize_t rows, Py_ssize_t width, \
                                                         double out[3]) {                                    \
        const T *v = (const T *)values;                                                                      \
        const __m256d zero = _mm256_setzero_pd();                                                            \
        __m256d q0 = zero, q1 = zero, q2 = zero, q3 = zero;                                                  \
        double total = 0, squared_rows = 0, tail_squares = 0;                                                \
        for (Py_ssize_t r = 0; r < rows; r++, v += width) {                                                  \
            __m256d s0 = zero, s1 = zero, s2 = zero, s3 = zero;                                              \
            Py_ssize_t i = 0;                                                                                \
            for (; i + 16 <= width; i += 16) {                                                               \
                _mm_prefetch((const char *)(v + i) + PREFETCH_BYTES, _MM_HINT_T0);                           \
                _mm_prefetch((const char *)(v + i) + PREFETCH_BYTES + 64, _MM_HINT_T0);                      \
                __m256d a = LOAD(v + i), b = LOAD(v + i + 4), c = LOAD(v + i + 8), d = LOAD(v + i + 12);     \
                s0 = _mm256_add_pd(s0, a);                                                                   \
                s1 = _mm256_add_pd(s1, b);                                                                   \
                s2 = _mm256_add_pd(s2, c);                                                                   \
                s3 = _mm256_add_pd(s3, d);                                                                   \
                q0 = _mm256_fmadd_pd(a, a, q0);                                                              \
                q1 = _mm256_fmadd_pd(b, b, q1);                                                              \
                q2 = _mm256_fmadd_pd(c, c, q2);                                                              \
                q3 = _mm256_fmadd_pd(d, d, q3);                                                              \
            }                                                                                                \
            for (; i + 4 <= width; i += 4) {                                                                 \
                __m256d a = LOAD(v + i);                                                                     \
                s0 = _mm256_add_pd(s0, a);                                                                   \
                q0 = _mm256_fmadd_pd(a, a, q0);                                                              \
            }                                                                                                \
            double row = hsum(_mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3)));                  \
            for (; i < width; i++) {                                                                         \
                double d = (double)v[i];                                                                     \
                row += d;                                                                                    \
                tail_squares += d * d;                                                                       \
            }                                                                                                \
            total += row;                                                                                    \
            squared_rows += row * row;                                                                       \
        }                                                                                                    \
        out[0] = total;                                                                                      \
        out[1] = hsum(_mm256_add_pd(_mm256_add_pd(q0, q1), _mm256_add_pd(q2, q3))) + tail_squares;           \
        out[2] = squared_rows;                                                                               \
    }

ROW_SUMS_AVX2(rows_f64_avx2, double, load4_f64)
ROW_SUMS_AVX2(rows_f32_avx2_narrow, float, load4_f32)  /* rows too short for float32 spans to pay */

/* float32 rows: the same sums with less arithmetic. Within spans of F32_SPAN values the sums and sums of squares
 * run in float32 (32 lanes: 16 values to a lane), then each lane goes into float64, so a sum is off by at most
 * 16 float32 roundings of its terms plus float64 rounding (the torch passes it replaces summed 1024 values and
 * more in float32). A span whose float32 sums are not finite (a square or a sum past float32's range, an
 * infinity, a NaN) is summed again in float64, so the range is float64's and infinities and NaN add as IEEE
 * says. Measured in normstats model's draws (resnet18, batch 8): about 30% less time than the float64 loop. */
#define F32_SPAN 512
#define NARROW 128
__attribute__((target("avx2"))) static inline void fold_ps(__m256 x, __m256d *acc) {
    *acc = _mm256_add_pd(*acc, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)),
                                             _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1))));
}

__attribute__((target("avx2,fma"))) static void rows_f32_avx2(const void *values, Py_ssize_t rows, Py_ssize_t width,
                                                              double out[3]) {
    if (width < NARROW) {  /* 7 x 7 maps: 58 against 48 us (8 x 512 rows); 14 x 14: 44 against 97 us */
        rows_f32_avx2_narrow(values, rows, width, out);
        return;
    }
    const float *v = (const float *)values;
    const __m256d zero = _mm256_setzero_pd();
    const __m256 zero_ps = _mm256_setzero_ps();
    __m256d squares = zero;
    double total = 0, squared_rows = 0, tail_squares = 0;
    for (Py_ssize_t r = 0; r < rows; r++, v += width) {
        __m256d sums = zero;
        Py_ssize_t i = 0;
        while (i + 32 <= width) {
            Py_ssize_t start = i, end = width - i > F32_SPAN ? i + F32_SPAN : width;
            __m256 s0 = zero_ps, s1 = zero_ps, s2 = zero_ps, s3 = zero_ps;
            __m256 q0 = zero_ps, q1 = zero_ps, q2 = zero_ps, q3 = zero_ps;
            for (; i + 32 <= end; i += 32) {
                _mm_prefetch((const char *)(v + i) + PREFETCH_BYTES, _MM_HINT_T0);
                _mm_prefetch((const char *)(v + i) + PREFETCH_BYTES + 64, _MM_HINT_T0);
                __m256 a = _mm256_loadu_ps(v + i), b = _mm256_loadu_ps(v + i + 8);
                __m256 c = _mm256_loadu_ps(v + i + 16), d = _mm256_loadu_ps(v + i + 24);
                s0 = _mm256_add_ps(s0, a);
                s1 = _mm256_add_ps(s1, b);
                s2 = _mm256_add_ps(s2, c);
                s3 = _mm256_add_ps(s3, d);
                q0 = _mm256_fmadd_ps(a, a, q0);
                q1 = _mm256_fmadd_ps(b, b, q1);
                q2 = _mm256_fmadd_ps(c, c, q2);
                q3 = _mm256_fmadd_ps(d, d, q3);
            }
            __m256 all = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)),
                                       _mm256_add_ps(_mm256_add_ps(q0, q1), _mm256_add_ps(q2, q3)));
            if (_mm256_movemask_ps(_mm256_cmp_ps(_mm256_sub_ps(all, all), zero_ps, _CMP_NEQ_UQ))) {
                for (Py_ssize_t k = start; k < i; k += 4) {  /* not finite in float32: again in float64 */
                    __m256d x = load4_f32(v + k);
                    sums = _mm256_add_pd(sums, x);
                    squares = _mm256_fmadd_pd(x, x, squares);
                }
                continue;
            }
            fold_ps(s0, &sums);
            fold_ps(s1, &sums);
            fold_ps(s2, &sums);
            fold_ps(s3, &sums);
            fold_ps(q0, &squares);
            fold_ps(q1, &squares);
            fold_ps(q2, &squares);
            fold_ps(q3, &squares);
        }
        for (; i + 4 <= width; i += 4) {
            __m256d x = load4_f32(v + i);
            sums = _mm256_add_pd(sums, x);
            squares = _mm256_fmadd_pd(x, x, squares);
        }
        double row = hsum(sums);
        for (; i < width; i++) {
            double d = (double)v[i];
            row += d;
            tail_squares += d * d;
        }
        total += row;
        squared_rows += row * row;
    }
    out[0] = total;
    out[1] = hsum(squares) + tail_squares;
    out[2] = squared_rows;
}
#endif

typedef void (*SumsFn)(const double *, Py_ssize_t, double, double[4]);
typedef void (*RowsFn)(const void *, Py_ssize_t, Py_ssize_t, double[3]);
static SumsFn sums_impl = sums_plain;
static RowsFn rows_f32 = rows_f32_plain, rows_f64 = rows_f64_plain;
static const char *isa = "plain";

static PyObject *power_sums(PyObject *self, PyObject *args) {
    Py_buffer view;
    double shift, out[4];
    if (!PyArg_ParseTuple(args, "y*d:power_sums", &view, &shift)) return NULL;
    if (view.itemsize != 8 || view.len % 8 != 0) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "values: expected float64 items, got items of %zd bytes", view.itemsize);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    sums_impl((const double *)view.buf, view.len / 8, shift, out);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return Py_BuildValue("(dddd)", out[0], out[1], out[2], out[3]);
}

/* The item type of a buffer's format ('f' float32, 'd' float64, with an optional native or little-endian
 * prefix), or 0. */
static char float_kind(const Py_buffer *view) {
    const char *f = view->format ? view->format : "B";
    if (*f == '@' || *f == '=' || *f == '<') f++;
    if (f[1] != '\0') return 0;
    if (f[0] == 'f' && view->itemsize == 4) return 'f';
    if (f[0] == 'd' && view->itemsize == 8) return 'd';
    return 0;
}

static PyObject *row_sums(PyObject *self, PyObject *args) {
    PyObject *obj;
    Py_ssize_t width;
    Py_buffer view;
    double out[3] = {0, 0, 0};
    if (!PyArg_ParseTuple(args, "On:row_sums", &obj, &width)) return NULL;
    if (PyObject_GetBuffer(obj, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    char kind = float_kind(&view);
    if (!kind) {
        PyErr_Format(PyExc_ValueError, "values: expected float32 or float64 items, got format '%s'",
                     view.format ? view.format : "B");
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_ssize_t n = view.len / view.itemsize;
    if (width < 1 || n % width != 0) {
        PyErr_Format(PyExc_ValueError, "width: expected a positive divisor of the %zd values, got %zd", n, width);
        PyBuffer_Release(&view);
        return NULL;
    }
    RowsFn fn = kind == 'f' ? rows_f32 : rows_f64;
    Py_BEGIN_ALLOW_THREADS
    fn(view.buf, n / width, width, out);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return Py_BuildValue("(ddd)", out[0], out[1], out[2]);
}

/* Run the loops named `name` from now on: 1, or 0 if this machine has no such loops. */
static int choose(const char *name) {
    if (strcmp(name, "plain") == 0) {
        sums_impl = sums_plain;
        rows_f32 = rows_f32_plain;
        rows_f64 = rows_f64_plain;
        isa = "plain";
        return 1;
    }
#ifdef HAVE_AVX2_PATH
    if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        sums_impl = sums_avx2;
        rows_f32 = rows_f32_avx2;
        rows_f64 = rows_f64_avx2;
        isa = "avx2";
        return 1;
    }
#endif
    return 0;
}

#include "../_loop_choice.h" /* use() and current(), over choose() and isa above */

static PyMethodDef methods[] = {
    {"power_sums", power_sums, METH_VARARGS, "power_sums(values, shift) -> (sum d, sum d^2, sum d^3, sum d^4)"},
    {"row_sums", row_sums, METH_VARARGS,
     "row_sums(values, width) -> (sum v, sum v^2, sum of squared row sums) over rows of width values, in float64"},
    {"use", use, METH_VARARGS, "use('plain' | 'avx2'): the version of the loops to run (tests compare them)"},
    {"current", current, METH_NOARGS, "the version of the loops that run: 'plain' or 'avx2'"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_power_sums", NULL, -1, methods};

PyMODINIT_FUNC PyInit__power_sums(void) {
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
#endif
    choose("avx2");  /* where the CPU has it; the plain loop otherwise */
    return PyModule_Create(&module);
}
