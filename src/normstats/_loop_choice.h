/* The choice of loops every compiled extension of normstats offers its tests: `use(name)` runs the loops named
 * `name` from now on ('plain' C, or 'avx2' where the machine has it), `current()` names the loops that run.
 *
 * The file that includes this one declares, before it, `static const char *isa` (the name of the loops that run)
 * and `static int choose(const char *name)` (run the loops named `name` from now on: 1, or 0 if this machine has
 * no such loops), which it defines below its loops. Both functions here are static: each extension gets its own
 * copy. setup.py names this file among every extension's `depends`, and MANIFEST.in includes it, so that a source
 * distribution carries it. */

#ifndef NORMSTATS_LOOP_CHOICE_H
#define NORMSTATS_LOOP_CHOICE_H

#include <Python.h>

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

#endif
