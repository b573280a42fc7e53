/* ReLU's network passes fused with the NormProp shift and scale and with the row summaries the engine tallies:
 * one pass over memory where numpy takes seven forward and five back (see relu_kernels.py, which checks the
 * arguments and documents the numbers).
 *
 *   forward(z, y, mask, rows, shift, scale, z_mean, z_sq, y_mean, y_sq):
 *       y = (max(z, 0) - shift) * scale, mask = z > 0, and per row the mean and the sum of squares of z and y
 *   backward(g, mask, dx, rows, scale, g_mean, g_sq, dx_mean, dx_sq):
 *       dx = (g * mask) * scale, and per row the mean and the sum of squares of g and dx
 *
 * y and dx may be z and g themselves (in place); the summaries of z and g are optional (None). The elementwise
 * results are those of numpy's passes bit for bit: max(z, 0) as np.maximum (+0.0 for -0.0, NaN kept), the mask cast
 * to 1.0 / 0.0 and multiplied (so the sign of a zero and NaN from inf * 0 are numpy's), then the scale. Only the
 * sums differ from numpy's by float rounding (their order of addition).
 *
 * On x86-64 with GCC or Clang an AVX2 version is chosen at import when the CPU has AVX2; otherwise plain C.
 * The loops run without the GIL (the engine's worker threads run them at once). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__amd64__)) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2_PATH 1
#include <immintrin.h>
#endif

static int choose(const char *name); /* run the loops named `name` from now on (below) */
static const char *isa = "plain";    /* the loops that run */

#include "../_loop_choice.h"
#include "_fused_pass.h"

/* -- one value, one row --------------------------------------------------------------------------------------- */

/* One value of the forward pass: y, the mask, and the four sums of its row (z, z^2, y, y^2) in acc. */
static inline void forward_one(double v, double shift, double scale, uint8_t *m, double *y, double acc[4]) {
    double o = (((v > 0.0) || (v != v)) ? v : 0.0) - shift;
    o *= scale;
    *m = v > 0.0;
    *y = o;
    acc[0] += v;
    acc[1] += v * v;
    acc[2] += o;
    acc[3] += o * o;
}

/* One value of the backward pass: dx, and the four sums of its row (g, g^2, dx, dx^2) in acc. */
static inline void backward_one(double v, uint8_t m, double scale, double *dx, double acc[4]) {
    double o = v * (double)m;
    o *= scale;
    *dx = o;
    acc[0] += v;
    acc[1] += v * v;
    acc[2] += o;
    acc[3] += o * o;
}

/* -- plain C ------------------------------------------------------------------------------------------------ */

static void forward_plain(const double *z, double *y, uint8_t *mask, Py_ssize_t rows, Py_ssize_t width,
                          double shift, double scale, Rows zr, Rows yr) {
    for (Py_ssize_t i = 0; i < rows; i++) {
        const double *zi = z + i * width;
        double *yi = y + i * width;
        uint8_t *mi = mask + i * width;
        double s[4][4] = {{0}}, t[4];
        Py_ssize_t j = 0;
        for (; j + 4 <= width; j += 4)
            for (int k = 0; k < 4; k++) forward_one(zi[j + k], shift, scale, mi + j + k, yi + j + k, s[k]);
        merge_lanes(s, t);
        for (; j < width; j++) forward_one(zi[j], shift, scale, mi + j, yi + j, t);
        put_rows(zr, yr, i, t, width);
    }
}

static void backward_plain(const double *g, const uint8_t *mask, double *dx, Py_ssize_t rows, Py_ssize_t width,
                           double scale, Rows gr, Rows dr) {
    for (Py_ssize_t i = 0; i < rows; i++) {
        const double *gi = g + i * width;
        double *di = dx + i * width;
        const uint8_t *mi = mask + i * width;
        double s[4][4] = {{0}}, t[4];
        Py_ssize_t j = 0;
        for (; j + 4 <= width; j += 4)
            for (int k = 0; k < 4; k++) backward_one(gi[j + k], mi[j + k], scale, di + j + k, s[k]);
        merge_lanes(s, t);
        for (; j < width; j++) backward_one(gi[j], mi[j], scale, di + j, t);
        put_rows(gr, dr, i, t, width);
    }
}

/* -- AVX2 ------------------------------------------------------------------------------------------------------ */

