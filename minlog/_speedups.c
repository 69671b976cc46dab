/*
 * minlog._speedups: the C accelerator of minlog._scan.Scanner.scan.
 *
 * scan(batch, access_type, prefix, hot, days, copenhagen, utc, horizon) returns what
 * Scanner._scan (the pure-Python reference) returns for the same inputs: the list of
 * candidates (index, day, key), or the int index of the first item to refuse (not an
 * Access, or too far in the future), or None when an input is unusual enough that the
 * pure-Python scan should answer instead. See minlog/_scan.py.
 *
 * Keys are BLAKE2b with a 16-byte digest (RFC 7693, unkeyed) of
 *     prefix \x1f employee.source \x1f employee.id \x1f citizen_source \x1f citizen \x1f day
 * as hashlib.blake2b(..., digest_size=16) computes it.
 *
 * Per item the only Python objects created are the key (needed for the set lookup) and,
 * for a candidate, its result tuple and index; the day's int and its seen-set are cached
 * while consecutive items share a day.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "datetime.h"
#include "structmember.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_blake2b.h"

/* ------------------------------------------------------------------------ state */

static PyObject *str_at;
static PyObject *str_employee;
static PyObject *str_source;
static PyObject *str_id;
static PyObject *str_citizen;
static PyObject *str_citizen_source;
static PyObject *str_current;
static PyObject *str_span;      /* used by _speedups_days.h */
static PyObject *str_timestamp; /* used by _speedups_days.h */

#include "_speedups_days.h"
#include "_speedups_slots.h"

/* The UTF-8 of an exact str without \x1f (which could make two different field tuples
   give one key). Returns 0 on success, 1 when unusual, -1 on error. */
static int
text_of(PyObject *s, const char **data, Py_ssize_t *size)
{
    if (!PyUnicode_CheckExact(s)) {
        return 1;
    }
    const char *d = PyUnicode_AsUTF8AndSize(s, size);
    if (d == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeError)) {
            PyErr_Clear(); /* surrogates: the pure scan raises as str.encode does */
            return 1;
        }
        return -1;
    }
    if (*size && memchr(d, 0x1f, (size_t)*size) != NULL) {
        return 1;
    }
    *data = d;
    return 0;
}

/* Writes the decimal form of v to p; returns its length (at most 20). */
static inline size_t
write_decimal(char *p, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + (u % 10));
        u /= 10;
    } while (u);
    size_t len = 0;
    if (v < 0) {
        p[len++] = '-';
    }
    while (n) {
        p[len++] = tmp[--n];
    }
    return len;
}

/* ------------------------------------------------------------------------ scan */

#define STACK_BUFFER 1024

typedef struct {
    /* the material buffer: prefix \x1f, then each item's fields */
    char stack[STACK_BUFFER];
    char *buf;
    size_t cap;
    size_t head; /* length of prefix + \x1f */
    /* the day's int and seen-set of the most recent item, while valid */
    int cached;
    int64_t day;
    PyObject *day_obj;
    PyObject *part; /* NULL when hot has no set for the day (or None) */
} Scan;

static void
scan_forget_day(Scan *s)
{
    s->cached = 0;
    Py_CLEAR(s->day_obj);
    Py_CLEAR(s->part);
}

/* Makes room for n bytes of material. Returns 0, or -1 with MemoryError. */
static int
scan_reserve(Scan *s, size_t n)
{
    if (n <= s->cap) {
        return 0;
    }
    size_t cap = n * 2;
    char *buf = PyMem_Malloc(cap);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(buf, s->buf, s->head);
    if (s->buf != s->stack) {
        PyMem_Free(s->buf);
    }
    s->buf = buf;
    s->cap = cap;
    return 0;
}

/* Points s->day_obj and s->part at ``day``'s int and hot.get(day). 0, or -1 on error. */
static int
scan_load_day(Scan *s, PyObject *hot, int64_t day)
{
    if (s->cached && s->day == day) {
        return 0;
    }
    scan_forget_day(s);
    PyObject *day_obj = PyLong_FromLongLong(day);
    if (day_obj == NULL) {
        return -1;
    }
    /* int keys hash and compare in C: no Python code runs between lookup and INCREF */
    PyObject *part = PyDict_GetItemWithError(hot, day_obj);
    if (part == NULL && PyErr_Occurred()) {
        Py_DECREF(day_obj);
        return -1;
    }
    if (part == Py_None) {
        part = NULL;
    }
    Py_XINCREF(part);
    s->day_obj = day_obj;
    s->part = part;
    s->day = day;
    s->cached = 1;
    return 0;
}

/* The fields that make an item's key. */
typedef struct {
    PyObject *employee, *source, *id, *citizen_source, *citizen;
} Fields;

