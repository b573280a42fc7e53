/* Exact GELU's network passes fused with the NormProp shift and scale and with the row summaries the engine
 * tallies: one pass over memory each way where numpy takes about ten forward and four back (see gelu_kernels.py,
 * which checks the arguments and documents the numbers).
 *
 *   forward(z, y, d, rows, width, shift, scale, z_mean, z_sq, y_mean, y_sq):
 *       c = Phi(z) = erfc(-z / sqrt 2) / 2, y = (z c - shift) * scale, d = z exp(-z^2 / 2) / sqrt(2 pi) + c
 *       (GELU's derivative, the state of the backward pass), and per row the mean and sum of squares of z and y
 *   backward(g, d, dx, rows, width, scale, g_mean, g_sq, dx_mean, dx_sq):
 *       dx = (d * g) * scale, and per row the mean and the sum of squares of g and dx
 *
 * y and dx may be z and g themselves (in place); the summaries of z and g are optional (None). Every operation is
 * one of numpy's passes in the same order (GELU.df's), so the results differ from numpy's only where libm's erfc
 * and exp differ from scipy's ndtr and numpy's exp, and the sums by their order of addition. Phi's argument is
 * z * (1/sqrt 2) rounded, as scipy's ndtr rounds it.
 *
 * Plain C calls libm's scalar erfc and exp (about 15 and 5 ns a value: most of the time). On x86-64 Linux with
 * glibc's vector math library (libmvec, glibc 2.35 and later: _ZGVdN4v_erfc, _ZGVdN4v_exp, four values a call,
 * within 4 units of roundoff by glibc's documentation, measured within 1.4) and a CPU with AVX2, an AVX2 forward
 * loop calls those instead, found at import with dlopen (so the extension loads where they are missing and runs
 * the plain loops). The backward pass is a product and its sums, plain C either way. The loops run without the
 * GIL (the engine's worker threads run them at once). setup.py compiles it with -ffp-contract=off, so that no
 * compiler fuses a product and a sum into one rounding where numpy's passes make two (where FMA is in the base
 * instruction set, as on arm64). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__amd64__)) && defined(__GLIBC__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2_PATH 1
#include <dlfcn.h>
#include <immintrin.h>
#endif

static int choose(const char *name); /* run the loops named `name` from now on (below) */
static const char *isa = "plain";    /* the loops that run */

#include "../_loop_choice.h"
#include "_fused_pass.h"

/* 1 / sqrt(2), the double nearest (numpy's NPY_SQRT1_2, by which scipy's ndtr scales its argument) */
static const double SQRT1_2 = 0.70710678118654752440;

/* sqrt(2 pi) as Python's math.sqrt(2.0 * math.pi), set at import */
static double sqrt_2pi;

/* -- one value ----------------------------------------------------------------------------------------------- */

/* One value of the forward pass: y, the derivative d, and the four sums of its row (z, z^2, y, y^2) in acc. */
static inline void forward_one(double v, double shift, double scale, double *y, double *d, double acc[4]) {
    double c = 0.5 * erfc(-(v * SQRT1_2));
    double o = v * c;
    o -= shift;
    o *= scale;
    double e = -0.5 * v; /* as GELU.df: x * exp(-0.5 * x * x) / sqrt(2 pi) + Phi(x) */
    e *= v;
    e = exp(e);
    e = v * e;
    e /= sqrt_2pi;
    *d = e + c;
    *y = o;
    acc[0] += v;
    acc[1] += v * v;
    acc[2] += o;
    acc[3] += o * o;
}

/* One value of the backward pass: dx, and the four sums of its row (g, g^2, dx, dx^2) in acc. */
static inline void backward_one(double v, double d, double scale, double *dx, double acc[4]) {
    double o = d * v;
    o *= scale;
    *dx = o;
    acc[0] += v;
    acc[1] += v * v;
    acc[2] += o;
    acc[3] += o * o;
}

/* -- the loops ----------------------------------------------------------------------------------------------- */

