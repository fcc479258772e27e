/*
 * caddysnake.c — the C shim: it starts CPython once per process, owns every
 * Python reference that Go holds (as opaque cs_obj), and performs every GIL
 * transition. Python never calls Go with the GIL held: each Go callback is
 * wrapped in Py_BEGIN/END_ALLOW_THREADS, so a slow client never blocks other
 * Python threads. The ASGI loop thread does not call Go at all on the request
 * path: it meets Go in the C queues of section 1.
 *
 * Layout of this file:
 *   1. the built-in module `_caddysnake` (Request type, log(), exception),
 *      and the ASGI queues between Go and the loop thread with the
 *      `_caddysnake.asgi_*` functions that use them
 *   2. interpreter start-up and loading of the embedded caddysnake_py package
 *   3. app loading / releasing
 *   4. worker thread states and the per-request entry point
 */
#define _GNU_SOURCE 1 /* same value as pyconfig.h, which defines it too */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "caddysnake.h"
#include "_cgo_export.h" /* the cs_go_* callbacks exported by Go */

/* Driver entry points, cached once by cs_bootstrap. Owned by this file for the
 * life of the process (the interpreter is never finalised). */
static PyObject *g_wsgi_handle = NULL; /* caddysnake_py.wsgi.handle */
static PyObject *g_load_app = NULL;    /* caddysnake_py.loader.load_app */
static PyObject *g_client_gone = NULL; /* _caddysnake.ClientDisconnected */

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* Format the pending Python exception as a traceback string and clear it.
 * GIL: held in/out. owns: returns a malloc'd string the caller frees. */
static char *format_exception(void) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return strdup("unknown error (no Python exception set)");
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }
    char *out = NULL;
    PyObject *mod = PyImport_ImportModule("traceback");
    PyObject *lines = NULL, *sep = NULL, *joined = NULL;
    if (mod != NULL) {
        lines = PyObject_CallMethod(mod, "format_exception", "OOO", type,
                                    value ? value : Py_None, tb ? tb : Py_None);
    }
    if (lines != NULL && (sep = PyUnicode_FromString("")) != NULL) {
        joined = PyUnicode_Join(sep, lines);
    }
    if (joined == NULL) {
        PyErr_Clear();
        joined = PyObject_Str(value ? value : type);
    }
    if (joined != NULL) {
        const char *s = PyUnicode_AsUTF8(joined);
        if (s != NULL) {
            out = strdup(s);
        }
    }
    PyErr_Clear();
    Py_XDECREF(joined);
    Py_XDECREF(sep);
    Py_XDECREF(lines);
    Py_XDECREF(mod);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return out ? out : strdup("unprintable Python exception");
}

/* Log the pending exception through Caddy's logger and clear it.
 * GIL: held in/out. */
static void log_exception(const char *context) {
    char *tb = format_exception();
    size_t n = strlen(context) + strlen(tb) + 2;
    char *msg = malloc(n);
    if (msg != NULL) {
        snprintf(msg, n, "%s\n%s", context, tb);
        Py_BEGIN_ALLOW_THREADS
        cs_go_log(CS_LOG_ERROR, msg, strlen(msg));
        Py_END_ALLOW_THREADS
        free(msg);
    }
    free(tb);
}

/* GIL hand-over from the ASGI loop thread to WSGI threads.
 *
 * Under load the loop thread always has another event to run, so it never
 * lets go of the GIL by itself, and a WSGI thread waiting for it gets it only
 * when CPython forces a switch, after sys.getswitchinterval() (5 ms): twice
 * per request (to start it, and again after its response is written).
 * Measured: a Flask hello at 1 connection next to a FastAPI app at 50 got
 * 122 req/s, p50 6.6 ms. So a WSGI thread counts itself while it waits for
 * the GIL, and the loop thread, at each response it starts and each batch of
 * events it takes, hands the GIL to one that waits and queues behind it. */
static atomic_int g_wsgi_waiting; /* WSGI threads waiting in wsgi_take_gil */
static atomic_uint g_wsgi_taken;  /* GIL acquisitions by WSGI threads */
/* Set once the ASGI loop runs: until then (a WSGI-only Caddy) WSGI threads
 * take the GIL without counting. */
static atomic_int g_loop_runs;

/* How long the loop thread waits for a woken WSGI thread to take the GIL
 * before it takes it back itself (the woken thread may have no CPU yet). */
#define CS_HANDOVER_NS 200000
/* The loop hands the GIL over at most once per this long: each hand-over
 * costs the loop ~100-200 µs (the WSGI thread's wake-up, its turn, the loop's
 * own wake-up). Measured, FastAPI at 50 connections and Flask at 1: every
 * time a WSGI thread waits, 4.4k / 1.5k req/s (FastAPI alone 7.5k); once per
 * 0.5 ms 5.2k / 0.9k; once per 1 ms 6.4k / 0.6k, Flask p50 1.5 ms; 2 ms
 * 7.2k / 0.4k. */
#define CS_HANDOVER_EVERY_NS 1000000

/* A WSGI thread takes the GIL. GIL: not held in; held out, ts current. */
static void wsgi_take_gil(PyThreadState *ts) {
    if (!atomic_load_explicit(&g_loop_runs, memory_order_relaxed)) {
        PyEval_RestoreThread(ts);
        return;
    }
    atomic_fetch_add_explicit(&g_wsgi_waiting, 1, memory_order_relaxed);
    PyEval_RestoreThread(ts);
    atomic_fetch_sub_explicit(&g_wsgi_waiting, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&g_wsgi_taken, 1, memory_order_release);
}

/* Py_BEGIN/END_ALLOW_THREADS for WSGI threads: they take the GIL back through
 * wsgi_take_gil, so the loop thread sees them waiting. */
#define WSGI_BEGIN_ALLOW_THREADS { PyThreadState *_save = PyEval_SaveThread();
#define WSGI_END_ALLOW_THREADS wsgi_take_gil(_save); }

/* CLOCK_MONOTONIC in ns (vDSO: no syscall). GIL: either. */
static int64_t mono_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int64_t g_loop_back; /* when the loop thread last had the GIL back (loop thread only) */

/* If a WSGI thread waits for the GIL and the loop has had it for
 * CS_HANDOVER_EVERY_NS, let the WSGI thread have it: release, yield the CPU
 * until a WSGI thread has taken it (at most CS_HANDOVER_NS), then wait for it
 * back like any thread. One relaxed load when none waits. Called at the top
 * of asgi_take and asgi_headers, where the loop holds no borrowed state that
 * another thread could change.
 * GIL: held in/out (released meanwhile); the ASGI loop thread only. */
static void loop_hand_over_gil(void) {
    if (atomic_load_explicit(&g_wsgi_waiting, memory_order_relaxed) == 0) {
        return;
    }
    if (mono_ns() - g_loop_back < CS_HANDOVER_EVERY_NS) {
        return;
    }
    unsigned taken = atomic_load_explicit(&g_wsgi_taken, memory_order_acquire);
    PyThreadState *ts = PyEval_SaveThread();
    int64_t until = mono_ns() + CS_HANDOVER_NS;
    while (atomic_load_explicit(&g_wsgi_taken, memory_order_acquire) == taken && mono_ns() < until) {
        sched_yield();
    }
    PyEval_RestoreThread(ts);
    g_loop_back = mono_ns();
}

/* The largest first write sent without releasing the GIL: what net/http
 * buffers before it writes to the socket (its bufferBeforeChunkingSize; the
 * HTTP/2 and HTTP/3 writers buffer more). */
#define CS_SMALL_FIRST_WRITE 2048

/* Turn a cs_go_* error code into a Python exception. GIL: held in/out. */
static PyObject *raise_code(long code) {
    switch (code) {
    case CS_ERR_CLIENT_GONE:
        PyErr_SetString(g_client_gone, "client disconnected");
        break;
    case CS_ERR_TOO_LARGE: /* the app cannot answer: Caddy sends a 413 */
        PyErr_SetString(g_client_gone, "request body larger than the server's limit (request_body max_size)");
        break;
    case CS_ERR_BAD_BODY: /* the app cannot answer: Caddy sends a 400 */
        PyErr_SetString(g_client_gone, "malformed request body (chunked encoding): the client gets a 400");
        break;
    case CS_ERR_BODY_CLOSED:
        PyErr_SetString(PyExc_OSError,
                        "the request body cannot be read after the response began: over HTTP/1.x, "
                        "Go's server discards the unread body when the response starts unless "
                        "Caddy's enable_full_duplex server option is on");
        break;
    case CS_ERR_BAD_HEADER:
        PyErr_SetString(PyExc_ValueError,
                        "invalid response header: a name must be a token and no "
                        "name or value may contain CR, LF or NUL");
        break;
    case CS_ERR_BAD_STATUS:
        PyErr_SetString(PyExc_ValueError, "invalid response status code");
        break;
    case CS_ERR_BAD_CLOSE:
        PyErr_SetString(PyExc_ValueError,
                        "websocket.close: code must be 1000, 1001-1003, 1007-1014 or 3000-4999, "
                        "and the reason at most 123 bytes");
        break;
    case CS_ERR_BAD_STATE:
        PyErr_SetString(PyExc_RuntimeError,
                        "response body sent before the response headers");
        break;
    default:
        PyErr_SetString(PyExc_OSError, "I/O error while serving the request");
    }
    return NULL;
}

/* The result of a call into Go: None, or the exception for its error code.
 * GIL: held in/out. owns: new reference, or NULL with an exception set. */
static PyObject *none_or_raise(long rc) {
    if (rc != CS_OK) {
        return raise_code(rc);
    }
    Py_RETURN_NONE;
}

/* The driver's flush scheduler (caddysnake_py.asgi._flush_soon), registered
 * once with asgi_on_flush_due; a strong reference kept for the process. */
static PyObject *flush_due_cb = NULL;

/* The result of an ASGI message queued for Go (msg_post): None, after calling
 * the driver's flush scheduler when it is the first message since the last
 * flush (so no call site can forget to, and none strands a message), or the
 * exception for an error code.
 * GIL: held in/out. owns: new reference, or NULL with an exception set. */
static PyObject *due_or_raise(long rc) {
    if (rc == CS_OK_FLUSH) {
        if (flush_due_cb == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "asgi_on_flush_due was never called");
            return NULL;
        }
        PyObject *r = PyObject_CallNoArgs(flush_due_cb);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
        Py_RETURN_NONE;
    }
    return none_or_raise(rc);
}

/* ---- response header checks (the same rules as Go's httpguts) ---- */

static int is_tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Whether p[0:n] is a valid Content-Length, stored in *out. Spaces and
 * tabs around the number are allowed (RFC 9110 5.5: they are not part of a
 * field value; gunicorn and uvicorn accept them) and not sent
 * (addAppHeaders). */
static int parse_length(const char *p, size_t n, long long *out) {
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
        n--;
    }
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t')) {
        i++;
    }
    i += (i < n && p[i] == '+') ? 1 : 0;
    if (i == n || n - i > 18) { /* 18 digits cannot overflow */
        return 0;
    }
    long long v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 1;
}

/* Which response header check_headers refused, and why. */
typedef struct {
    size_t index;
    const char *why;
} bad_header;

/* The declared Content-Length of a response (-1 without one), or
 * CS_ERR_BAD_HEADER if a name is not a token, a value holds a control
 * character other than HTAB (Go's httpguts rules), or Content-Length values
 * are not one number (RFC 9110 8.6: Go would send the first and the body
 * would be counted against another); *bad then says which and why
 * (raise_bad_header). Checked before any header reaches a ResponseWriter,
 * so a bad one becomes a clean 500. WSGI and ASGI alike. GIL: not needed. */