static void
fields_clear(Fields *f)
{
    Py_CLEAR(f->employee);
    Py_CLEAR(f->source);
    Py_CLEAR(f->id);
    Py_CLEAR(f->citizen_source);
    Py_CLEAR(f->citizen);
}

static PyObject *const *access_names;   /* at, employee, citizen, citizen_source */
static PyObject *const *employee_names; /* source, id */

/* Computes the key of ``item`` on ``day`` into key[16]. 0, 1 when unusual, -1 on error. */
static int
scan_key(Scan *s, PyObject *item, int64_t day, uint8_t key[16])
{
    Fields f = {NULL, NULL, NULL, NULL, NULL};
    const char *text[4];
    Py_ssize_t size[4];
    int rc = -1;
    const Py_ssize_t *aoff = access_layout.off;

    f.employee = get_field(item, aoff[A_EMPLOYEE], str_employee);
    if (f.employee == NULL) {
        goto done;
    }
    PyTypeObject *etype = Py_TYPE(f.employee);
    if (!layout_valid(&employee_layout, etype)) {
        layout_load(&employee_layout, etype, employee_names, 2);
    }
    const Py_ssize_t *eoff = employee_layout.off;
    f.source = get_field(f.employee, eoff[E_SOURCE], str_source);
    if (f.source == NULL) {
        goto done;
    }
    f.id = get_field(f.employee, eoff[E_ID], str_id);
    if (f.id == NULL) {
        goto done;
    }
    f.citizen_source = get_field(item, aoff[A_CITIZEN_SOURCE], str_citizen_source);
    if (f.citizen_source == NULL) {
        goto done;
    }
    f.citizen = get_field(item, aoff[A_CITIZEN], str_citizen);
    if (f.citizen == NULL) {
        goto done;
    }
    PyObject *parts[4] = {f.source, f.id, f.citizen_source, f.citizen};
    size_t need = s->head + 5 + 24;
    for (int k = 0; k < 4; k++) {
        rc = text_of(parts[k], &text[k], &size[k]);
        if (rc != 0) {
            goto done;
        }
        need += (size_t)size[k];
    }
    rc = -1;
    if (scan_reserve(s, need) < 0) {
        goto done;
    }
    char *p = s->buf + s->head;
    for (int k = 0; k < 4; k++) {
        memcpy(p, text[k], (size_t)size[k]);
        p += size[k];
        *p++ = 0x1f;
    }
    p += write_decimal(p, day);
    minlog_blake2b16((const uint8_t *)s->buf, (size_t)(p - s->buf), key);
    rc = 0;
done:
    fields_clear(&f);
    return rc;
}

/* Distances (in items) at which the scan prefetches ahead of itself: the item, then
   the objects it points to, then the employee's id. */
#define AHEAD_ITEM 12
#define AHEAD_FIELDS 6
#define AHEAD_ID 3

static inline PyObject *
batch_get(PyObject *batch, int is_list, Py_ssize_t j)
{
    if (is_list) {
        return j < PyList_GET_SIZE(batch) ? PyList_GET_ITEM(batch, j) : NULL;
    }
    return j < PyTuple_GET_SIZE(batch) ? PyTuple_GET_ITEM(batch, j) : NULL;
}

/* Prefetches what item i + AHEAD_* will need. Only reads memory: no Python code runs. */
static inline void
scan_prefetch(PyObject *batch, int is_list, Py_ssize_t i, PyObject *access_type)
{
    const Py_ssize_t *aoff = access_layout.off;
    PyObject *o = batch_get(batch, is_list, i + AHEAD_ITEM);
    prefetch_object(o);
    o = batch_get(batch, is_list, i + AHEAD_FIELDS);
    if (o != NULL && (PyObject *)Py_TYPE(o) == access_type) {
        prefetch_object(SLOT(o, aoff[A_AT]));
        prefetch_object(SLOT(o, aoff[A_EMPLOYEE]));
        prefetch_object(SLOT(o, aoff[A_CITIZEN]));
    }
    o = batch_get(batch, is_list, i + AHEAD_ID);
    if (o != NULL && (PyObject *)Py_TYPE(o) == access_type) {
        PyObject *e = SLOT(o, aoff[A_EMPLOYEE]);
        if (e != NULL && Py_TYPE(e) == employee_layout.type && employee_layout.complete) {
            prefetch_object(SLOT(e, employee_layout.off[E_ID]));
            prefetch_object(SLOT(e, employee_layout.off[E_SOURCE]));
        }
    }
}

/* Returns 1 when ``key`` is in the seen-set of its day, 0 when not, -1 on error. */
static int
scan_is_hot(Scan *s, PyObject *key)
{
    PyObject *part = s->part;
    if (part == NULL) {
        return 0;
    }
    if (PyAnySet_CheckExact(part)) {
        return PySet_Contains(part, key); /* bytes hash and compare in C */
    }
    /* anything else answers ``key in part`` its own way, perhaps in Python code */
    Py_INCREF(part);
    int found = PySequence_Contains(part, key);
    Py_DECREF(part);
    scan_forget_day(s);
    return found;
}