#ifdef HAVE_AVX2_PATH
/* The four mask bits of a comparison as four bytes 0 / 1, little-endian. */
static const uint32_t BYTES_OF_BITS[16] = {
    0x00000000u, 0x00000001u, 0x00000100u, 0x00000101u, 0x00010000u, 0x00010001u, 0x00010100u, 0x00010101u,
    0x01000000u, 0x01000001u, 0x01000100u, 0x01000101u, 0x01010000u, 0x01010001u, 0x01010100u, 0x01010101u};

__attribute__((target("avx2"))) static inline double hsum(__m256d a) {
    __m128d lo = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(lo) + _mm_cvtsd_f64(_mm_unpackhi_pd(lo, lo));
}

/* max(v, 0) as np.maximum: v where v > 0 or v is NaN (not less than or equal to 0, unordered true), else +0
 * (np.maximum(-0.0, 0.0) is +0.0). */
__attribute__((target("avx2"))) static inline __m256d relu4(__m256d v, __m256d zero) {
    return _mm256_and_pd(v, _mm256_cmp_pd(v, zero, _CMP_NLE_UQ));
}

__attribute__((target("avx2"))) static void forward_avx2(const double *z, double *y, uint8_t *mask,
                                                          Py_ssize_t rows, Py_ssize_t width, double shift,
                                                          double scale, Rows zr, Rows yr) {
    const __m256d zero = _mm256_setzero_pd(), vs = _mm256_set1_pd(shift), vc = _mm256_set1_pd(scale);
    for (Py_ssize_t i = 0; i < rows; i++) {
        const double *zi = z + i * width;
        double *yi = y + i * width;
        uint8_t *mi = mask + i * width;
        /* two accumulators of each sum, so that the additions of one do not wait for the last */
        __m256d a1 = zero, a2 = zero, b1 = zero, b2 = zero, c1 = zero, c2 = zero, d1 = zero, d2 = zero;
        Py_ssize_t j = 0;
        for (; j + 8 <= width; j += 8) {
            __m256d v = _mm256_loadu_pd(zi + j), w = _mm256_loadu_pd(zi + j + 4);
            __m256d ov = _mm256_mul_pd(_mm256_sub_pd(relu4(v, zero), vs), vc);
            __m256d ow = _mm256_mul_pd(_mm256_sub_pd(relu4(w, zero), vs), vc);
            uint32_t m[2] = {BYTES_OF_BITS[_mm256_movemask_pd(_mm256_cmp_pd(v, zero, _CMP_GT_OQ))],
                             BYTES_OF_BITS[_mm256_movemask_pd(_mm256_cmp_pd(w, zero, _CMP_GT_OQ))]};
            memcpy(mi + j, m, 8);
            _mm256_storeu_pd(yi + j, ov);
            _mm256_storeu_pd(yi + j + 4, ow);
            a1 = _mm256_add_pd(a1, v);
            a2 = _mm256_add_pd(a2, w);
            b1 = _mm256_add_pd(b1, _mm256_mul_pd(v, v));
            b2 = _mm256_add_pd(b2, _mm256_mul_pd(w, w));
            c1 = _mm256_add_pd(c1, ov);
            c2 = _mm256_add_pd(c2, ow);
            d1 = _mm256_add_pd(d1, _mm256_mul_pd(ov, ov));
            d2 = _mm256_add_pd(d2, _mm256_mul_pd(ow, ow));
        }
        double t[4] = {hsum(_mm256_add_pd(a1, a2)), hsum(_mm256_add_pd(b1, b2)), hsum(_mm256_add_pd(c1, c2)),
                       hsum(_mm256_add_pd(d1, d2))};
        for (; j < width; j++) forward_one(zi[j], shift, scale, mi + j, yi + j, t);
        put_rows(zr, yr, i, t, width);
    }
}