static long long check_headers(const cs_str *kv, size_t n, bad_header *bad) {
    long long length = -1;
    for (size_t i = 0; i < n; i++) {
        const cs_str *name = &kv[2 * i], *val = &kv[2 * i + 1];
        bad->index = i;
        bad->why = "a header name must be a token (RFC 9110 5.6.2)";
        if (name->n == 0) {
            return CS_ERR_BAD_HEADER;
        }
        for (size_t j = 0; j < name->n; j++) {
            if (!is_tchar((unsigned char)name->p[j])) {
                return CS_ERR_BAD_HEADER;
            }
        }
        bad->why = "a header value must not contain CR, LF, NUL or another control character";
        for (size_t j = 0; j < val->n; j++) {
            unsigned char c = (unsigned char)val->p[j];
            if ((c < ' ' && c != '\t') || c == 0x7f) {
                return CS_ERR_BAD_HEADER;
            }
        }
        if (name->n == 14 && strncasecmp(name->p, "content-length", 14) == 0) {
            long long v;
            bad->why = "Content-Length must be a number of bytes";
            if (!parse_length(val->p, val->n, &v)) {
                return CS_ERR_BAD_HEADER;
            }
            bad->why = "Content-Length given twice with different values";
            if (length >= 0 && v != length) {
                return CS_ERR_BAD_HEADER;
            }
            length = v;
        }
    }
    return length;
}

/* Raise the ValueError for the header check_headers refused, naming it
 * (repr, so a CR or LF in it cannot forge a log line). GIL: held. Returns
 * NULL. */
static PyObject *raise_bad_header(const cs_str *kv, const bad_header *bad) {
    const cs_str *name = &kv[2 * bad->index], *val = &kv[2 * bad->index + 1];
    PyObject *n = PyUnicode_DecodeLatin1(name->p, (Py_ssize_t)(name->n < 100 ? name->n : 100), NULL);
    PyObject *v = PyUnicode_DecodeLatin1(val->p, (Py_ssize_t)(val->n < 100 ? val->n : 100), NULL);
    if (n != NULL && v != NULL) {
        PyErr_Format(PyExc_ValueError, "invalid response header %R: %R: %s", n, v, bad->why);
    }
    Py_XDECREF(n);
    Py_XDECREF(v);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* 1. the `_caddysnake` built-in module                                      */
/* ------------------------------------------------------------------------ */

/* One Request object per HTTP request: the Python driver's only handle on the
 * Go side of that request. `h` is zeroed when the request ends, so a stale
 * reference (an app keeping wsgi.input around) fails cleanly instead of
 * touching another request. `busy` guards against two Python threads calling
 * into Go for the same request at once (the GIL is released during calls). */
typedef struct {
    PyObject_HEAD
    uintptr_t h;
    int busy;
    /* Body bytes handed to Python so far: wsgi.input compares it with its
     * own position to see whether it has anything buffered (tell()). */
    long long given;
} RequestObject;

static PyTypeObject RequestType;

/* GIL: held. Returns 0 and sets an exception if the request cannot be used. */
static int request_enter(RequestObject *self) {
    if (self->h == 0) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on a finished request");
        return 0;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "concurrent I/O on the same request from two threads");
        return 0;
    }
    self->busy = 1;
    return 1;
}

/* Read into the caller's buffer: up to len(buffer) bytes (what has
 * arrived), or with full, len(buffer) bytes, fewer only at the end of the
 * body. Straight into the buffer, no intermediate copy; 0 means the end of
 * the body. GIL: held in/out, released while Go reads from the client. */
static PyObject *request_readinto_impl(RequestObject *self, PyObject *arg, int full) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        return NULL;
    }
    if (!request_enter(self)) {
        PyBuffer_Release(&view);
        return NULL;
    }
    long n;
    WSGI_BEGIN_ALLOW_THREADS
    n = cs_go_read(self->h, (char *)view.buf, (size_t)view.len, full);
    WSGI_END_ALLOW_THREADS
    self->busy = 0;
    PyBuffer_Release(&view);
    if (n < 0) {
        return raise_code(n);
    }
    self->given += n;
    return PyLong_FromLong(n);
}

/* Request.readinto(buffer) -> int: what has arrived (the raw stream's
 * readinto). Request.readinto_full(buffer) -> int: the buffer filled, short
 * only at the end of the body (a buffered stream's readinto). */
static PyObject *request_readinto(RequestObject *self, PyObject *arg) {
    return request_readinto_impl(self, arg, 0);
}

static PyObject *request_readinto_full(RequestObject *self, PyObject *arg) {
    return request_readinto_impl(self, arg, 1);
}

/* Request.tell() -> int: body bytes handed to Python so far. GIL: held. */
static PyObject *request_tell(RequestObject *self, PyObject *unused) {
    return PyLong_FromLongLong(self->given);
}

/* Request.read_full(n) -> bytes: n body bytes, fewer only at the end of the
 * body; n < 0: the rest of a body of known length, or None if its length is
 * unknown (chunked). One call into Go fills a new bytes object in place: no
 * intermediate copy, and the GIL is released once, not once per piece that
 * has arrived. n is cut to what is left of a body of known length, and for
 * one of unknown length the object grows from CS_READ_STEP as the body
 * arrives, so an app's read(2**30) allocates no more than the body.
 * GIL: held in/out, released while Go reads from the client.
 * owns: a new reference, or NULL with an exception set. */
static PyObject *request_read_full(RequestObject *self, PyObject *arg) {
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!request_enter(self)) {
        return NULL;
    }
    /* Go only looks at a counter: no need to release the GIL. */
    long long left = cs_go_body_left(self->h);
    if (left < -1) {
        self->busy = 0;
        return raise_code((long)left);
    }
    if (n < 0) {
        if (left == -1) {
            self->busy = 0;
            Py_RETURN_NONE;
        }
        n = (Py_ssize_t)left;
    } else if (left >= 0 && (long long)n > left) {
        n = (Py_ssize_t)left;
    }
    Py_ssize_t size = left == -1 && n > CS_READ_STEP ? CS_READ_STEP : n;
    PyObject *buf = PyBytes_FromStringAndSize(NULL, size);
    Py_ssize_t got = 0;
    while (buf != NULL && size > got) {
        char *p = PyBytes_AS_STRING(buf); /* not shared until returned */
        long r;
        WSGI_BEGIN_ALLOW_THREADS
        r = cs_go_read(self->h, p + got, (size_t)(size - got), 1);
        WSGI_END_ALLOW_THREADS
        if (r < 0) {
            Py_CLEAR(buf);
            raise_code(r);
            break;
        }
        got += r;
        if (got < size || size == n) {
            break; /* the end of the body, or n bytes */
        }
        size = size > n / 2 ? n : 2 * size; /* more of a chunked body */
        if (_PyBytes_Resize(&buf, size) < 0) {
            buf = NULL;
        }
    }
    self->busy = 0;
    if (buf == NULL) {
        return NULL;
    }
    self->given += got;
    if (got < size && _PyBytes_Resize(&buf, got) < 0) {
        return NULL;
    }
    return buf;
}

/* Borrow the latin-1 bytes of a str header item. PEP 3333 requires header
 * names and values to be latin-1 str: a 1-byte-kind str *is* its latin-1
 * encoding, so no copy is needed. GIL: held. Returns 0 with an exception set. */
static int header_item(PyObject *s, cs_str *out) {
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError,
                     "response header names and values must be str, not %.100s",
                     Py_TYPE(s)->tp_name);
        return 0;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(s) < 0) {
        return 0;
    }
#endif
    if (PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND) {
        PyErr_SetString(PyExc_ValueError,
                        "response header contains characters outside latin-1");
        return 0;
    }
    out->p = (const char *)PyUnicode_1BYTE_DATA(s);
    out->n = (size_t)PyUnicode_GET_LENGTH(s);
    return 1;
}

/* Request.send(status, headers, body, flush) -> None
 *   status   int; 0 when the headers were already sent
 *   headers  list of (name, value) str pairs, or None when status is 0
 *   body     bytes-like (may be empty)
 *   flush    push the bytes to the client now (streaming)
 * One crossing sends the headers together with the first body chunk.
 * GIL: held in/out; released while Go writes, or while a streamed chunk
 * waits for room in Go's queue (it is copied into it with the GIL held: that
 * never blocks, and saves a GIL hand-off per chunk).
 * owns: a large last chunk (bytes) may gain a reference that Go holds until
 * it has written it, then hands back (cs_tail_done). */
