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

typedef struct {
    double *mean, *sq;
} Rows;

/* -- plain C ------------------------------------------------------------------------------------------------ */

static void forward_plain(const double *z, double *y, uint8_t *mask, Py_ssize_t rows, Py_ssize_t width,
                          double shift, double scale, Rows zr, Rows yr) {
    for (Py_ssize_t i = 0; i < rows; i++) {
        const double *zi = z + i * width;
        double *yi = y + i * width;
        uint8_t *mi = mask + i * width;
        double s[4][4] = {{0}};
        Py_ssize_t j = 0;
        for (; j + 4 <= width; j += 4) {
            for (int k = 0; k < 4; k++) {
                double v = zi[j + k];
                double o = (((v > 0.0) || (v != v)) ? v : 0.0) - shift;
                o *= scale;
                mi[j + k] = v > 0.0;
                yi[j + k] = o;
                s[0][k] += v;
                s[1][k] += v * v;
                s[2][k] += o;
                s[3][k] += o * o;
            }
        }
        double t[4];
        for (int r = 0; r < 4; r++) t[r] = (s[r][0] + s[r][1]) + (s[r][2] + s[r][3]);
        for (; j < width; j++) {
            double v = zi[j];
            double o = (((v > 0.0) || (v != v)) ? v : 0.0) - shift;
            o *= scale;
            mi[j] = v > 0.0;
            yi[j] = o;
            t[0] += v;
            t[1] += v * v;
            t[2] += o;
            t[3] += o * o;
        }
        if (zr.mean) {
            zr.mean[i] = t[0] / (double)width;
            zr.sq[i] = t[1];
        }
        yr.mean[i] = t[2] / (double)width;
        yr.sq[i] = t[3];
    }
}

static void backward_plain(const double *g, const uint8_t *mask, double *dx, Py_ssize_t rows, Py_ssize_t width,
                           double scale, Rows gr, Rows dr) {
    for (Py_ssize_t i = 0; i < rows; i++) {
        const double *gi = g + i * width;
        double *di = dx + i * width;
        const uint8_t *mi = mask + i * width;
        double s[4][4] = {{0}};
        Py_ssize_t j = 0;
        for (; j + 4 <= width; j += 4) {
            for (int k = 0; k < 4; k++) {
                double v = gi[j + k];
                double o = v * (double)mi[j + k];
                o *= scale;
                di[j + k] = o;
                s[0][k] += v;
                s[1][k] += v * v;
                s[2][k] += o;
                s[3][k] += o * o;
            }
        }
        double t[4];
        for (int r = 0; r < 4; r++) t[r] = (s[r][0] + s[r][1]) + (s[r][2] + s[r][3]);
        for (; j < width; j++) {
            double v = gi[j];
            double o = v * (double)mi[j];
            o *= scale;
            di[j] = o;
            t[0] += v;
            t[1] += v * v;
            t[2] += o;
            t[3] += o * o;
        }
        if (gr.mean) {
            gr.mean[i] = t[0] / (double)width;
            gr.sq[i] = t[1];
        }
        dr.mean[i] = t[2] / (double)width;
        dr.sq[i] = t[3];
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
        double t0 = hsum(_mm256_add_pd(a1, a2)), t1 = hsum(_mm256_add_pd(b1, b2));
        double t2 = hsum(_mm256_add_pd(c1, c2)), t3 = hsum(_mm256_add_pd(d1, d2));
        for (; j < width; j++) {
            double v = zi[j];
            double o = (((v > 0.0) || (v != v)) ? v : 0.0) - shift;
            o *= scale;
            mi[j] = v > 0.0;
            yi[j] = o;
            t0 += v;
            t1 += v * v;
            t2 += o;
            t3 += o * o;
        }
        if (zr.mean) {
            zr.mean[i] = t0 / (double)width;
            zr.sq[i] = t1;
        }
        yr.mean[i] = t2 / (double)width;
        yr.sq[i] = t3;
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
        double t0 = hsum(_mm256_add_pd(a1, a2)), t1 = hsum(_mm256_add_pd(b1, b2));
        double t2 = hsum(_mm256_add_pd(c1, c2)), t3 = hsum(_mm256_add_pd(d1, d2));
        for (; j < width; j++) {
            double v = gi[j];
            double o = v * (double)mi[j];
            o *= scale;
            di[j] = o;
            t0 += v;
            t1 += v * v;
            t2 += o;
            t3 += o * o;
        }
        if (gr.mean) {
            gr.mean[i] = t0 / (double)width;
            gr.sq[i] = t1;
        }
        dr.mean[i] = t2 / (double)width;
        dr.sq[i] = t3;
    }
}
#endif

typedef void (*ForwardFn)(const double *, double *, uint8_t *, Py_ssize_t, Py_ssize_t, double, double, Rows,
                          Rows);
typedef void (*BackwardFn)(const double *, const uint8_t *, double *, Py_ssize_t, Py_ssize_t, double, Rows,
                           Rows);
static ForwardFn forward_impl = forward_plain;
static BackwardFn backward_impl = backward_plain;
static const char *isa = "plain";

/* -- arguments ------------------------------------------------------------------------------------------------- */

