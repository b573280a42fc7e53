/* The engine's power sums in one pass: for values v and a shift c, the sums of d, d^2, d^3 and d^4 with
 * d = v - c, which numpy takes two passes over memory and four dot products to form (see moments.PowerSums).
 *
 *   power_sums(values, shift) -> (s1, s2, s3, s4)       values: a contiguous float64 buffer
 *
 * d and d^2 are numpy's bit for bit (a subtraction and a product); only the order of the additions differs,
 * which changes the sums by float rounding. On x86-64 with GCC or Clang an AVX2 version is chosen at import when
 * the CPU has it; otherwise plain C. The loop runs without the GIL (the engine's worker threads run at once). */

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

typedef void (*SumsFn)(const double *, Py_ssize_t, double, double[4]);
static SumsFn sums_impl = sums_plain;
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

/* Run the loop named `name` from now on: 1, or 0 if this machine has no such loop. */
static int choose(const char *name) {
    if (strcmp(name, "plain") == 0) {
        sums_impl = sums_plain;
        isa = "plain";
        return 1;
    }
#ifdef HAVE_AVX2_PATH
    if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2")) {
        sums_impl = sums_avx2;
        isa = "avx2";
        return 1;
    }
#endif
    return 0;
}

static PyObject *use(PyObject *self, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s:use", &name)) return NULL;
    if (!choose(name)) {
        PyErr_Format(PyExc_ValueError, "no kernel '%s' on this machine (have: %s)", name, isa);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *current(PyObject *self, PyObject *unused) { return PyUnicode_FromString(isa); }

static PyMethodDef methods[] = {
    {"power_sums", power_sums, METH_VARARGS, "power_sums(values, shift) -> (sum d, sum d^2, sum d^3, sum d^4)"},
    {"use", use, METH_VARARGS, "use('plain' | 'avx2'): the version of the loop to run (tests compare them)"},
    {"current", current, METH_NOARGS, "the version of the loop that runs: 'plain' or 'avx2'"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_power_sums", NULL, -1, methods};

PyMODINIT_FUNC PyInit__power_sums(void) {
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
#endif
    choose("avx2");  /* where the CPU has it; the plain loop otherwise */
    return PyModule_Create(&module);
}