static PyObject *
speedups_scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_Format(PyExc_TypeError, "scan() takes 8 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *batch = args[0], *access_type = args[1], *prefix = args[2], *hot = args[3],
             *days = args[4], *copenhagen = args[5], *utc = args[6];
    double horizon;
    int is_list = PyList_CheckExact(batch);
    if (!is_list && !PyTuple_CheckExact(batch)) {
        Py_RETURN_NONE;
    }
    if (!PyBytes_CheckExact(prefix) || !PyDict_CheckExact(hot) || !PyType_Check(access_type) ||
        as_double(args[7], &horizon)) {
        Py_RETURN_NONE;
    }

    Span span;
    {
        PyObject *current = PyObject_GetAttr(days, str_current);
        if (current == NULL) {
            return NULL;
        }
        int rc = parse_span(current, &span);
        Py_DECREF(current);
        if (rc) {
            Py_RETURN_NONE;
        }
    }

    Scan s;
    s.buf = s.stack;
    s.cap = STACK_BUFFER;
    s.head = 0;
    s.cached = 0;
    s.day = 0;
    s.day_obj = NULL;
    s.part = NULL;
    size_t plen = (size_t)PyBytes_GET_SIZE(prefix);
    if (scan_reserve(&s, plen + 1 + 256) < 0) {
        return NULL;
    }
    memcpy(s.buf, PyBytes_AS_STRING(prefix), plen);
    s.buf[plen] = 0x1f;
    s.head = plen + 1;

    PyObject *result = NULL; /* what to return */
    PyObject *cands = PyList_New(0);
    PyObject *seen = NULL; /* keys of the candidates, made at the second one */
    PyObject *item = NULL, *at = NULL, *key = NULL;
    Py_ssize_t i = 0;
    int rc = 0;
    if (cands == NULL) {
        goto error;
    }

    for (i = 0;; i++) {
        if (is_list) {
            if (i >= PyList_GET_SIZE(batch)) {
                break;
            }
            item = PyList_GET_ITEM(batch, i);
        }
        else {
            if (i >= PyTuple_GET_SIZE(batch)) {
                break;
            }
            item = PyTuple_GET_ITEM(batch, i);
        }
        Py_INCREF(item); /* a callback could shrink the list */
        if ((PyObject *)Py_TYPE(item) != access_type) {
            goto refuse;
        }
        if (!layout_valid(&access_layout, (PyTypeObject *)access_type)) {
            layout_load(&access_layout, (PyTypeObject *)access_type, access_names, 4);
        }
        if (access_layout.complete) {
            scan_prefetch(batch, is_list, i, access_type);
        }
        at = get_field(item, access_layout.off[A_AT], str_at);
        if (at == NULL) {
            goto error;
        }
        if (!PyDateTime_CheckExact(at)) {
            goto unusual;
        }
        PyObject *tz = PyDateTime_DATE_GET_TZINFO(at);
        int64_t wall_days;
        int64_t wall_us = wall_microseconds(at, &wall_days);
        int64_t day = 0;
        double ts = 0.0;
        int ask_python = 0; /* the instant only at.timestamp() gives exactly */
        if (tz == copenhagen) {
            /* The wall date is the day. The instant is needed only for the future check:
               exact from the cached span's offset when far from its ends. */
            day = wall_days + EPOCH_ORDINAL;
            ts = (double)(wall_us - span.off * 1000000) / 1e6;
            ask_python = !(span.lo + SAFE_MARGIN <= ts && ts + SAFE_MARGIN < span.hi);
        }
        else if (tz == utc) {
            ts = (double)wall_us / 1e6;
        }
        else if (tz == Py_None) {
            goto unusual;
        }
        else {
            ask_python = 1;
        }
        if (ask_python) {
            rc = call_timestamp(at, &ts);
            scan_forget_day(&s); /* Python code ran: the cached seen-set may be stale */
            if (rc) {
                goto callback_failed;
            }
        }
        if (ts > horizon) {
            goto refuse;
        }
        if (!(span.lo <= ts && ts < span.hi)) { /* (for Copenhagen: warm it for the next) */
            rc = call_span(days, ts, &span);
            scan_forget_day(&s);
            if (rc) {
                goto callback_failed;
            }
        }
        if (tz != copenhagen) {
            day = floor_day(ts + span.off_d) + EPOCH_ORDINAL;
        }
        Py_CLEAR(at);

        key = PyBytes_FromStringAndSize(NULL, 16);
        if (key == NULL) {
            goto error;
        }
        rc = scan_key(&s, item, day, (uint8_t *)PyBytes_AS_STRING(key));
        if (rc) {
            goto callback_failed;
        }
        if (scan_load_day(&s, hot, day) < 0) {
            goto error;
        }
        rc = scan_is_hot(&s, key);
        if (rc < 0) {
            goto error;
        }
        if (rc == 0) {
            Py_ssize_t n = PyList_GET_SIZE(cands);
            if (n > 0) {
                if (seen == NULL) {
                    seen = PySet_New(NULL);
                    if (seen == NULL) {
                        goto error;
                    }
                    PyObject *first = PyTuple_GET_ITEM(PyList_GET_ITEM(cands, 0), 2);
                    if (PySet_Add(seen, first) < 0) {
                        goto error;
                    }
                }
                rc = PySet_Contains(seen, key);
                if (rc < 0) {
                    goto error;
                }
            }
            if (rc == 0) {
                if (seen != NULL && PySet_Add(seen, key) < 0) {
                    goto error;
                }
                if (scan_load_day(&s, hot, day) < 0) { /* the cache may have been dropped */
                    goto error;
                }
                PyObject *index = PyLong_FromSsize_t(i);
                if (index == NULL) {
                    goto error;
                }
                PyObject *cand = PyTuple_New(3);
                if (cand == NULL) {
                    Py_DECREF(index);
                    goto error;
                }
                PyTuple_SET_ITEM(cand, 0, index);
                Py_INCREF(s.day_obj);
                PyTuple_SET_ITEM(cand, 1, s.day_obj);
                PyTuple_SET_ITEM(cand, 2, key);
                key = NULL; /* the tuple holds it */
                rc = PyList_Append(cands, cand);
                Py_DECREF(cand);
                if (rc < 0) {
                    goto error;
                }
            }
        }
        Py_CLEAR(key);
        Py_CLEAR(item);
    }
    result = cands;
    cands = NULL;
    goto finish;

refuse: /* item i is not an Access, or lies too far in the future */
    result = PyLong_FromSsize_t(i);
    goto finish;

callback_failed: /* rc is 1 (unusual) or -1 (error set) */
    if (rc < 0) {
        goto error;
    }
unusual:
    result = Py_NewRef(Py_None);
    goto finish;

error:
    result = NULL;
finish:
    Py_XDECREF(item);
    Py_XDECREF(at);
    Py_XDECREF(key);
    Py_XDECREF(seen);
    Py_XDECREF(cands);
    scan_forget_day(&s);
    if (s.buf != s.stack) {
        PyMem_Free(s.buf);
    }
    return result;
}