static void forward_rows(const double *z, double *y, double *d, Py_ssize_t rows, Py_ssize_t width, double shift,
                         double scale, Rows zr, Rows yr) {
    for (Py_ssize_t i = 0; i < rows; i++) {
        const double *zi = z + i * width;
        double *yi = y + i * width, *di = d + i * width;
        double s[4][4] = {{0}}, t[4];
        Py_ssize_t j = 0;
        for (; j + 4 <= width; j += 4)
            for (int k = 0; k < 4; k++) forward_one(zi[j + k], shift, scale, yi + j + k, di + j + k, s[k]);
        merge_lanes(s, t);
        for (; j < width; j++) forward_one(zi[j], shift, scale, yi + j, di + j, t);
        put_rows(zr, yr, i, t, width);
    }
}

static void backward_rows(const double *g, const double *d, double *dx, Py_ssize_t rows, Py_ssize_t width,
                          double scale, Rows gr, Rows dr) {
    for (Py_ssize_t i = 0; i < rows; i++) {
        const double *gi = g + i * width, *di = d + i * width;
        double *oi = dx + i * width;
        double s[4][4] = {{0}}, t[4];
        Py_ssize_t j = 0;
        for (; j + 4 <= width; j += 4)
            for (int k = 0; k < 4; k++) backward_one(gi[j + k], di[j + k], scale, oi + j + k, s[k]);
        merge_lanes(s, t);
        for (; j < width; j++) backward_one(gi[j], di[j], scale, oi + j, t);
        put_rows(gr, dr, i, t, width);
    }
}

/* -- AVX2, with libmvec's erfc and exp ------------------------------------------------------------------------ */

#ifdef HAVE_AVX2_PATH
typedef __m256d (*Vector4)(__m256d);
static Vector4 erfc4, exp4; /* libmvec's, where dlopen finds them */

__attribute__((target("avx2"))) static inline double hsum(__m256d a) {
    __m128d lo = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(lo) + _mm_cvtsd_f64(_mm_unpackhi_pd(lo, lo));
}

__attribute__((target("avx2"))) static void forward_avx2(const double *z, double *y, double *d, Py_ssize_t rows,
                                                          Py_ssize_t width, double shift, double scale, Rows zr,
                                                          Rows yr) {
    const __m256d zero = _mm256_setzero_pd(), vs = _mm256_set1_pd(shift), vc = _mm256_set1_pd(scale);
    const __m256d sign = _mm256_set1_pd(-0.0), half = _mm256_set1_pd(0.5), mhalf = _mm256_set1_pd(-0.5);
    const __m256d root1_2 = _mm256_set1_pd(SQRT1_2), root2pi = _mm256_set1_pd(sqrt_2pi);
    for (Py_ssize_t i = 0; i < rows; i++) {
        const double *zi = z + i * width;
        double *yi = y + i * width, *di = d + i * width;
        __m256d a = zero, b = zero, c = zero, q = zero;
        Py_ssize_t j = 0;
        for (; j + 4 <= width; j += 4) {
            __m256d v = _mm256_loadu_pd(zi + j);
            /* the operations of forward_one, four values at a time */
            __m256d p = _mm256_mul_pd(half, erfc4(_mm256_xor_pd(_mm256_mul_pd(v, root1_2), sign)));
            __m256d o = _mm256_mul_pd(_mm256_sub_pd(_mm256_mul_pd(v, p), vs), vc);
            __m256d e = exp4(_mm256_mul_pd(_mm256_mul_pd(mhalf, v), v));
            e = _mm256_div_pd(_mm256_mul_pd(v, e), root2pi);
            _mm256_storeu_pd(di + j, _mm256_add_pd(e, p));
            _mm256_storeu_pd(yi + j, o);
            a = _mm256_add_pd(a, v);
            b = _mm256_add_pd(b, _mm256_mul_pd(v, v));
            c = _mm256_add_pd(c, o);
            q = _mm256_add_pd(q, _mm256_mul_pd(o, o));
        }
        double t[4] = {hsum(a), hsum(b), hsum(c), hsum(q)};
        for (; j < width; j++) forward_one(zi[j], shift, scale, yi + j, di + j, t);
        put_rows(zr, yr, i, t, width);
    }
}