__attribute__((target("avx2"))) static void backward_avx2(const double *g, const uint8_t *mask, double *dx,
                                                           Py_ssize_t rows, Py_ssize_t width, double scale,
                                                           Rows gr, Rows dr) {
    const __m256d zero = _mm256_setzero_pd(), vc = _mm256_set1_pd(scale);
    for (Py_ssize_t i = 0; i < rows; i++) {
        const double *gi = g + i * width;
        double *di = dx + i * width;
        const uint8_t *mi = mask + i * width;
        __m256d a1 = zero, a2 = zero, b1 = zero, b2 = zero, c1 = zero, c2 = zero, d1 = zero, d2 = zero;
        Py_ssize_t j = 0;
        for (; j + 8 <= width; j += 8) {
            __m256d v = _mm256_loadu_pd(gi + j), w = _mm256_loadu_pd(gi + j + 4);
            int32_t m[2];
            memcpy(m, mi + j, 8);
            /* the mask's bytes as 1.0 / 0.0, multiplied in as numpy's cast does */
            __m256d fv = _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(m[0])));
            __m256d fw = _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(m[1])));
            __m256d ov = _mm256_mul_pd(_mm256_mul_pd(v, fv), vc), ow = _mm256_mul_pd(_mm256_mul_pd(w, fw), vc);
            _mm256_storeu_pd(di + j, ov);
            _mm256_storeu_pd(di + j + 4, ow);
            a1 = _mm256_add_pd(a1, v);
            a2 = _mm256_add_pd(a2, w);
            b1 = _mm256_add_pd(b1, _mm256_mul_pd(v, v));
            b2 = _mm256_add_pd(b2, _mm256_mul_pd(w, w));
            c1 = _mm256_add_pd(c1, ov);
            c2 = _mm256_add_pd(c2, ow);
            d1 = _mm256_add_pd(d1, _mm256_mul_pd(ov, ov));
            d2 = _mm256_add_pd(d2, _mm256_mul_pd(ow, ow));
        }
        double t[4] = {hsum(_mm256_add_pd(a1, a2)), hsum(_mm256_add_pd(b1, b2)), hsum(_mm256_add_pd(c1, c2)),
                       hsum(_mm256_add_pd(d1, d2))};
        for (; j < width; j++) backward_one(gi[j], mi[j], scale, di + j, t);
        put_rows(gr, dr, i, t, width);
    }
}
#endif

typedef void (*ForwardFn)(const double *, double *, uint8_t *, Py_ssize_t, Py_ssize_t, double, double, Rows,
                          Rows);
typedef void (*BackwardFn)(const double *, const uint8_t *, double *, Py_ssize_t, Py_ssize_t, double, Rows,
                           Rows);
static ForwardFn forward_impl = forward_plain;
static BackwardFn backward_impl = backward_plain;

/* -- arguments ------------------------------------------------------------------------------------------------- */

static const Signature FORWARD = {{"z", "y", "mask", "z_mean", "z_sq", "y_mean", "y_sq"}, {8, 8, 1}, {0, 1, 1}};
static const Signature BACKWARD = {{"g", "mask", "dx", "g_mean", "g_sq", "dx_mean", "dx_sq"}, {8, 1, 8}, {0, 0, 1}};

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
    forward_impl((const double *)v[0].buf, (double *)v[1].buf, (uint8_t *)v[2].buf, rows, width, shift, scale, zr,
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
    backward_impl((const double *)v[0].buf, (const uint8_t *)v[1].buf, (double *)v[2].buf, rows, width, scale, gr,
                  dr);
    Py_END_ALLOW_THREADS
    release(v, 7);
    Py_RETURN_NONE;
}

/* Run the loops named `name` from now on: 1, or 0 if this machine has no such loops. */
static int choose(const char *name) {
    if (strcmp(name, "plain") == 0) {
        forward_impl = forward_plain;
        backward_impl = backward_plain;
        isa = "plain";
        return 1;
    }
#ifdef HAVE_AVX2_PATH
    if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2")) {
        forward_impl = forward_avx2;
        backward_impl = backward_avx2;
        isa = "avx2";
        return 1;
    }
#endif
    return 0;
}

static PyMethodDef methods[] = {
    {"forward", forward, METH_VARARGS, "forward(z, y, mask, rows, width, shift, scale, z_mean, z_sq, y_mean, y_sq)"},
    {"backward", backward, METH_VARARGS, "backward(g, mask, dx, rows, width, scale, g_mean, g_sq, dx_mean, dx_sq)"},
    {"use", use, METH_VARARGS, "use('plain' | 'avx2'): the version of the loops to run (tests compare them)"},
    {"current", current, METH_NOARGS, "the version of the loops that runs: 'plain' or 'avx2'"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_relu_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__relu_kernels(void) {
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
#endif
    choose("avx2");  /* where the CPU has it; the plain loops otherwise */
    return PyModule_Create(&module);
}