/* A contiguous buffer of `count` items of `itemsize` bytes (writable if asked); None allowed if `optional`. */
static int take(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t count, Py_ssize_t itemsize,
                const char *name, int optional) {
    view->obj = NULL;
    if (obj == Py_None && optional) return 1;
    if (PyObject_GetBuffer(obj, view, (writable ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS) < 0) return 0;
    if (view->itemsize != itemsize || view->len != count * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd contiguous items of %zd bytes, got %zd bytes of items of %zd",
                     name, count, itemsize, view->len, view->itemsize);
        PyBuffer_Release(view);
        view->obj = NULL;
        return 0;
    }
    return 1;
}

static void release(Py_buffer *views, int n) {
    for (int i = 0; i < n; i++)
        if (views[i].obj) PyBuffer_Release(&views[i]);
}

static PyObject *forward(PyObject *self, PyObject *args) {
    PyObject *o[7];
    Py_ssize_t rows, width;
    double shift, scale;
    if (!PyArg_ParseTuple(args, "OOOnnddOOOO:forward", &o[0], &o[1], &o[2], &rows, &width, &shift, &scale, &o[3],
                          &o[4], &o[5], &o[6]))
        return NULL;
    if (rows < 0 || width < 1) {
        PyErr_SetString(PyExc_ValueError, "rows must be >= 0 and width >= 1");
        return NULL;
    }
    Py_buffer v[7];
    memset(v, 0, sizeof v);
    const char *names[7] = {"z", "y", "mask", "z_mean", "z_sq", "y_mean", "y_sq"};
    Py_ssize_t counts[7] = {rows * width, rows * width, rows * width, rows, rows, rows, rows};
    Py_ssize_t sizes[7] = {8, 8, 1, 8, 8, 8, 8};
    int writable[7] = {0, 1, 1, 1, 1, 1, 1}, optional[7] = {0, 0, 0, 1, 1, 0, 0};
    for (int i = 0; i < 7; i++) {
        if (!take(o[i], &v[i], writable[i], counts[i], sizes[i], names[i], optional[i])) {
            release(v, 7);
            return NULL;
        }
    }
    if ((v[3].obj == NULL) != (v[4].obj == NULL)) {
        release(v, 7);
        PyErr_SetString(PyExc_ValueError, "z_mean and z_sq: both or neither");
        return NULL;
    }
    Rows zr = {(double *)v[3].buf, (double *)v[4].buf}, yr = {(double *)v[5].buf, (double *)v[6].buf};
    if (!v[3].obj) zr.mean = zr.sq = NULL;
    Py_BEGIN_ALLOW_THREADS
    forward_impl((const double *)v[0].buf, (double *)v[1].buf, (uint8_t *)v[2].buf, rows, width, shift, scale, zr,
                 yr);
    Py_END_ALLOW_THREADS
    release(v, 7);
    Py_RETURN_NONE;
}

static PyObject *backward(PyObject *self, PyObject *args) {
    PyObject *o[7];
    Py_ssize_t rows, width;
    double scale;
    if (!PyArg_ParseTuple(args, "OOOnndOOOO:backward", &o[0], &o[1], &o[2], &rows, &width, &scale, &o[3], &o[4],
                          &o[5], &o[6]))
        return NULL;
    if (rows < 0 || width < 1) {
        PyErr_SetString(PyExc_ValueError, "rows must be >= 0 and width >= 1");
        return NULL;
    }
    Py_buffer v[7];
    memset(v, 0, sizeof v);
    const char *names[7] = {"g", "mask", "dx", "g_mean", "g_sq", "dx_mean", "dx_sq"};
    Py_ssize_t counts[7] = {rows * width, rows * width, rows * width, rows, rows, rows, rows};
    Py_ssize_t sizes[7] = {8, 1, 8, 8, 8, 8, 8};
    int writable[7] = {0, 0, 1, 1, 1, 1, 1}, optional[7] = {0, 0, 0, 1, 1, 0, 0};
    for (int i = 0; i < 7; i++) {
        if (!take(o[i], &v[i], writable[i], counts[i], sizes[i], names[i], optional[i])) {
            release(v, 7);
            return NULL;
        }
    }
    if ((v[3].obj == NULL) != (v[4].obj == NULL)) {
        release(v, 7);
        PyErr_SetString(PyExc_ValueError, "g_mean and g_sq: both or neither");
        return NULL;
    }
    Rows gr = {(double *)v[3].buf, (double *)v[4].buf}, dr = {(double *)v[5].buf, (double *)v[6].buf};
    if (!v[3].obj) gr.mean = gr.sq = NULL;
    Py_BEGIN_ALLOW_THREADS
    backward_impl((const double *)v[0].buf, (const uint8_t *)v[1].buf, (double *)v[2].buf, rows, width, scale, gr,
                  dr);
    Py_END_ALLOW_THREADS
    release(v, 7);
    Py_RETURN_NONE;
}

static PyObject *use(PyObject *self, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s:use", &name)) return NULL;
    if (strcmp(name, "plain") == 0) {
        forward_impl = forward_plain;
        backward_impl = backward_plain;
        isa = "plain";
    }
#ifdef HAVE_AVX2_PATH
    else if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2")) {
        forward_impl = forward_avx2;
        backward_impl = backward_avx2;
        isa = "avx2";
    }
#endif
    else {
        PyErr_Format(PyExc_ValueError, "no kernel '%s' on this machine (have: %s)", name, isa);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *current(PyObject *self, PyObject *unused) { return PyUnicode_FromString(isa); }

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
    if (__builtin_cpu_supports("avx2")) {
        forward_impl = forward_avx2;
        backward_impl = backward_avx2;
        isa = "avx2";
    }
#endif
    return PyModule_Create(&module);
}