#define CS_STACK_HEADERS 32
static PyObject *request_send(RequestObject *self, PyObject *const *args,
                              Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "send(status, headers, body, flush)");
        return NULL;
    }
    int status = PyLong_AsLong(args[0]);
    if (status == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int flush = PyObject_IsTrue(args[3]);
    if (flush < 0) {
        return NULL;
    }
    /* Hold the header items in a tuple we own: the GIL is released while Go
     * reads them, and the app could mutate its list from another thread. */
    PyObject *items = NULL;
    cs_str stack[CS_STACK_HEADERS * 2];
    cs_str *hdrs = stack;
    Py_ssize_t nh = 0;
    if (status != 0) {
        if (!PyList_Check(args[1])) {
            PyErr_Format(PyExc_TypeError, "response headers must be a list, not %.100s",
                         Py_TYPE(args[1])->tp_name);
            return NULL;
        }
        items = PyList_AsTuple(args[1]);
        if (items == NULL) {
            return NULL;
        }
        nh = PyTuple_GET_SIZE(items);
        if (nh > CS_STACK_HEADERS) {
            hdrs = PyMem_Malloc(sizeof(cs_str) * 2 * (size_t)nh);
            if (hdrs == NULL) {
                Py_DECREF(items);
                return PyErr_NoMemory();
            }
        }
        for (Py_ssize_t i = 0; i < nh; i++) {
            PyObject *pair = PyTuple_GET_ITEM(items, i);
            if (!(PyTuple_Check(pair) || PyList_Check(pair)) || PySequence_Fast_GET_SIZE(pair) != 2) {
                PyErr_SetString(PyExc_TypeError,
                                "each response header must be a (name, value) tuple");
                goto fail;
            }
            PyObject **kv = PySequence_Fast_ITEMS(pair);
            if (!header_item(kv[0], &hdrs[2 * i]) || !header_item(kv[1], &hdrs[2 * i + 1])) {
                goto fail;
            }
        }
    }
    bad_header bad = {0, ""};
    long long clen = check_headers(hdrs, (size_t)nh, &bad); /* Go reports a bad one in order */
    Py_buffer body;
    if (PyObject_GetBuffer(args[2], &body, PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Format(PyExc_TypeError, "response body must be bytes, not %.100s",
                     Py_TYPE(args[2])->tp_name);
        goto fail;
    }
    if (!request_enter(self)) {
        PyBuffer_Release(&body);
        goto fail;
    }
    long rc;
    if (status == 0 && flush && body.len > 0 && body.len < CS_BIG_WRITE) {
        rc = cs_go_stream(self->h, (char *)body.buf, (size_t)body.len);
        if (rc == CS_STREAM_WAIT) {
            WSGI_BEGIN_ALLOW_THREADS
            rc = cs_go_stream_wait(self->h);
            WSGI_END_ALLOW_THREADS
        }
    } else {
        int started = 0; /* Go sent the headers but refused the tail */
        rc = CS_TAIL_REFUSED;
        if (PyBytes_CheckExact(args[2]) && body.len >= CS_ZERO_COPY_MIN &&
            (!flush || (status != 0 && clen == body.len))) {
            /* The response's last chunk (a one-chunk list, the end of the
             * body, a first chunk that completes the declared
             * Content-Length: Flask's, Django's), large and immutable: Go
             * keeps it to write from the request's own goroutine, and this
             * thread is free for the next request at once, however slow
             * the client (cs_tail_done). Go does not block meanwhile, so
             * the GIL stays. */
            rc = cs_go_send(self->h, status, hdrs, (size_t)nh, clen, (char *)body.buf,
                            (size_t)body.len, flush, args[2]);
            if (rc == CS_TAIL_KEPT) {
                Py_INCREF(args[2]); /* Go's, until it hands it back */
                rc = CS_OK;
            } else if (rc == CS_TAIL_REFUSED) {
                started = status != 0; /* write it here, after the headers */
            }
        }
        if (rc == CS_TAIL_REFUSED) {
            /* A response's first write, small and unflushed (a one-chunk
             * list, or a chunk that completes the declared Content-Length,
             * after which cs_go_send skips the flush: Flask's; not so for a
             * status without a body, whose bytes Go drops and still
             * flushes), only fills Go's response buffer: it never waits for
             * the client, so the GIL stays. One GIL round trip less per such
             * response, and next to a busy ASGI loop one hand-over less
             * (loop_hand_over_gil). */
            int st = started ? 0 : status;
            int keep_gil = st != 0 && body.len <= CS_SMALL_FIRST_WRITE &&
                           (!flush || (clen == body.len && st != 204 && st != 304));
            PyThreadState *save = keep_gil ? NULL : PyEval_SaveThread();
            rc = cs_go_send(self->h, st, hdrs, (size_t)nh, clen, (char *)body.buf,
                            (size_t)body.len, flush, NULL);
            if (save != NULL) {
                wsgi_take_gil(save);
            }
        }
    }
    self->busy = 0;
    PyBuffer_Release(&body);
    PyObject *r;
    if (rc == CS_ERR_BAD_HEADER) {
        r = raise_bad_header(hdrs, &bad);
    } else if (rc == CS_ERR_BAD_STATUS) { /* say which, and what is allowed (Go's range) */
        r = PyErr_Format(PyExc_ValueError, "invalid response status code %d: must be 200-999", status);
    } else {
        r = none_or_raise(rc);
    }
    if (hdrs != stack) {
        PyMem_Free(hdrs);
    }
    Py_XDECREF(items);
    return r;
fail:
    if (hdrs != stack) {
        PyMem_Free(hdrs);
    }
    Py_XDECREF(items);
    return NULL;
}

/* Request.sendfile(fd, offset, count) -> int: Go sends count bytes of the
 * open file fd from offset to the client (sendfile(2) where the connection
 * allows) once the app's thread is free (tails.go), and returns how many it
 * will send. fd stays owned by Python: Go opens the file anew. count < 0
 * means to the end of the file. GIL: held in/out, released while Go opens
 * the file. */
static PyObject *request_sendfile(RequestObject *self, PyObject *args) {
    int fd;
    long long offset, count;
    if (!PyArg_ParseTuple(args, "iLL", &fd, &offset, &count)) {
        return NULL;
    }
    if (!request_enter(self)) {
        return NULL;
    }
    long long n;
    WSGI_BEGIN_ALLOW_THREADS
    n = cs_go_sendfile(self->h, fd, offset, count);
    WSGI_END_ALLOW_THREADS
    self->busy = 0;
    if (n < 0) {
        return raise_code((long)n);
    }
    return PyLong_FromLongLong(n);
}

/* Request.abort() -> None: the response has begun and cannot be completed;
 * Go aborts the connection (HTTP/1) or resets the stream (HTTP/2) so the
 * client sees truncation instead of a short "complete" response.
 * GIL: held in/out (Go only sets a flag). */
static PyObject *request_abort(RequestObject *self, PyObject *unused) {
    if (self->h != 0) {
        cs_go_abort(self->h);
    }
    Py_RETURN_NONE;
}

static PyMethodDef request_methods[] = {
    {"readinto", (PyCFunction)request_readinto, METH_O, "Read the body bytes that have arrived into a buffer."},
    {"readinto_full", (PyCFunction)request_readinto_full, METH_O,
     "Fill a buffer with body bytes, short only at the end of the body."},
    {"tell", (PyCFunction)request_tell, METH_NOARGS, "Body bytes read so far."},
    {"read_full", (PyCFunction)request_read_full, METH_O,
     "read_full(n): n body bytes, fewer only at its end; n < 0: the rest, or None if of unknown length."},
    {"send", (PyCFunction)(void (*)(void))request_send, METH_FASTCALL,
     "send(status, headers, body, flush)"},
    {"sendfile", (PyCFunction)request_sendfile, METH_VARARGS, "sendfile(fd, offset, count)"},
    {"abort", (PyCFunction)request_abort, METH_NOARGS, "Abort the connection."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RequestType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_caddysnake.Request",
    .tp_basicsize = sizeof(RequestObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The Go side of one HTTP request (created by the server only).",
    .tp_methods = request_methods,
};

/* _caddysnake.log(level, message): write one record to Caddy's logger.
 * GIL: held in/out, released while zap writes. */
static PyObject *mod_log(PyObject *self, PyObject *args) {
    int level;
    const char *msg;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "is#", &level, &msg, &n)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    cs_go_log(level, (char *)msg, (size_t)n);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}


/* ---- ASGI queues between Go and the loop thread (see caddysnake.h) -------
 * Plain C, no Python: Go's threads and the loop thread meet only here, under
 * two short mutexes, so the loop thread never enters Go on the request path.
 * The fds are Go's, set once by cs_asgi_start_loop before the loop runs. */
static int in_efd = -1, out_efd = -1, late_fd = -1;

static pthread_mutex_t in_mu = PTHREAD_MUTEX_INITIALIZER;
static cs_event *in_q, *in_spare; /* the loop takes in_q whole and hands back its array */
static size_t in_len, in_cap, in_spare_cap;
static int in_signaled; /* the eventfd was written since the loop last took */

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static cs_msg *out_head, *out_tail;     /* posted since the last flush, in order */
static cs_msg *ready_head, *ready_tail; /* flushed, not yet taken by Go */
static int ready_signaled;              /* out_efd written since Go last took */
static int late_armed;                  /* the timerfd is set */
static long long out_first_ns;          /* when out_head was posted */
/* The CS_MSG_START messages posted since the last flush that still carry
 * CS_START_NOW; msg_post clears the flag when another message of the same
 * request follows before the flush. Almost always empty: only starts without
 * a Content-Length enter it, and most leave with their body. */
static cs_msg **held;
static size_t held_len, held_cap;

static void wake_fd(int fd) {
    uint64_t one = 1;
    /* EAGAIN only if the counter is saturated: the reader is due anyway. */
    if (write(fd, &one, sizeof one) < 0) {
    }
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void arm_late(long long ns) {
    struct itimerspec t = {{0, 0}, {ns / 1000000000LL, ns % 1000000000LL}};
    timerfd_settime(late_fd, 0, &t, NULL);
}

static void out_of_memory(void) {
    fputs("caddysnake: out of memory in the ASGI queues\n", stderr);
    abort(); /* an event or message dropped silently would hang a request */
}

/* Queue ev; returns whether the caller must wake the loop. in_mu held. */
static int in_push_locked(cs_event ev) {
    if (in_len == in_cap) {
        size_t cap = in_cap ? in_cap * 2 : 256;
        cs_event *q = realloc(in_q, cap * sizeof *q);
        if (q == NULL) {
            out_of_memory();
        }
        in_q = q;
        in_cap = cap;
    }
    in_q[in_len++] = ev;
    return !in_signaled;
}

void cs_asgi_push_quiet(cs_event ev) {
    pthread_mutex_lock(&in_mu);
    in_push_locked(ev); /* in_signaled stays as it is: the next push wakes */
    pthread_mutex_unlock(&in_mu);
}

void cs_asgi_push(cs_event ev) {
    pthread_mutex_lock(&in_mu);
    int wake = in_push_locked(ev);
    in_signaled = 1;
    pthread_mutex_unlock(&in_mu);
    if (wake) {
        wake_fd(in_efd);
    }
}

/* Take every queued event: *n of them, in an array that stays the caller's
 * until it passes it back to in_give_back. Loop thread only. */
static cs_event *in_take(size_t *n, size_t *cap) {
    pthread_mutex_lock(&in_mu);
    cs_event *q = in_q;
    *n = in_len;
    *cap = in_cap;
    in_q = in_spare;
    in_cap = in_spare_cap;
    in_spare = NULL;
    in_spare_cap = in_len = 0;
    in_signaled = 0; /* the loop read the eventfd before taking */
    pthread_mutex_unlock(&in_mu);
    return q;
}

static void in_give_back(cs_event *q, size_t cap) {
    pthread_mutex_lock(&in_mu);
    if (in_spare == NULL) {
        in_spare = q, in_spare_cap = cap;
        q = NULL;
    }
    pthread_mutex_unlock(&in_mu);
    free(q);
}

/* A new message with room for nhdr header pairs plus extra bytes of header
 * text and len bytes of data. owns: the caller, until msg_post. */
static cs_msg *msg_new(uintptr_t handle, int kind, size_t nhdr, size_t extra, size_t len) {
    size_t hsize = nhdr * 2 * sizeof(cs_str);
    cs_msg *m = malloc(sizeof *m + hsize + extra + len);
    if (m == NULL) {
        return NULL;
    }
    memset(m, 0, sizeof *m);
    m->handle = handle;
    m->kind = kind;
    m->nhdr = nhdr;
    m->hdr = (cs_str *)(m + 1);
    m->data = (char *)(m + 1) + hsize + extra;
    m->len = len;
    m->fd = -1;
    return m;
}

/* Remember a CS_START_NOW start until the flush. owns: m stays the outbox's.
 * out_mu held; GIL: held (the loop thread). */
static void hold_start(cs_msg *m) {
    if (held_len == held_cap) {
        size_t cap = held_cap ? held_cap * 2 : 16;
        cs_msg **h = realloc(held, cap * sizeof *h);
        if (h == NULL) {
            m->flags &= ~CS_START_NOW; /* held for the body, as a sized one */
            return;
        }
        held = h;
        held_cap = cap;
    }
    held[held_len++] = m;
}

/* A message of request handle follows its start in the same flush: the start
 * goes out with it, not before. out_mu held; GIL: held (the loop thread). */
static void unhold_start(uintptr_t handle) {
    for (size_t i = 0; i < held_len; i++) {
        if (held[i]->handle == handle) {
            held[i]->flags &= ~CS_START_NOW;
            held[i] = held[--held_len];
            return;
        }
    }
}

/* Queue m until the next flush; CS_OK_FLUSH if it is the first since the
 * last one (the driver schedules the flush). owns: takes m. GIL: held (the
 * loop thread), but only out_mu matters here. */
static long msg_post(cs_msg *m) {
    int arm = 0;
    pthread_mutex_lock(&out_mu);
    if (m->kind == CS_MSG_START && (m->flags & CS_START_NOW)) {
        hold_start(m);
    } else if (held_len > 0 && m->kind != CS_MSG_WANT_BODY) {
        unhold_start(m->handle);
    }
    int first = out_head == NULL;
    if (first) {
        out_head = m;
        out_first_ns = now_ns();
        arm = !late_armed;
        late_armed = 1;
    } else {
        out_tail->next = m;
    }
    out_tail = m;
    pthread_mutex_unlock(&out_mu);
    if (arm) {
        arm_late(CS_LATE_FLUSH_NS);
    }
    return first ? CS_OK_FLUSH : CS_OK;
}

/* Move the posted messages to the ready list; whether Go must be woken.
 * out_mu held. */
static int out_flush_locked(void) {
    if (out_head == NULL) {
        return 0;
    }
    if (ready_head) {
        ready_tail->next = out_head;
    } else {
        ready_head = out_head;
    }
    ready_tail = out_tail;
    out_head = out_tail = NULL;
    held_len = 0; /* what is left there goes out at once */
    int wake = !ready_signaled;
    ready_signaled = 1;
    return wake;
}

/* The late flush (the loop has not flushed for CS_LATE_FLUSH_NS: it is busy
 * in a long step): move the posted messages to the ready list, except the
 * CS_START_NOW starts, which wait for the loop's own flush. Only at the end
 * of the step is it known whether the app followed the start with its body
 * or failed (a 500 is then still possible); a start alone still goes out at
 * the step's end, as before. Whether Go must be woken. out_mu held. */
static int out_flush_late_locked(void) {
    cs_msg *keep = NULL, *keep_tail = NULL, *move = NULL, *move_tail = NULL;
    for (cs_msg *m = out_head, *next; m != NULL; m = next) {
        next = m->next;
        m->next = NULL;
        int now = m->kind == CS_MSG_START && (m->flags & CS_START_NOW);
        cs_msg **head = now ? &keep : &move, **tail = now ? &keep_tail : &move_tail;
        if (*head == NULL) {
            *head = m;
        } else {
            (*tail)->next = m;
        }
        *tail = m;
    }
    if (move == NULL) {
        out_head = keep, out_tail = keep_tail;
        return 0;
    }
    out_head = move, out_tail = move_tail;
    size_t still_held = held_len;
    int wake = out_flush_locked(); /* clears held_len: the kept starts are still held */
    out_head = keep, out_tail = keep_tail;
    held_len = still_held;
    return wake;
}

static void out_flush(void) {
    pthread_mutex_lock(&out_mu);
    int wake = out_flush_locked();
    pthread_mutex_unlock(&out_mu);
    if (wake) {
        wake_fd(out_efd);
    }
}

void cs_asgi_late(void) {
    long long rest = 0;
    pthread_mutex_lock(&out_mu);
    late_armed = 0;
    int wake = 0;
    if (out_head != NULL) {
        long long waited = now_ns() - out_first_ns;
        if (waited >= CS_LATE_FLUSH_NS) {
            wake = out_flush_late_locked();
        } else {
            rest = CS_LATE_FLUSH_NS - waited; /* a newer batch: its own deadline */
            late_armed = 1;
        }
    }
    pthread_mutex_unlock(&out_mu);
    if (rest > 0) {
        arm_late(rest);
    }
    if (wake) {
        wake_fd(out_efd);
    }
}

cs_msg *cs_asgi_take_msgs(void) {
    pthread_mutex_lock(&out_mu);
    cs_msg *m = ready_head;
    ready_head = ready_tail = NULL;
    ready_signaled = 0;
    pthread_mutex_unlock(&out_mu);
    return m;
}

/* Free the list Go took. A ref still in a message (one Go did not take: its
 * request was over) goes back to the loop to be dropped. Any thread; GIL:
 * not needed. */
void cs_asgi_free_msgs(cs_msg *m) {
    while (m != NULL) {
        cs_msg *next = m->next;
        if (m->ref != NULL) {
            cs_asgi_push((cs_event){.app = m->ref, .kind = CS_EV_RELEASE});
        }
        if (m->fd >= 0) {
            close(m->fd);
        }
        free(m);
        m = next;
    }
}


/* ---- ASGI: functions of `_caddysnake` used by caddysnake_py.asgi ---------
 * All run on the event loop thread with the GIL held and never call Go: each
 * checks its message and copies it into a cs_msg (so send() raises on bad
 * input and the app may reuse its buffers at once), then queues it until
 * asgi_flush; the first one after a flush calls the driver's scheduler for
 * it (see due_or_raise). */

/* Fill out[] with borrowed views of ASGI headers: an iterable of
 * [name, value] byte-string pairs. The caller holds *keep (a new reference to
 * the sequence) while it uses the views. GIL: held. Returns the count, or -1
 * with an exception set. */
static Py_ssize_t asgi_headers(PyObject *headers, cs_str **out, cs_str *stack,
                               PyObject **keep) {
    *out = stack;
    *keep = PySequence_Fast(headers, "headers must be an iterable of [name, value] pairs");
    if (*keep == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(*keep);
    if (n > CS_STACK_HEADERS && (*out = PyMem_Malloc(sizeof(cs_str) * 2 * (size_t)n)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(*keep);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = items[i];
        if (!(PyTuple_Check(pair) || PyList_Check(pair)) || PySequence_Fast_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "each header must be a [name, value] pair");
            return -1;
        }
        PyObject **kv = PySequence_Fast_ITEMS(pair);
        for (int j = 0; j < 2; j++) {
            if (!PyBytes_Check(kv[j])) {
                PyErr_Format(PyExc_TypeError, "header names and values must be bytes, not %.100s",
                             Py_TYPE(kv[j])->tp_name);
                return -1;
            }
            (*out)[2 * i + j].p = PyBytes_AS_STRING(kv[j]);
            (*out)[2 * i + j].n = (size_t)PyBytes_GET_SIZE(kv[j]);
        }
    }
    return n;
}

/* A message holding copies of the n checked header pairs in kv. owns: new,
 * or NULL with an exception set. */
static cs_msg *headers_msg(uintptr_t handle, int kind, const cs_str *kv, size_t n) {
    size_t text = 0;
    for (size_t i = 0; i < 2 * n; i++) {
        text += kv[i].n;
    }
    cs_msg *m = msg_new(handle, kind, n, text, 0);
    if (m == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    char *p = (char *)(m->hdr + 2 * n);
    for (size_t i = 0; i < 2 * n; i++) {
        memcpy(p, kv[i].p, kv[i].n);
        m->hdr[i].p = p;
        m->hdr[i].n = kv[i].n;
        p += kv[i].n;
    }
    return m;
}

/* asgi_headers(handle, kind, status, headers, flags): response start (kind
 * 1), early hint (2), trailers (3) or WebSocket accept (4). Returns the
 * declared Content-Length of a response start, else None. GIL: held in/out. */
static PyObject *mod_asgi_headers(PyObject *self, PyObject *args) {
    loop_hand_over_gil();
    static const int kinds[] = {0, CS_MSG_START, CS_MSG_EARLY_HINT, CS_MSG_TRAILERS, CS_MSG_WS_ACCEPT};
    unsigned long long handle;
    int kind, status, flags;
    PyObject *headers;
    if (!PyArg_ParseTuple(args, "KiiOi", &handle, &kind, &status, &headers, &flags)) {
        return NULL;
    }
    if (kind < 1 || kind > 4) {
        return raise_code(CS_ERR_BAD_STATE);
    }
    if (kind == 1 && (status < 200 || status > 599)) {
        /* A final response's code (RFC 9110 15: 1xx are interim; 6xx and up
         * have no class). uvicorn refuses those too (a 500). */
        return PyErr_Format(PyExc_ValueError, "invalid response status code %d: must be 200-599", status);
    }
    cs_str stack[CS_STACK_HEADERS * 2], *hdrs;
    PyObject *keep = NULL;
    Py_ssize_t n = asgi_headers(headers, &hdrs, stack, &keep);
    bad_header bad = {0, ""};
    long long length = n < 0 ? -1 : check_headers(hdrs, (size_t)n, &bad);
    long rc = length >= -1 ? CS_OK : CS_ERR_BAD_HEADER;
    cs_msg *m = (n < 0 || rc != CS_OK) ? NULL : headers_msg((uintptr_t)handle, kinds[kind], hdrs, (size_t)n);
    if (rc != CS_OK) {
        raise_bad_header(hdrs, &bad);
    }
    if (hdrs != stack) {
        PyMem_Free(hdrs);
    }
    Py_XDECREF(keep);
    if (m == NULL) {
        return NULL; /* the exception is set */
    }
    m->status = status;
    m->flags = flags;
    if (kinds[kind] == CS_MSG_START && length < 0) {
        m->flags |= CS_START_NOW; /* unless the body follows in this flush: msg_post */
    }
    PyObject *r = due_or_raise(msg_post(m));
    if (r != NULL && kinds[kind] == CS_MSG_START && length >= 0) {
        Py_DECREF(r);
        return PyLong_FromLongLong(length);
    }
    return r;
}

/* A new message of kind carrying a copy of p[0:n], not yet posted; NULL
 * with MemoryError set. GIL: held. owns: the caller, until msg_post. */
static cs_msg *data_msg(uintptr_t handle, int kind, const void *p, size_t n) {
    cs_msg *m = msg_new(handle, kind, 0, 0, n);
    if (m == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    if (n > 0) {
        memcpy(m->data, p, n);
    }
    return m;
}

/* Queue a message carrying a copy of p[0:n]. GIL: held. */
static PyObject *post_data(uintptr_t handle, int kind, int status, int flags, const void *p, size_t n) {
    cs_msg *m = data_msg(handle, kind, p, n);
    if (m == NULL) {
        return NULL;
    }
    m->status = status;
    m->flags = flags;
    return due_or_raise(msg_post(m));
}

/* Queue a message whose data, p[0:n], lives inside obj: by reference (see
 * cs_msg), the message taking a new reference to obj. GIL: held. */
static PyObject *post_ref(uintptr_t handle, int kind, int flags, PyObject *obj, const char *p, size_t n) {
    cs_msg *m = msg_new(handle, kind, 0, 0, 0);
    if (m == NULL) {
        return PyErr_NoMemory();
    }
    m->data = (char *)p;
    m->len = n;
    m->flags = flags;
    Py_INCREF(obj);
    m->ref = obj;
    return due_or_raise(msg_post(m));
}

/* asgi_body(handle, body, more): queue the bytes for writing. A large bytes
 * object is queued by reference, not copied (see cs_msg): it is immutable,
 * so Go may read it without the GIL while the message holds a reference.
 * Anything else (small, or a mutable bytearray/memoryview the app may reuse
 * at once) is copied. */
static PyObject *mod_asgi_body(PyObject *self, PyObject *args) {
    unsigned long long handle;
    PyObject *obj;
    int more;
    if (!PyArg_ParseTuple(args, "KOp", &handle, &obj, &more)) {
        return NULL;
    }
    if (PyBytes_CheckExact(obj) && PyBytes_GET_SIZE(obj) >= CS_ZERO_COPY_MIN) {
        return post_ref((uintptr_t)handle, CS_MSG_BODY, more, obj, PyBytes_AS_STRING(obj),
                        (size_t)PyBytes_GET_SIZE(obj));
    }
    Py_buffer body;
    if (PyObject_GetBuffer(obj, &body, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *r = post_data((uintptr_t)handle, CS_MSG_BODY, 0, more, body.buf, (size_t)body.len);
    PyBuffer_Release(&body);
    return r;
}

/* asgi_signal(handle, what, arg[, arg2]): want-body (1; arg 1: a large
 * request body, so Go reads the chunk straight into a new bytes object sent
 * with the message, which comes back in CS_EV_BODY; arg2: what is left of
 * it, -1 if unknown), app done (2, arg =
 * failed), WebSocket credits (3: the app received arg messages of arg2
 * bytes in all, so Go may read that much more; see websocket.go).
 * GIL: held on entry and exit. */
static PyObject *mod_asgi_signal(PyObject *self, PyObject *args) {
    unsigned long long handle;
    int what, arg;
    long long arg2 = 0; /* a body's rest may pass 2 GiB */
    if (!PyArg_ParseTuple(args, "Kii|L", &handle, &what, &arg, &arg2)) {
        return NULL;
    }
    if (what < 1 || what > 3) {
        return raise_code(CS_ERR_BAD_STATE);
    }
    if (what == 3) {
        return post_data((uintptr_t)handle, CS_MSG_WANT_BODY, arg, (int)arg2, NULL, 0);
    }
    /* A large body (arg 1) is read into a bytes object; arg2 is what is
     * left of it when its length is known (else -1). The object is no
     * larger than that: cutting a buffer much larger than what Go read
     * (mod_asgi_take) made glibc mmap, mremap and munmap it per request. */
    Py_ssize_t size = CS_BODY_CHUNK;
    if (arg2 > 0 && arg2 < size) {
        size = (Py_ssize_t)arg2;
    }
    if (what == 1 && arg == 1 && size >= CS_ZERO_COPY_MIN) {
        /* Nobody else sees this object until Go has filled it and the loop
         * has cut it to size (mod_asgi_take), so Go may write it without
         * the GIL. */
        PyObject *buf = PyBytes_FromStringAndSize(NULL, size);
        if (buf == NULL) {
            return NULL;
        }
        PyObject *r = post_ref((uintptr_t)handle, CS_MSG_WANT_BODY, 0, buf, PyBytes_AS_STRING(buf), (size_t)size);
        Py_DECREF(buf); /* the message holds it now */
        return r;
    }
    if (what == 1) { /* a small rest: Go reads it into C memory */
        return post_data((uintptr_t)handle, CS_MSG_WANT_BODY, 0, 0, NULL, 0);
    }
    return post_data((uintptr_t)handle, CS_MSG_DONE, 0, arg, NULL, 0);
}

/* Whether an app may send code in a close frame (RFC 6455 7.4: 1004-1006 and
 * 1015 are reserved, 1016-2999 unassigned). */
static int valid_close_code(int code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* asgi_ws(handle, op, arg, data): WebSocket send (op 1: data is bytes or
 * str, sent as binary or text) or close (op 2: arg is the code, data the
 * reason). */
static PyObject *mod_asgi_ws(PyObject *self, PyObject *args) {
    unsigned long long handle;
    int op, arg;
    PyObject *data;
    if (!PyArg_ParseTuple(args, "KiiO", &handle, &op, &arg, &data)) {
        return NULL;
    }
    if (op != 1 && op != 2) {
        return raise_code(CS_ERR_BAD_STATE);
    }
    const char *p;
    Py_ssize_t n;
    int text = PyUnicode_Check(data);
    Py_buffer view = {0};
    if (text) {
        /* UTF-8 is cached on the str (no copy for ASCII strings). */
        if ((p = PyUnicode_AsUTF8AndSize(data, &n)) == NULL) {
            return NULL;
        }
    } else {
        if (PyObject_GetBuffer(data, &view, PyBUF_C_CONTIGUOUS) < 0) {
            return NULL;
        }
        p = view.buf;
        n = view.len;
    }
    PyObject *r;
    if (op == 1 && n >= CS_ZERO_COPY_MIN && (text || PyBytes_CheckExact(data))) {
        /* By reference, as a large HTTP body chunk: a str's UTF-8 and a
         * bytes object's data live as long as the object. */
        r = post_ref((uintptr_t)handle, CS_MSG_WS_SEND, text, data, p, (size_t)n);
    } else if (op == 1) {
        r = post_data((uintptr_t)handle, CS_MSG_WS_SEND, 0, text, p, (size_t)n);
    } else if (!valid_close_code(arg) || n > 123) {
        r = raise_code(CS_ERR_BAD_CLOSE);
    } else {
        r = post_data((uintptr_t)handle, CS_MSG_WS_CLOSE, arg, 0, p, (size_t)n);
    }
    if (!text) {
        PyBuffer_Release(&view);
    }
    return r;
}

/* asgi_pathsend(handle, path: str): Go serves the file itself, from a
 * descriptor opened here, in send(): once send() returns the app may delete
 * or replace the file (Starlette's FileResponse(background=...unlink) does),
 * as it may once a server without pathsend has read it. A file that cannot
 * be opened, or is not a regular file, raises OSError in send(), while the
 * response can still be a clean 500. GIL: held (open and fstat of a local
 * file are quick). owns: the descriptor goes with the message (cs_msg.fd). */
static PyObject *mod_asgi_pathsend(PyObject *self, PyObject *args) {
    unsigned long long handle;
    PyObject *path; /* bytes, from PyUnicode_FSConverter */
    if (!PyArg_ParseTuple(args, "KO&", &handle, PyUnicode_FSConverter, &path)) {
        return NULL;
    }
    struct stat st;
    /* O_NONBLOCK: opening a FIFO must not block the loop; a regular file
     * then gets its usual blocking reads back. */
    int fd = open(PyBytes_AS_STRING(path), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    /* A directory, a device, a FIFO: nothing with a length to send. */
    int err = fd < 0                                ? errno
              : fstat(fd, &st) != 0                 ? errno
              : S_ISDIR(st.st_mode)                 ? EISDIR
              : !S_ISREG(st.st_mode)                ? EINVAL
              : fcntl(fd, F_SETFL, O_RDONLY) != 0   ? errno
                                                    : 0;
    if (err != 0) {
        if (fd >= 0) {
            close(fd);
        }
        errno = err;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
        Py_DECREF(path);
        return NULL;
    }
    cs_msg *m = data_msg((uintptr_t)handle, CS_MSG_PATHSEND, PyBytes_AS_STRING(path),
                         (size_t)PyBytes_GET_SIZE(path));
    Py_DECREF(path);
    if (m == NULL) {
        close(fd);
        return NULL;
    }
    m->fd = fd;
    m->size = (long long)st.st_size;
    return due_or_raise(msg_post(m));
}

/* asgi_flush(): hand every message queued since the last flush to Go (one
 * eventfd write, and one wake-up of Go's delivering goroutine, for the whole
 * batch). GIL: held in/out. */
static PyObject *mod_asgi_flush(PyObject *self, PyObject *unused) {
    out_flush();
    Py_RETURN_NONE;
}

/* asgi_on_flush_due(callable): register the driver's flush scheduler, called
 * with no arguments by the message functions when a flush becomes due.
 * GIL: held in/out. owns: keeps a new reference to callable for good. */
static PyObject *mod_asgi_on_flush_due(PyObject *self, PyObject *cb) {
    if (!PyCallable_Check(cb)) {
        PyErr_SetString(PyExc_TypeError, "asgi_on_flush_due expects a callable");
        return NULL;
    }
    Py_INCREF(cb);
    Py_XSETREF(flush_due_cb, cb);
    Py_RETURN_NONE;
}

/* The HTTP scope of a request, built here on the loop thread from the fields
 * Go packed (asgi.go appendScope): in Python it was a quarter of the loop's
 * own time per raw ASGI request. Its keys and constant values are made once
 * (scope_consts_init) and kept for the life of the process; a WebSocket
 * scope starts as this one (caddysnake_py.asgi.Runner.ws_scope). */
static struct {
    PyObject *type, *asgi, *http_version, *method, *scheme, *path, *raw_path, *query_string,
        *root_path, *headers, *client, *server, *state, *extensions;
    PyObject *http, *asgi_version;
    PyObject *pathsend, *early_hint, *trailers, *tls;
    PyObject *server_cert, *client_cert_chain, *client_cert_name, *client_cert_error,
        *tls_version, *cipher_suite;
} K;

/* GIL: held. owns: the interned strings and values of K, never freed. */
static int scope_consts_init(void) {
    static const struct {
        PyObject **slot;
        const char *text;
    } strs[] = {
        {&K.type, "type"}, {&K.asgi, "asgi"}, {&K.http_version, "http_version"},
        {&K.method, "method"}, {&K.scheme, "scheme"}, {&K.path, "path"},
        {&K.raw_path, "raw_path"}, {&K.query_string, "query_string"},
        {&K.root_path, "root_path"}, {&K.headers, "headers"}, {&K.client, "client"},
        {&K.server, "server"}, {&K.state, "state"}, {&K.extensions, "extensions"},
        {&K.http, "http"}, {&K.pathsend, "http.response.pathsend"},
        {&K.early_hint, "http.response.early_hint"}, {&K.trailers, "http.response.trailers"},
        {&K.tls, "tls"}, {&K.server_cert, "server_cert"},
        {&K.client_cert_chain, "client_cert_chain"}, {&K.client_cert_name, "client_cert_name"},
        {&K.client_cert_error, "client_cert_error"}, {&K.tls_version, "tls_version"},
        {&K.cipher_suite, "cipher_suite"},
    };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        if ((*strs[i].slot = PyUnicode_InternFromString(strs[i].text)) == NULL) {
            return -1;
        }
    }
    /* One dict shared by every scope, as the Python driver did. Spec 2.3, as
     * uvicorn and Granian say, not 2.4, though send() raises after a
     * disconnect as 2.4 asks (2.3 allows it): at 2.4 Starlette drops the
     * task that listens for the client leaving a StreamingResponse, so a
     * stream idle between events (an SSE feed) would learn of it only at
     * its next send(), if ever. */
    K.asgi_version = Py_BuildValue("{ssss}", "version", "3.0", "spec_version", "2.3");
    return K.asgi_version == NULL ? -1 : 0;
}

/* Field caches: strings and bytes seen in earlier requests, so that the
 * environ's keys and usual values (REQUEST_METHOD, "GET", HTTP_HOST, its
 * value, a client's User-Agent...) and an ASGI scope's header names and
 * values are not made, hashed and freed anew for each request: a str keeps
 * its hash, so a cached environ key goes into the dict without siphash.
 * Direct-mapped by a hash of the bytes; a field that varies (a port, a
 * path) only replaces the entry in its slot, so each cache stays bounded.
 * Sharing is invisible to apps: str and bytes are immutable.
 * GIL: every access holds it. owns: one reference to each cached object. */
#define FIELD_CACHE_BITS 10
#define FIELD_CACHE_SLOTS (1 << FIELD_CACHE_BITS)
#define FIELD_CACHE_MAX 64 /* longer fields are made every time */
static PyObject *str_cache[FIELD_CACHE_SLOTS];   /* latin-1 str */
static PyObject *bytes_cache[FIELD_CACHE_SLOTS]; /* bytes */

/* The slot of p[:n] (n <= FIELD_CACHE_MAX) in a cache: a multiplicative
 * hash of the length and of the first and last 8 bytes (two loads, not a
 * loop over the bytes: FNV-1a over every byte measured as ~2% of the
 * server's CPU under a hello-world load). Fields differ in their first or
 * last bytes ("HTTP_ACCEPT_ENCODING", "HTTP_ACCEPT_LANGUAGE"), and a
 * collision costs only a miss. GIL: not needed. */
static PyObject **cache_slot(PyObject **cache, const char *p, size_t n) {
    uint64_t a = 0, b = 0;
    if (n >= 8) {
        memcpy(&a, p, 8);
        memcpy(&b, p + n - 8, 8);
    } else {
        memcpy(&a, p, n);
    }
    uint64_t h = ((a * 0x9E3779B97F4A7C15ull) ^ b ^ n) * 0xC2B2AE3D27D4EB4Full;
    return &cache[h >> (64 - FIELD_CACHE_BITS)];
}

/* Keeps o (a new reference, or NULL) in slot and returns it. GIL: held. */
static PyObject *cache_put(PyObject **slot, PyObject *o) {
    if (o != NULL) {
        Py_INCREF(o);
        Py_XSETREF(*slot, o);
    }
    return o;
}

/* Returns a new reference to the str of latin-1 bytes p[:n], or NULL with an
 * exception set. GIL: held. */
static PyObject *cached_str(const char *p, size_t n) {
    if (n > FIELD_CACHE_MAX) {
        return PyUnicode_DecodeLatin1(p, (Py_ssize_t)n, NULL);
    }
    PyObject **slot = cache_slot(str_cache, p, n);
    PyObject *s = *slot;
    /* Every cached str is compact 1-byte (DecodeLatin1 of n bytes makes a
     * str of n code points, each < 256); its hash is computed, once, when
     * it first goes into a dict. */
    if (s != NULL && PyUnicode_GET_LENGTH(s) == (Py_ssize_t)n &&
        memcmp(PyUnicode_1BYTE_DATA(s), p, n) == 0) {
        Py_INCREF(s);
        return s;
    }
    return cache_put(slot, PyUnicode_DecodeLatin1(p, (Py_ssize_t)n, NULL));
}

/* Returns a new reference to the bytes p[:n], or NULL with an exception
 * set. GIL: held. */
static PyObject *cached_bytes(const char *p, size_t n) {
    if (n > FIELD_CACHE_MAX) {
        return PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
    }
    PyObject **slot = cache_slot(bytes_cache, p, n);
    PyObject *b = *slot;
    if (b != NULL && PyBytes_GET_SIZE(b) == (Py_ssize_t)n && memcmp(PyBytes_AS_STRING(b), p, n) == 0) {
        Py_INCREF(b);
        return b;
    }
    return cache_put(slot, PyBytes_FromStringAndSize(p, (Py_ssize_t)n));
}

typedef struct {
    const char *p;
    Py_ssize_t n;
} field_ref;

/* The next [u32 len][bytes] field of a packed buffer: 1, or 0 at its end, or
 * -1 (SystemError set) if it is cut short. f views the buffer (no copy).
 *
 * The builders below run on the loop thread, GIL held in/out; each returns
 * a new reference, or NULL with an exception set, unless its comment says
 * otherwise. */
static int next_packed(const char **p, const char *end, field_ref *f) {
    uint32_t n;
    if (*p == end) {
        return 0;
    }
    if (end - *p < 4 || (memcpy(&n, *p, 4), (size_t)(end - *p - 4) < n)) {
        PyErr_SetString(PyExc_SystemError, "corrupt scope buffer from Go");
        return -1;
    }
    f->p = *p + 4;
    f->n = (Py_ssize_t)n;
    *p += 4 + n;
    return 1;
}

/* Put value (a new reference, stolen; NULL: a failure already set) in d:
 * 0, or -1 with an exception set. GIL: held. */
static int put(PyObject *d, PyObject *key, PyObject *value) {
    if (value == NULL) {
        return -1;
    }
    int rc = PyDict_SetItem(d, key, value);
    Py_DECREF(value);
    return rc;
}

/* o with a new reference to it, for put(). GIL: held. */
static PyObject *new_ref(PyObject *o) {
    Py_INCREF(o);
    return o;
}

/* A decimal field Go wrote (a port, a TLS number; empty: 0) as an int. */
static long decimal_value(field_ref f) {
    long v = 0;
    for (Py_ssize_t i = 0; i < f.n && i < 18; i++) {
        v = v * 10 + (f.p[i] - '0');
    }
    return v;
}

static PyObject *decimal(field_ref f) {
    return PyLong_FromLong(decimal_value(f));
}

/* A field as a str, latin-1 (each byte one code point), shared with
 * earlier requests that had the same (cached_str): "GET", "1.1", "http", a
 * client's address. */
static PyObject *latin1(field_ref f) {
    return cached_str(f.p, (size_t)f.n);
}

/* A field as bytes, shared like latin1's strs (cached_bytes). */
static PyObject *bytes(field_ref f) {
    return cached_bytes(f.p, (size_t)f.n);
}

/* (host, port): host latin-1 as Go formats it, as uvicorn gives it. */
static PyObject *address(field_ref host, field_ref port) {
    PyObject *h = latin1(host), *n = h ? decimal(port) : NULL;
    if (n == NULL) {
        Py_XDECREF(h);
        return NULL;
    }
    PyObject *t = PyTuple_Pack(2, h, n);
    Py_DECREF(h);
    Py_DECREF(n);
    return t;
}

/* The server's (host, port): that of the last request, if it is the same
 * (it nearly always is: one listener per site). GIL: held. owns: one
 * reference to the last tuple, in last. */
static PyObject *server_address(field_ref host, field_ref port) {
    static PyObject *last;
    if (last != NULL) {
        /* The host is a latin-1 str (1 byte per character), as address
         * made it. */
        PyObject *h = PyTuple_GET_ITEM(last, 0), *n = PyTuple_GET_ITEM(last, 1);
        if (PyUnicode_GET_LENGTH(h) == host.n && memcmp(PyUnicode_1BYTE_DATA(h), host.p, (size_t)host.n) == 0 &&
            PyLong_AsLong(n) == decimal_value(port)) {
            Py_INCREF(last);
            return last;
        }
    }
    PyObject *t = address(host, port);
    if (t != NULL) {
        Py_INCREF(t);
        Py_XSETREF(last, t);
    }
    return t;
}

/* The client's PEM chain (one string of certificates) as the list of
 * certificates the ASGI tls extension wants, each with its END line. */
static PyObject *cert_chain(field_ref f) {
    static const char end_line[] = "-----END CERTIFICATE-----\n";
    const size_t end_len = sizeof(end_line) - 1;
    PyObject *list = PyList_New(0);
    const char *p = f.p, *stop = f.p + f.n;
    while (list != NULL && p < stop) {
        const char *e = memmem(p, (size_t)(stop - p), end_line, end_len);
        PyObject *cert;
        if (e == NULL) { /* Go ends every certificate so; one that does not gets it */
            PyObject *rest = PyUnicode_DecodeLatin1(p, stop - p, NULL);
            cert = rest ? PyUnicode_FromFormat("%U%s", rest, end_line) : NULL;
            Py_XDECREF(rest);
            p = stop;
        } else {
            e += end_len;
            cert = PyUnicode_DecodeLatin1(p, e - p, NULL);
            p = e;
        }
        if (cert == NULL || PyList_Append(list, cert) < 0) {
            Py_CLEAR(list);
        }
        Py_XDECREF(cert);
    }
    return list;
}

/* The client certificate's subject name, None without one. */
static PyObject *cert_name(field_ref f) {
    return f.n ? PyUnicode_DecodeUTF8(f.p, f.n, "replace") : new_ref(Py_None);
}

/* The ASGI tls extension from Go's four TLS fields (appendTLS). */
static PyObject *tls_extension(const field_ref *f) {
    PyObject *d = PyDict_New();
    if (d == NULL || put(d, K.server_cert, new_ref(Py_None)) < 0 ||
        put(d, K.client_cert_chain, cert_chain(f[2])) < 0 ||
        put(d, K.client_cert_name, cert_name(f[3])) < 0 ||
        put(d, K.client_cert_error, new_ref(Py_None)) < 0 ||
        put(d, K.tls_version, decimal(f[0])) < 0 || put(d, K.cipher_suite, decimal(f[1])) < 0) {
        Py_XDECREF(d);
        return NULL;
    }
    return d;
}

/* The extensions a request's response may use. */
static PyObject *extensions(int flags, int http10, const field_ref *tls) {
    PyObject *ext = PyDict_New();
    if (ext == NULL || put(ext, K.pathsend, PyDict_New()) < 0 ||
        (!http10 && put(ext, K.early_hint, PyDict_New()) < 0) ||
        ((flags & CS_NEW_TRAILERS) && put(ext, K.trailers, PyDict_New()) < 0) ||
        ((flags & CS_NEW_TLS) && put(ext, K.tls, tls_extension(tls)) < 0)) {
        Py_XDECREF(ext);
        return NULL;
    }
    return ext;
}

/* The request headers that follow the fixed fields: a list of (name, value)
 * bytes pairs, names lowercased by Go. */
static PyObject *header_pairs(const char *p, const char *end) {
    PyObject *list = PyList_New(0);
    field_ref name, value;
    int rc;
    while (list != NULL && (rc = next_packed(&p, end, &name)) != 0) {
        PyObject *pair = NULL;
        if (rc > 0 && (rc = next_packed(&p, end, &value)) == 0) {
            PyErr_SetString(PyExc_SystemError, "corrupt scope buffer from Go");
        }
        if (rc > 0 && (pair = PyTuple_New(2)) != NULL) {
            PyObject *n = bytes(name), *v = n ? bytes(value) : NULL;
            if (v == NULL) {
                Py_XDECREF(n);
                Py_CLEAR(pair);
            } else {
                PyTuple_SET_ITEM(pair, 0, n);
                PyTuple_SET_ITEM(pair, 1, v);
            }
        }
        if (pair == NULL || PyList_Append(list, pair) < 0) {
            Py_CLEAR(list);
        }
        Py_XDECREF(pair);
    }
    return list;
}

/* Fields in the order appendScope packs them. */
enum { F_METHOD, F_SCHEME, F_VERSION, F_PATH, F_RAW_PATH, F_QUERY, F_ROOT, F_CLIENT_HOST,
       F_CLIENT_PORT, F_SERVER_HOST, F_SERVER_PORT, F_TLS, F_FIXED = F_TLS + 4 };

/* Whether a field is exactly s. GIL: not needed. */
static int is(field_ref f, const char *s) {
    return (size_t)f.n == strlen(s) && memcmp(f.p, s, (size_t)f.n) == 0;
}

/* A field as a str, UTF-8 with U+FFFD for bytes that are not (as
 * bytes.decode("utf-8", "replace")). */
static PyObject *utf8(field_ref f) {
    return PyUnicode_DecodeUTF8(f.p, f.n, "replace");
}

/* An empty dict with room for an HTTP scope's 14 keys: it does not grow
 * twice on the way (8 -> 16 -> 32 slots). GIL: held. */
static PyObject *new_scope_dict(void) {
#if PY_VERSION_HEX < 0x030E0000
    return _PyDict_NewPresized(14);
#else
    return PyDict_New();
#endif
}

/* The HTTP scope of a new request, with a shallow copy of the runner's
 * lifespan state (Runner.state). GIL: held. owns: returns a new reference,
 * or NULL with an exception set. */
static PyObject *http_scope(const char *p, size_t len, int flags, PyObject *runner) {
    const char *end = p + len;
    field_ref f[F_FIXED];
    for (int i = 0; i < F_FIXED; i++) {
        int rc = next_packed(&p, end, &f[i]);
        if (rc <= 0) {
            if (rc == 0) {
                PyErr_SetString(PyExc_SystemError, "corrupt scope buffer from Go");
            }
            return NULL;
        }
    }
    PyObject *state = PyObject_GetAttr(runner, K.state);
    if (state != NULL && !PyDict_Check(state)) {
        PyErr_SetString(PyExc_TypeError, "Runner.state must be a dict");
        Py_CLEAR(state);
    }
    /* Each value is made as it is put: put() takes it, so a failure leaves
     * nothing behind but the scope, dropped whole. */
    PyObject *scope = state ? new_scope_dict() : NULL;
    if (scope == NULL ||
        put(scope, K.type, new_ref(K.http)) < 0 ||
        put(scope, K.asgi, new_ref(K.asgi_version)) < 0 ||
        put(scope, K.http_version, latin1(f[F_VERSION])) < 0 ||
        put(scope, K.method, latin1(f[F_METHOD])) < 0 ||
        put(scope, K.scheme, latin1(f[F_SCHEME])) < 0 ||
        put(scope, K.path, utf8(f[F_PATH])) < 0 ||
        put(scope, K.raw_path, bytes(f[F_RAW_PATH])) < 0 ||
        put(scope, K.query_string, bytes(f[F_QUERY])) < 0 ||
        put(scope, K.root_path, utf8(f[F_ROOT])) < 0 ||
        put(scope, K.headers, header_pairs(p, end)) < 0 ||
        put(scope, K.client, address(f[F_CLIENT_HOST], f[F_CLIENT_PORT])) < 0 ||
        put(scope, K.server, f[F_SERVER_HOST].n ? server_address(f[F_SERVER_HOST], f[F_SERVER_PORT])
                                                : new_ref(Py_None)) < 0 ||
        put(scope, K.state, PyDict_Copy(state)) < 0 ||
        put(scope, K.extensions, extensions(flags, is(f[F_VERSION], "1.0"), &f[F_TLS])) < 0) {
        Py_CLEAR(scope);
    }
    Py_XDECREF(state);
    return scope;
}

/* A new request's scope; should it fail (no memory), the exception instead,
 * raised by the request's task (a 500, logged), so that one request's
 * failure loses no other event of the batch. GIL: held. owns: new ref. */
static PyObject *scope_or_error(const cs_event *e) {
    PyObject *scope = http_scope(e->data, e->len, e->flags, (PyObject *)e->app);
    if (scope == NULL) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (value != NULL && tb != NULL) {
            PyException_SetTraceback(value, tb);
        }
        Py_XDECREF(type);
        Py_XDECREF(tb);
        scope = value;
    }
    return scope;
}

/* (kind, handle, app, flags, data) for asgi_take, as Py_BuildValue("(iKOiN)")
 * would make it without parsing a format per event. GIL: held. owns: takes
 * data (a new reference), borrows app; returns a new reference or NULL. */
static PyObject *event_tuple(const cs_event *e, PyObject *app, PyObject *data) {
    PyObject *t = PyTuple_New(5);
    PyObject *items[4] = {PyLong_FromLong(e->kind), PyLong_FromUnsignedLongLong(e->handle),
                          new_ref(app), PyLong_FromLong(e->flags)};
    for (int i = 0; i < 4; i++) {
        if (t != NULL && items[i] != NULL) {
            PyTuple_SET_ITEM(t, i, items[i]);
        } else {
            Py_CLEAR(t);
            Py_XDECREF(items[i]);
        }
    }
    if (t == NULL) {
        Py_DECREF(data);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 4, data);
    return t;
}

/* asgi_take() -> list of (kind, handle, app, flags, data) for every queued
 * event: one call for a whole batch. data is the scope dict for CS_EV_NEW
 * (or the exception that kept it from being made), bytes for CS_EV_BODY /
 * CS_EV_WS_MSG / a close reason, else None.
 * GIL: held in/out. owns: every taken event's data (freed here) and handed
 * reference (dropped here). */
static PyObject *mod_asgi_take(PyObject *self, PyObject *unused) {
    loop_hand_over_gil();
    PyObject *list = PyList_New(0);
    size_t got, cap;
    cs_event *evs = in_take(&got, &cap);
    for (size_t i = 0; i < got; i++) {
        cs_event *e = &evs[i];
        PyObject *data = NULL;
        if (list != NULL) {
            if (e->kind == CS_EV_BODY && e->app != NULL) {
                /* A buffer from asgi_signal, filled by Go: ours alone, so
                 * it may still be cut to the length read. */
                data = (PyObject *)e->app;
                e->app = NULL;
                if (_PyBytes_Resize(&data, (Py_ssize_t)e->len) < 0) {
                    data = NULL;
                }
            } else if (e->kind == CS_EV_NEW) {
                data = scope_or_error(e);
            } else if (e->kind == CS_EV_BODY || e->kind == CS_EV_WS_MSG ||
                       (e->kind == CS_EV_DISCONNECT && e->data != NULL)) {
                data = PyBytes_FromStringAndSize(e->data, (Py_ssize_t)e->len);
            } else {
                Py_INCREF(Py_None);
                data = Py_None;
            }
        }
        free(e->data); /* ours now, whatever happens */
        /* Only a new request's app is borrowed; any other event's is a
         * reference handed to us (see cs_event), dropped once the event is
         * taken: for an app, after every earlier event (which borrows it)
         * has been decoded. */
        PyObject *runner = e->kind == CS_EV_NEW ? (PyObject *)e->app : NULL;
        PyObject *owned = e->kind != CS_EV_NEW ? (PyObject *)e->app : NULL;
        if (e->kind == CS_EV_RELEASE) {
            Py_XDECREF(owned);
            Py_XDECREF(data);
            continue;
        }
        PyObject *item = data ? event_tuple(e, runner ? runner : Py_None, data) : NULL;
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_CLEAR(list);
        }
        Py_XDECREF(item);
        Py_XDECREF(owned);
    }
    in_give_back(evs, cap);
    return list;
}

static PyMethodDef module_methods[] = {
    {"log", mod_log, METH_VARARGS, "log(level, message) to Caddy's logger"},
    {"asgi_take", mod_asgi_take, METH_NOARGS, "Take every queued ASGI event."},
    {"asgi_flush", mod_asgi_flush, METH_NOARGS, "Deliver the queued ASGI messages to Go."},
    {"asgi_on_flush_due", mod_asgi_on_flush_due, METH_O, "Register the flush scheduler."},
    {"asgi_headers", mod_asgi_headers, METH_VARARGS, "Send response start/early hint/trailers."},
    {"asgi_body", mod_asgi_body, METH_VARARGS, "Send response body bytes."},
    {"asgi_signal", mod_asgi_signal, METH_VARARGS, "Ask for body / report the app done."},
    {"asgi_pathsend", mod_asgi_pathsend, METH_VARARGS, "Serve a file as the response body."},
    {"asgi_ws", mod_asgi_ws, METH_VARARGS, "WebSocket send or close."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef caddysnake_module = {
    PyModuleDef_HEAD_INIT, "_caddysnake",
    "Bridge between the caddysnake Python driver and Caddy (Go).", -1, module_methods,
};

/* PyModule_AddObjectRef (3.10+) for 3.9: adds a new reference. GIL: held. */
static int add_object(PyObject *m, const char *name, PyObject *o) {
    Py_INCREF(o);
    if (PyModule_AddObject(m, name, o) < 0) {
        Py_DECREF(o);
        return -1;
    }
    return 0;
}

static PyObject *PyInit__caddysnake(void) {
    if (PyType_Ready(&RequestType) < 0 || scope_consts_init() < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&caddysnake_module);
    if (m == NULL) {
        return NULL;
    }
    g_client_gone = PyErr_NewExceptionWithDoc(
        "_caddysnake.ClientDisconnected",
        "The client went away before the response was complete.", PyExc_OSError, NULL);
    if (g_client_gone == NULL ||
        add_object(m, "ClientDisconnected", g_client_gone) < 0 ||
        add_object(m, "Request", (PyObject *)&RequestType) < 0 ||
        PyModule_AddIntConstant(m, "LOG_DEBUG", CS_LOG_DEBUG) < 0 ||
        PyModule_AddIntConstant(m, "LOG_INFO", CS_LOG_INFO) < 0 ||
        PyModule_AddIntConstant(m, "LOG_WARN", CS_LOG_WARN) < 0 ||
        PyModule_AddIntConstant(m, "LOG_ERROR", CS_LOG_ERROR) < 0 ||
        PyModule_AddIntConstant(m, "WS_QUEUE", CS_WS_QUEUE) < 0 ||
        PyModule_AddIntConstant(m, "WS_QUEUE_BYTES", CS_WS_QUEUE_BYTES) < 0 ||
        PyModule_AddStringConstant(m, "BUILD_VERSION", PY_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

/* ------------------------------------------------------------------------ */
/* 2. start-up                                                               */
/* ------------------------------------------------------------------------ */

/* Find the python executable that belongs to the libpython we are linked
 * with, so that sys.executable is a real interpreter (multiprocessing and
 * subprocess use it) and the standard library is found from its prefix.
 * Tries <libdir>/../bin and <libdir>/../../bin (Debian's multiarch layout).
 * Returns 1 and fills out on success. GIL: not needed (before init). */
static int find_python_executable(char *out, size_t size) {
    Dl_info info;
    char lib[PATH_MAX];
    if (dladdr((void *)&Py_InitializeFromConfig, &info) == 0 || info.dli_fname == NULL ||
        realpath(info.dli_fname, lib) == NULL) {
        return 0;
    }
    char *slash = strrchr(lib, '/');
    for (int up = 0; up < 2 && slash != NULL; up++) {
        *slash = '\0'; /* lib now names a directory one level higher */
        snprintf(out, size, "%s/../bin/python%d.%d", lib, PY_MAJOR_VERSION, PY_MINOR_VERSION);
        if (access(out, X_OK) == 0) {
            char real[PATH_MAX];
            if (realpath(out, real) != NULL && strlen(real) < size) {
                strcpy(out, real);
            }
            return 1;
        }
        slash = strrchr(lib, '/');
    }
    return 0;
}

/* Raise glibc's mmap threshold above the largest request body buffer
 * (CS_BODY_CHUNK), once. mallopt(3): the threshold starts at 128 KiB and is
 * raised to the size of any mmapped block that is freed. A body buffer is
 * cut to what Go read (mod_asgi_take) before it is freed, so without this
 * the threshold never rose and every large buffer was mmapped, faulted in
 * and unmapped (with a TLB shootdown across threads) per request. A no-op
 * elsewhere. GIL: not needed. */
static void raise_mmap_threshold(void) {
    void *volatile p = malloc(CS_BODY_CHUNK + 4096);
    free(p);
}

char *cs_init(void) {
    raise_mmap_threshold();
    if (PyImport_AppendInittab("_caddysnake", PyInit__caddysnake) < 0) {
        return strdup("cannot register the _caddysnake built-in module");
    }
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    /* Go owns the process's signals (SIGINT/SIGTERM drive Caddy's shutdown). */
    config.install_signal_handlers = 0;
    config.parse_argv = 0;
    char exe[PATH_MAX];
    PyStatus status = PyStatus_Ok();
    if (find_python_executable(exe, sizeof exe)) {
        status = PyConfig_SetBytesString(&config, &config.program_name, exe);
    }
    if (!PyStatus_Exception(status)) {
        status = Py_InitializeFromConfig(&config);
    }
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        char buf[1024];
        snprintf(buf, sizeof buf,
                 "cannot start the embedded Python %s: %s%s%s. caddysnake needs the "
                 "Python it was built against installed at the same prefix (or "
                 "PYTHONHOME pointing at it)",
                 PY_VERSION, status.func ? status.func : "",
                 status.func ? ": " : "", status.err_msg ? status.err_msg : "unknown error");
        return strdup(buf);
    }
    /* The init thread keeps the main thread state; Go never reuses it. Give
     * the GIL back so worker threads can run. */
    PyEval_SaveThread();
    return NULL;
}

const char *cs_runtime_version(void) {
    static char v[32];
    if (v[0] == '\0') {
        const char *full = Py_GetVersion(); /* "3.11.7 (main, ...)" */
        size_t i = 0;
        while (full[i] && full[i] != ' ' && i < sizeof v - 1) {
            v[i] = full[i];
            i++;
        }
        v[i] = '\0';
    }
    return v;
}

const char *cs_build_version(void) { return PY_VERSION; }

static PyObject *module_attr(const char *mod, const char *attr);

/* Give a module run from source the spec import would give it, so that
 * relative imports inside the package (`from . import logs`) find their
 * package through __spec__.parent: without one each warns ImportWarning
 * and falls back on __name__ and __path__, which Python 3.15 no longer
 * does. Returns -1 with a Python error set. GIL: held in/out. */
static int set_spec(PyObject *dict, const char *name, PyObject *file, int is_pkg) {
    PyObject *cls = module_attr("importlib.machinery", "ModuleSpec");
    PyObject *args = cls ? Py_BuildValue("(sO)", name, Py_None) : NULL;
    PyObject *kw = args ? Py_BuildValue("{sOsO}", "origin", file, "is_package", is_pkg ? Py_True : Py_False) : NULL;
    PyObject *spec = kw ? PyObject_Call(cls, args, kw) : NULL;
    int rc = spec ? PyDict_SetItemString(dict, "__spec__", spec) : -1;
    Py_XDECREF(spec);
    Py_XDECREF(kw);
    Py_XDECREF(args);
    Py_XDECREF(cls);
    return rc;
}

char *cs_exec_module(const char *name, const char *filename, const char *src,
                     size_t src_len, int is_pkg) {
    PyGILState_STATE g = PyGILState_Ensure();
    char *err = NULL;
    PyObject *code = NULL, *source = NULL, *res = NULL;
    PyObject *mod = PyImport_AddModule(name); /* borrowed, registered in sys.modules */
    PyObject *dict = mod ? PyModule_GetDict(mod) : NULL;
    if (dict == NULL) {
        goto error;
    }
    source = PyUnicode_DecodeUTF8(src, (Py_ssize_t)src_len, "strict");
    PyObject *file = PyUnicode_FromString(filename);
    if (source == NULL || file == NULL ||
        PyDict_SetItemString(dict, "__file__", file) < 0 ||
        /* kept so caddysnake_py can register it with linecache (tracebacks) */
        PyDict_SetItemString(dict, "__cs_source__", source) < 0 ||
        PyDict_SetItemString(dict, "__builtins__", PyEval_GetBuiltins()) < 0 ||
        set_spec(dict, name, file, is_pkg) < 0) {
        Py_XDECREF(file);
        goto error;
    }
    Py_DECREF(file);
    if (is_pkg) {
        PyObject *path = PyList_New(0);
        if (path == NULL || PyDict_SetItemString(dict, "__path__", path) < 0) {
            Py_XDECREF(path);
            goto error;
        }
        Py_DECREF(path);
    }
    code = Py_CompileStringExFlags(src, filename, Py_file_input, NULL, -1);
    if (code == NULL || (res = PyEval_EvalCode(code, dict, dict)) == NULL) {
        goto error;
    }
    /* Make `pkg.sub` reachable as an attribute of `pkg`, as import does. */
    const char *dot = strrchr(name, '.');
    if (dot != NULL) {
        PyObject *parent_name = PyUnicode_FromStringAndSize(name, dot - name);
        PyObject *parent = parent_name ? PyImport_GetModule(parent_name) : NULL;
        int rc = parent ? PyObject_SetAttrString(parent, dot + 1, mod) : -1;
        Py_XDECREF(parent);
        Py_XDECREF(parent_name);
        if (rc < 0) {
            goto error;
        }
    }
    goto done;
error:
    err = format_exception();
done:
    Py_XDECREF(res);
    Py_XDECREF(code);
    Py_XDECREF(source);
    PyGILState_Release(g);
    return err;
}

/* Fetch attribute `attr` of module `mod` as a new reference. GIL: held. */
static PyObject *module_attr(const char *mod, const char *attr) {
    PyObject *m = PyImport_ImportModule(mod);
    if (m == NULL) {
        return NULL;
    }
    PyObject *a = PyObject_GetAttrString(m, attr);
    Py_DECREF(m);
    return a;
}

char *cs_bootstrap(void) {
    PyGILState_STATE g = PyGILState_Ensure();
    char *err = NULL;
    PyObject *boot = module_attr("caddysnake_py", "bootstrap");
    PyObject *res = boot ? PyObject_CallNoArgs(boot) : NULL;
    Py_XDECREF(boot);
    if (res == NULL ||
        (g_wsgi_handle = module_attr("caddysnake_py.wsgi", "handle")) == NULL ||
        (g_load_app = module_attr("caddysnake_py.loader", "load_app")) == NULL) {
        err = format_exception();
    }
    Py_XDECREF(res);
    PyGILState_Release(g);
    return err;
}

/* ------------------------------------------------------------------------ */
/* 3. apps                                                                   */
/* ------------------------------------------------------------------------ */

cs_obj cs_load_app(const char *spec, const char *working_dir, const char *venv,
                   const char *kind, int lifespan, unsigned long long config_load, char **err) {
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *app = PyObject_CallFunction(g_load_app, "ssssiK", spec, working_dir, venv, kind,
                                          lifespan, config_load);
    if (app == NULL) {
        *err = format_exception();
    }
    PyGILState_Release(g);
    return app;
}

void cs_release(cs_obj obj) {
    if (obj == NULL) {
        return;
    }
    PyGILState_STATE g = PyGILState_Ensure();
    Py_DECREF((PyObject *)obj);
    PyGILState_Release(g);
}

/* ------------------------------------------------------------------------ */
/* 4. workers and requests                                                   */
/* ------------------------------------------------------------------------ */

/* Tails Go has written (cs_tail_done), each holding the reference C gave Go
 * (request_send), waiting for a thread with the GIL to drop it. An array
 * under a mutex: Go adds one per large response, a WSGI thread takes them all
 * at the end of its request (drop_tails). */
static pthread_mutex_t g_tails_mu = PTHREAD_MUTEX_INITIALIZER;
static PyObject **g_tails;
static size_t g_tails_n, g_tails_cap;
static atomic_size_t g_tails_waiting; /* g_tails_n, for a look without the lock */

void cs_tail_done(cs_obj obj) {
    pthread_mutex_lock(&g_tails_mu);
    if (g_tails_n == g_tails_cap) {
        size_t cap = g_tails_cap ? 2 * g_tails_cap : 64;
        PyObject **a = realloc(g_tails, cap * sizeof *a);
        if (a == NULL) {
            pthread_mutex_unlock(&g_tails_mu);
            cs_release(obj); /* no room to wait in: drop it now, with the GIL */
            return;
        }
        g_tails = a;
        g_tails_cap = cap;
    }
    g_tails[g_tails_n++] = (PyObject *)obj;
    atomic_store_explicit(&g_tails_waiting, g_tails_n, memory_order_relaxed);
    pthread_mutex_unlock(&g_tails_mu);
}

/* Drop the references of the tails Go has written, in batches taken under the
 * lock and dropped outside it. GIL: held in/out. */
static void drop_tails(void) {
    PyObject *batch[64];
    while (atomic_load_explicit(&g_tails_waiting, memory_order_relaxed) != 0) {
        pthread_mutex_lock(&g_tails_mu);
        size_t n = g_tails_n < 64 ? g_tails_n : 64;
        g_tails_n -= n;
        memcpy(batch, g_tails + g_tails_n, n * sizeof *batch);
        atomic_store_explicit(&g_tails_waiting, g_tails_n, memory_order_relaxed);
        pthread_mutex_unlock(&g_tails_mu);
        for (size_t i = 0; i < n; i++) {
            Py_DECREF(batch[i]);
        }
    }
}

void cs_tail_sweep(void) {
    if (atomic_load_explicit(&g_tails_waiting, memory_order_relaxed) == 0) {
        return; /* a WSGI thread dropped them already */
    }
    PyGILState_STATE g = PyGILState_Ensure();
    drop_tails();
    PyGILState_Release(g);
}

cs_tstate cs_thread_attach(void) {
    /* PyGILState_Ensure creates this OS thread's thread state (counter 1) so
     * PyGILState_Check and threading.local work for code the app runs here. */
    PyGILState_Ensure();
    return PyEval_SaveThread();
}

void cs_thread_detach(cs_tstate ts) {
    PyEval_RestoreThread((PyThreadState *)ts);
    /* Counter drops to 0: the thread state is cleared (threading.local data
     * such as DB connections is released) and deleted, and the GIL dropped. */
    PyGILState_Release(PyGILState_UNLOCKED);
}

/* Decode one length-prefixed latin-1 field of the packed environ. GIL: held.
 * Returns a new reference, or NULL at the end of (or on a corrupt) buffer. */
static PyObject *next_field(const char **p, const char *end) {
    uint32_t n;
    if (end - *p < 4) {
        return NULL;
    }
    memcpy(&n, *p, 4);
    *p += 4;
    if ((size_t)(end - *p) < n) {
        return NULL;
    }
    PyObject *s = cached_str(*p, n);
    *p += n;
    return s;
}

/* Build the CGI part of the environ from Go's packed pairs. GIL: held.
 * owns: returns a new dict, or NULL with an exception set. */
static PyObject *build_environ(const char *env, size_t len) {
    /* Room for the CGI keys, a browser's dozen headers and the driver's
     * wsgi.* keys without growing the dict three times on the way. */
#if PY_VERSION_HEX < 0x030E0000
    PyObject *d = _PyDict_NewPresized(40);
#else
    PyObject *d = PyDict_New();
#endif
    if (d == NULL) {
        return NULL;
    }
    const char *p = env, *end = env + len;
    while (p < end) {
        PyObject *k = next_field(&p, end);
        PyObject *v = k ? next_field(&p, end) : NULL;
        if (v == NULL || PyDict_SetItem(d, k, v) < 0) {
            Py_XDECREF(k);
            Py_XDECREF(v);
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_SystemError, "corrupt environ buffer from Go");
            }
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(k);
        Py_DECREF(v);
    }
    return d;
}

void cs_wsgi_handle(cs_tstate ts, cs_obj app, const char *env, size_t env_len,
                    uintptr_t handle, int has_body, const char *body, size_t body_len) {
    wsgi_take_gil((PyThreadState *)ts);
    PyObject *environ = build_environ(env, env_len);
    /* The driver's body argument: the bytes Go read ahead, else a bool. */
    PyObject *input = NULL;
    if (environ != NULL && body != NULL) {
        input = PyBytes_FromStringAndSize(body, (Py_ssize_t)body_len);
    } else if (environ != NULL) {
        input = has_body ? Py_True : Py_False;
        Py_INCREF(input);
    }
    RequestObject *req = input ? PyObject_New(RequestObject, &RequestType) : NULL;
    PyObject *res = NULL;
    if (req != NULL) {
        req->h = handle;
        req->busy = 0;
        req->given = 0;
        PyObject *args[4] = {(PyObject *)app, environ, (PyObject *)req, input};
        res = PyObject_Vectorcall(g_wsgi_handle, args, 4, NULL);
        req->h = 0; /* the request is over: stale references must not reach Go */
    }
    if (res == NULL) {
        /* The driver handles app errors itself; reaching here is a driver bug
         * or memory exhaustion. Go answers 500 if nothing was sent. */
        log_exception("caddysnake: internal error in the WSGI driver");
    }
    Py_XDECREF(res);
    Py_XDECREF((PyObject *)req);
    Py_XDECREF(input);
    Py_XDECREF(environ);
    drop_tails(); /* earlier requests' written tails: this thread holds the GIL anyway */
    PyEval_SaveThread();
}

/* ------------------------------------------------------------------------ */
/* 5. ASGI loop and lifespan                                                 */
/* ------------------------------------------------------------------------ */

char *cs_asgi_start_loop(int in_fd, int out_fd, int late, const char *loop_kind) {
    in_efd = in_fd, out_efd = out_fd, late_fd = late; /* before the loop can run */
    atomic_store(&g_loop_runs, 1);
    PyGILState_STATE g = PyGILState_Ensure();
    char *err = NULL;
    PyObject *start = module_attr("caddysnake_py.asgi", "start_loop");
    PyObject *res = start ? PyObject_CallFunction(start, "is", in_fd, loop_kind) : NULL;
    if (res == NULL) {
        err = format_exception();
    }
    Py_XDECREF(res);
    Py_XDECREF(start);
    PyGILState_Release(g);
    return err;
}

char *cs_asgi_lifespan(cs_obj runner, const char *method, double timeout) {
    PyGILState_STATE g = PyGILState_Ensure();
    char *err = NULL;
    PyObject *res = PyObject_CallMethod((PyObject *)runner, method, "d", timeout);
    if (res == NULL) {
        err = format_exception(); /* a bug of the driver's: its traceback */
    } else if (PyUnicode_Check(res)) {
        const char *why = PyUnicode_AsUTF8(res); /* the phase failed: why */
        err = strdup(why != NULL ? why : "lifespan failed");
        PyErr_Clear();
    }
    Py_XDECREF(res);
    PyGILState_Release(g);
    return err;
}
