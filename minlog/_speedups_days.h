/*
 * Part of minlog._speedups (included by _speedups.c only): the Copenhagen day of an
 * instant, as minlog._days computes it. Spans (lo, hi, offset) come from the Python
 * CopenhagenDays object; only their arithmetic is here. Needs str_span and
 * str_timestamp, the interned method names, declared before it.
 */
#ifndef MINLOG_SPEEDUPS_DAYS_H
#define MINLOG_SPEEDUPS_DAYS_H

#define EPOCH_ORDINAL 719163 /* date(1970, 1, 1).toordinal() */
#define SAFE_MARGIN 7200.0   /* seconds kept from a span's ends on the Copenhagen path */

/* Days from 1970-01-01 to the proleptic Gregorian date y-m-d (H. Hinnant's algorithm). */
static inline int64_t
days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The wall-clock fields of ``at`` as microseconds since 1970-01-01T00:00 (no offset). */
static inline int64_t
wall_microseconds(PyObject *at, int64_t *wall_days)
{
    int64_t days = days_from_civil(PyDateTime_GET_YEAR(at), PyDateTime_GET_MONTH(at),
                                   PyDateTime_GET_DAY(at));
    int64_t secs = days * 86400 + PyDateTime_DATE_GET_HOUR(at) * 3600 +
                   PyDateTime_DATE_GET_MINUTE(at) * 60 + PyDateTime_DATE_GET_SECOND(at);
    *wall_days = days;
    return secs * 1000000 + PyDateTime_DATE_GET_MICROSECOND(at);
}

/* Python's ``int(x // 86400)`` for a float x: the exact floor of the quotient (float
   floor division of a float by an int is exact: fmod is exact and so is x - fmod). */
static inline int64_t
floor_day(double x)
{
    double q = floor(x / 86400.0);
    /* x / 86400.0 is rounded; q is within one of the true floor. Products of q and
       86400 are exact (|q| << 2**53 / 86400), so the checks below are exact. */
    if (q * 86400.0 > x) {
        q -= 1.0;
    }
    else if ((q + 1.0) * 86400.0 <= x) {
        q += 1.0;
    }
    return (int64_t)q;
}

/* An exact int or float as a double, when it converts exactly (ints up to 2**53).
   Returns 0 on success, 1 when unusual (no exception set). */
static int
as_double(PyObject *o, double *out)
{
    if (PyFloat_CheckExact(o)) {
        *out = PyFloat_AS_DOUBLE(o);
        return 0;
    }
    if (PyLong_CheckExact(o)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (overflow || (v == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return 1;
        }
        if (v > (1LL << 53) || v < -(1LL << 53)) {
            return 1;
        }
        *out = (double)v;
        return 0;
    }
    return 1;
}

typedef struct {
    double lo, hi;
    double off_d;
    int64_t off;
} Span;

/* Reads a (lo, hi, off) tuple. Returns 0 on success, 1 when unusual. */
static int
parse_span(PyObject *t, Span *span)
{
    if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != 3) {
        return 1;
    }
    PyObject *off = PyTuple_GET_ITEM(t, 2);
    if (as_double(PyTuple_GET_ITEM(t, 0), &span->lo) ||
        as_double(PyTuple_GET_ITEM(t, 1), &span->hi) || !PyLong_CheckExact(off)) {
        return 1;
    }
    long v = PyLong_AsLong(off);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 1;
    }
    if (v > 86400 * 2 || v < -86400 * 2) {
        return 1;
    }
    span->off = v;
    span->off_d = (double)v;
    return 0;
}

/* days.span(ts) into *span. Returns 0 on success, 1 when unusual, -1 on error. */
static int
call_span(PyObject *days, double ts, Span *span)
{
    PyObject *arg = PyFloat_FromDouble(ts);
    if (arg == NULL) {
        return -1;
    }
    PyObject *res = PyObject_CallMethodOneArg(days, str_span, arg);
    Py_DECREF(arg);
    if (res == NULL) {
        return -1;
    }
    int rc = parse_span(res, span);
    Py_DECREF(res);
    return rc;
}

/* at.timestamp() into *ts. Returns 0 on success, 1 when unusual, -1 on error. */
static int
call_timestamp(PyObject *at, double *ts)
{
    PyObject *res = PyObject_CallMethodNoArgs(at, str_timestamp);
    if (res == NULL) {
        return -1;
    }
    int rc = 1;
    if (PyFloat_CheckExact(res)) {
        *ts = PyFloat_AS_DOUBLE(res);
        rc = 0;
    }
    Py_DECREF(res);
    return rc;
}

#endif