static PyObject *
speedups_blake2b16(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, 16);
    if (out != NULL) {
        minlog_blake2b16((const uint8_t *)view.buf, (size_t)view.len,
                  (uint8_t *)PyBytes_AS_STRING(out));
    }
    PyBuffer_Release(&view);
    return out;
}

PyDoc_STRVAR(scan_doc,
"scan(batch, access_type, prefix, hot, days, copenhagen, utc, horizon)\n--\n\n"
"The candidates (index, day, key) of batch, as Scanner._scan finds them; or the index\n"
"of the first item to refuse; or None when the pure-Python scan must answer.");

PyDoc_STRVAR(blake2b16_doc,
"minlog_blake2b16(data, /)\n--\n\n"
"hashlib.blake2b(data, digest_size=16).digest()");

static PyMethodDef speedups_methods[] = {
    {"scan", (PyCFunction)(void (*)(void))speedups_scan, METH_FASTCALL, scan_doc},
    {"blake2b16", speedups_blake2b16, METH_O, blake2b16_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "minlog._speedups",
    "The C accelerator of minlog._scan (see Scanner.scan).",
    -1,
    speedups_methods,
};

static PyObject *access_name_list[4];
static PyObject *employee_name_list[2];

static int
intern(PyObject **slot, const char *name)
{
    *slot = PyUnicode_InternFromString(name);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    if (intern(&str_at, "at") < 0 || intern(&str_employee, "employee") < 0 ||
        intern(&str_source, "source") < 0 || intern(&str_id, "id") < 0 ||
        intern(&str_citizen, "citizen") < 0 ||
        intern(&str_citizen_source, "citizen_source") < 0 ||
        intern(&str_current, "current") < 0 || intern(&str_span, "span") < 0 ||
        intern(&str_timestamp, "timestamp") < 0) {
        return NULL;
    }
    access_name_list[A_AT] = str_at;
    access_name_list[A_EMPLOYEE] = str_employee;
    access_name_list[A_CITIZEN] = str_citizen;
    access_name_list[A_CITIZEN_SOURCE] = str_citizen_source;
    employee_name_list[E_SOURCE] = str_source;
    employee_name_list[E_ID] = str_id;
    access_names = access_name_list;
    employee_names = employee_name_list;
    return PyModule_Create(&speedups_module);
}
