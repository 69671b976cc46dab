/*
 * Part of minlog._speedups (included by _speedups.c only): reading the fields of
 * Access and Employee objects straight from their __slots__, with prefetching.
 */
#ifndef MINLOG_SPEEDUPS_SLOTS_H
#define MINLOG_SPEEDUPS_SLOTS_H

/* Access and Employee are slotted classes: their attributes are member descriptors,
   read here straight from the instance (as PyObject_GetAttr would, without the lookup),
   which also lets the scan prefetch the objects of the items ahead of it. */

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch((const void *)(p))
#else
#define PREFETCH(p) ((void)(p))
#endif

/* The instance offset of ``type.name`` when it is a plain __slots__ member read by
   generic attribute access; 0 otherwise (then PyObject_GetAttr is used). */
static Py_ssize_t
slot_offset(PyTypeObject *type, PyObject *name)
{
    if (type->tp_getattro != PyObject_GenericGetAttr) {
        return 0;
    }
    PyObject *descr = _PyType_Lookup(type, name); /* borrowed; runs no Python code */
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        return 0;
    }
    PyMemberDef *m = ((PyMemberDescrObject *)descr)->d_member;
    if (m->type != T_OBJECT_EX || (m->flags & PY_AUDIT_READ) || m->offset <= 0 ||
        m->offset + (Py_ssize_t)sizeof(PyObject *) > type->tp_basicsize) {
        return 0;
    }
    return m->offset;
}

/* The layout of a type, valid while its version tag is. */
typedef struct {
    PyTypeObject *type;
    unsigned int tag;
    int complete; /* every offset is known */
    Py_ssize_t off[4];
} Layout;

enum { A_AT, A_EMPLOYEE, A_CITIZEN, A_CITIZEN_SOURCE };
enum { E_SOURCE, E_ID };

static Layout access_layout;   /* Access: at, employee, citizen, citizen_source */
static Layout employee_layout; /* Employee: source, id */

static inline int
layout_valid(const Layout *l, PyTypeObject *type)
{
    return l->type == type && (type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) &&
           type->tp_version_tag == l->tag;
}

static void
layout_load(Layout *l, PyTypeObject *type, PyObject *const *names, int n)
{
    l->complete = 1;
    for (int k = 0; k < n; k++) {
        l->off[k] = slot_offset(type, names[k]);
        l->complete &= l->off[k] != 0;
    }
    /* _PyType_Lookup gave the type a version tag, unless it could not */
    l->type = (type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) ? type : NULL;
    l->tag = type->tp_version_tag;
}

/* A new reference to obj.name: from its slot when the layout knows it. */
static inline PyObject *
get_field(PyObject *obj, Py_ssize_t off, PyObject *name)
{
    if (off) {
        PyObject *v = *(PyObject **)((char *)obj + off);
        if (v != NULL) {
            return Py_NewRef(v);
        }
    }
    return PyObject_GetAttr(obj, name); /* raises AttributeError for an empty slot */
}

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static inline void
prefetch_object(PyObject *o)
{
    if (o != NULL) {
        PREFETCH(o);
        PREFETCH((char *)o + 63);
    }
}

#endif
