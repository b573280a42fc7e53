/* What the compiled network passes of an activation (_relu_kernels.c, _gelu_kernels.c) share: the row summaries
 * they write and the checks of the buffers a call passes in (the choice of loops is in ../_loop_choice.h).
 *
 * A pass takes seven buffers: three arrays of rows x width values (its input, its output, its state: ReLU's mask
 * or GELU's derivative), then the row summaries of its input (mean, sum of squares: both or neither, None for
 * none) and of its output, rows float64 values each.
 *
 * Every function here is static: each extension gets its own copy. setup.py names this file among the two
 * extensions' `depends`, and MANIFEST.in includes it, so that a source distribution carries it. */

#ifndef NORMSTATS_FUSED_PASS_H
#define NORMSTATS_FUSED_PASS_H

#include <Python.h>
#include <string.h>

typedef struct {
    double *mean, *sq;
} Rows;

/* Row i's four sums as its summaries: the mean and the sum of squares of the input (if asked) and the output. */
static inline void put_rows(Rows in, Rows out, Py_ssize_t i, const double t[4], Py_ssize_t width) {
    if (in.mean) {
        in.mean[i] = t[0] / (double)width;
        in.sq[i] = t[1];
    }
    out.mean[i] = t[2] / (double)width;
    out.sq[i] = t[3];
}

/* Four lanes of sums (lane k takes every fourth value), added pairwise into one row's sums. */
static inline void merge_lanes(double s[4][4], double t[4]) {
    for (int r = 0; r < 4; r++) t[r] = (s[0][r] + s[1][r]) + (s[2][r] + s[3][r]);
}

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

/* What a pass takes: the names of its seven buffers, the item size of its three arrays and which of them it
 * writes. */
typedef struct {
    const char *names[7];
    Py_ssize_t itemsizes[3];
    int writable[3];
} Signature;

/* The seven buffers of a call, checked against `sig`, and the Rows of the input and the output; 0 with an
 * exception set (and nothing held) if one does not fit. */
static int take_all(PyObject *o[7], Py_buffer v[7], const Signature *sig, Py_ssize_t rows, Py_ssize_t width,
                    Rows *in, Rows *out) {
    memset(v, 0, 7 * sizeof *v);
    if (rows < 0 || width < 1) {
        PyErr_SetString(PyExc_ValueError, "rows must be >= 0 and width >= 1");
        return 0;
    }
    for (int i = 0; i < 7; i++) {
        int array = i < 3;
        if (!take(o[i], &v[i], array ? sig->writable[i] : 1, array ? rows * width : rows,
                  array ? sig->itemsizes[i] : 8, sig->names[i], i == 3 || i == 4)) {
            release(v, 7);
            return 0;
        }
    }
    if ((v[3].obj == NULL) != (v[4].obj == NULL)) {
        release(v, 7);
        PyErr_Format(PyExc_ValueError, "%s and %s: both or neither", sig->names[3], sig->names[4]);
        return 0;
    }
    in->mean = v[3].obj ? (double *)v[3].buf : NULL;
    in->sq = v[4].obj ? (double *)v[4].buf : NULL;
    out->mean = (double *)v[5].buf;
    out->sq = (double *)v[6].buf;
    return 1;
}

#endif