/* libmvec's erfc and exp, if this process can load them: 1, else 0. */
static int find_libmvec(void) {
    if (erfc4 && exp4) return 1;
    void *lib = dlopen("libmvec.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return 0;
    erfc4 = (Vector4)dlsym(lib, "_ZGVdN4v_erfc");
    exp4 = (Vector4)dlsym(lib, "_ZGVdN4v_exp");
    return erfc4 && exp4;
}
#endif

typedef void (*ForwardFn)(const double *, double *, double *, Py_ssize_t, Py_ssize_t, double, double, Rows, Rows);
static ForwardFn forward_impl = forward_rows;

/* Run the forward loops named `name` from now on: 1, or 0 if this machine has no such loops. */
static int choose(const char *name) {
    if (strcmp(name, "plain") == 0) {
        forward_impl = forward_rows;
        isa = "plain";
        return 1;
    }
#ifdef HAVE_AVX2_PATH
    if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2") && find_libmvec()) {
        forward_impl = forward_avx2;
        isa = "avx2";
        return 1;
    }
#endif
    return 0;
}

/* -- arguments (checked by _fused_pass.h's take_all) ------------------------------------------------------------- */

/* The seven buffers of each pass: its three arrays (all float64; which it writes), then the row summaries. */
static const Signature FORWARD = {{"z", "y", "d", "z_mean", "z_sq", "y_mean", "y_sq"}, {8, 8, 8}, {0, 1, 1}};
static const Signature BACKWARD = {{"g", "d", "dx", "g_mean", "g_sq", "dx_mean", "dx_sq"}, {8, 8, 8}, {0, 0, 1}};

static PyObject *forward(PyObject *self, PyObject *args) {
    PyObject *o[7];
    Py_buffer v[7];
    Py_ssize_t rows, width;
    double shift, scale;
    Rows zr, yr;
    if (!PyArg_ParseTuple(args, "OOOnnddOOOO:forward", &o[0], &o[1], &o[2], &rows, &width, &shift, &scale, &o[3],
                          &o[4], &o[5], &o[6]) ||
        !take_all(o, v, &FORWARD, rows, width, &zr, &yr))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    forward_impl((const double *)v[0].buf, (double *)v[1].buf, (double *)v[2].buf, rows, width, shift, scale, zr,
                 yr);
    Py_END_ALLOW_THREADS
    release(v, 7);
    Py_RETURN_NONE;
}

static PyObject *backward(PyObject *self, PyObject *args) {
    PyObject *o[7];
    Py_buffer v[7];
    Py_ssize_t rows, width;
    double scale;
    Rows gr, dr;
    if (!PyArg_ParseTuple(args, "OOOnndOOOO:backward", &o[0], &o[1], &o[2], &rows, &width, &scale, &o[3], &o[4],
                          &o[5], &o[6]) ||
        !take_all(o, v, &BACKWARD, rows, width, &gr, &dr))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    backward_rows((const double *)v[0].buf, (const double *)v[1].buf, (double *)v[2].buf, rows, width, scale, gr,
                  dr);
    Py_END_ALLOW_THREADS
    release(v, 7);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"forward", forward, METH_VARARGS, "forward(z, y, d, rows, width, shift, scale, z_mean, z_sq, y_mean, y_sq)"},
    {"backward", backward, METH_VARARGS, "backward(g, d, dx, rows, width, scale, g_mean, g_sq, dx_mean, dx_sq)"},
    {"use", use, METH_VARARGS, "use('plain' | 'avx2'): the forward loops to run (tests compare them)"},
    {"current", current, METH_NOARGS, "the forward loops that run: 'plain' (libm) or 'avx2' (libmvec)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gelu_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__gelu_kernels(void) {
    sqrt_2pi = sqrt(2.0 * 3.141592653589793); /* math.pi is this double */
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
#endif
    choose("avx2"); /* where the CPU and glibc have it; the plain loops otherwise */
    return PyModule_Create(&module);
}
