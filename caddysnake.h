/*
 * caddysnake.h — the C shim between Caddy (Go) and the embedded CPython.
 *
 * This header is deliberately free of Python.h: the Go side only ever sees
 * opaque pointers (cs_obj, cs_tstate) and plain C types, so every Python
 * reference and every GIL transition stays inside caddysnake.c.
 *
 * Conventions used in every comment below:
 *   GIL: in/out  — whether the calling thread holds the GIL on entry / on exit.
 *   owns         — who owns a returned pointer and who must release it.
 */
#ifndef CADDYSNAKE_H
#define CADDYSNAKE_H

#include <stddef.h>
#include <stdint.h>

typedef void *cs_obj;    /* an owned PyObject* held by Go (opaque) */
typedef void *cs_tstate; /* a PyThreadState* bound to one OS thread */

/* A borrowed (pointer, length) view of bytes. Used for response headers passed
 * from C to Go: the memory belongs to Python str objects that C keeps alive for
 * the duration of the callback; Go copies what it keeps. */
typedef struct {
    const char *p;
    size_t n;
} cs_str;

/* Log levels shared with Go's zap mapping and caddysnake_py.logs. */
enum { CS_LOG_DEBUG = 0, CS_LOG_INFO = 1, CS_LOG_WARN = 2, CS_LOG_ERROR = 3 };

/* Results of the Go callbacks, turned into Python exceptions by C. */
enum {
    CS_OK = 0,
    CS_OK_FLUSH = 1,           /* queued as the first message since the last flush: flush soon */
    CS_STREAM_WAIT = 2,        /* queued, and the queue is full: wait (cs_go_stream_wait) */
    CS_TAIL_KEPT = 3,          /* cs_go_send kept the last chunk to write later: see cs_tail_done */
    CS_TAIL_REFUSED = 4,       /* cs_go_send started the response but will not keep the chunk */
    CS_ERR_CLIENT_GONE = -1,   /* client disconnected: ClientDisconnected (OSError) */
    CS_ERR_BAD_HEADER = -2,    /* invalid response header name/value: ValueError */
    CS_ERR_BAD_STATE = -3,     /* call out of order (e.g. body before headers): RuntimeError */
    CS_ERR_IO = -4,            /* other I/O failure: OSError */
    CS_ERR_BAD_STATUS = -5,    /* WSGI status code outside 200..999: ValueError */
    CS_ERR_BAD_CLOSE = -7,     /* websocket.close code not sendable (RFC 6455 7.4) */
    CS_ERR_TOO_LARGE = -8,     /* request body over request_body max_size: ClientDisconnected */
    CS_ERR_BODY_CLOSED = -9,   /* HTTP/1.x body read after the response began, no full duplex: OSError */
    CS_ERR_BAD_BODY = -10,     /* malformed chunked request body: ClientDisconnected */
};

/* Initialise the interpreter once per process.
 * GIL: not held in; released out (the calling thread keeps the main thread
 * state, which Go never uses again).
 * owns: returns NULL on success, or a malloc'd error message the caller frees. */
char *cs_init(void);

/* Execute one embedded source file as module `name` (a package if is_pkg) and
 * register it in sys.modules. All arguments are borrowed for the call.
 * GIL: not held in/out. owns: returns NULL or a malloc'd traceback string. */
char *cs_exec_module(const char *name, const char *filename, const char *src,
                     size_t src_len, int is_pkg);

/* Finish start-up once the embedded package is loaded: redirect stdout/stderr
 * to Caddy's log and cache the driver entry points.
 * GIL: not held in/out. owns: NULL or a malloc'd traceback string. */
char *cs_bootstrap(void);

/* The Python version libpython reports at run time, and the one the shim was
 * compiled against ("3.11.7"). Static strings, never freed. GIL: not needed. */
const char *cs_runtime_version(void);
const char *cs_build_version(void);

/* Import and return the app named by spec ("pkg.mod:attr") with working_dir
 * first on sys.path and the venv's site-packages added (venv may be "").
 * kind is "wsgi" (returns the app callable) or "asgi" (returns a
 * caddysnake_py.asgi.Runner wrapping it; lifespan: 0 off, 1 on, 2 auto).
 * config_load numbers Caddy's config loads (see loader.load_app).
 * Strings are borrowed for the call.
 * GIL: not held in/out.
 * owns: on success returns a new reference the caller (Go) owns and must pass
 * to cs_release exactly once; on failure returns NULL and sets *err to a
 * malloc'd traceback the caller frees. */
cs_obj cs_load_app(const char *spec, const char *working_dir, const char *venv,
                   const char *kind, int lifespan, unsigned long long config_load, char **err);

/* Drop a reference returned by cs_load_app. GIL: not held in/out. */
void cs_release(cs_obj obj);

/* Create the thread state a long-lived worker uses for all its requests. Must
 * be called on the OS thread that will use it (Go: LockOSThread first).
 * GIL: not held in/out. owns: the worker; pass to cs_thread_detach once. */
cs_tstate cs_thread_attach(void);

/* Destroy a worker's thread state (clears its threading.local data, e.g.
 * Django DB connections). Same OS thread as attach. GIL: not held in/out. */
void cs_thread_detach(cs_tstate ts);

/* Serve one WSGI request on a worker thread.
 *   ts       this worker's thread state (GIL is taken with it and given back)
 *   app      borrowed: the Go handler keeps its reference alive for the call
 *   env      borrowed Go memory: packed environ pairs, each
 *            [u32 key_len][key bytes][u32 val_len][val bytes], latin-1;
 *            C copies them into Python str objects before doing anything else
 *   handle   opaque value passed back to every Go callback for this request
 *   has_body whether wsgi.input may yield bytes
 *   body     NULL, or borrowed Go memory: the whole body (body_len bytes),
 *            read ahead by Go; C copies it into the bytes wsgi.input reads
 * Response bytes flow out through the cs_go_* callbacks (declared by cgo in
 * _cgo_export.h). GIL: not held in/out. */
void cs_wsgi_handle(cs_tstate ts, cs_obj app, const char *env, size_t env_len,
                    uintptr_t handle, int has_body, const char *body, size_t body_len);

/* WSGI tails. A response's last chunk, a bytes object of CS_ZERO_COPY_MIN
 * bytes or more, is not written by the app's thread: cs_go_send keeps a view
 * of it (CS_TAIL_KEPT), C adds a reference to the object for Go, and the
 * thread is free for the next request while the request's own goroutine
 * writes it to the client (a slow client holds no thread; tails.go).
 * Once written, Go hands the reference back with cs_tail_done. The
 * reference is dropped by the next WSGI request's thread, which holds the
 * GIL anyway, or by cs_tail_sweep if none comes soon.
 * cs_tail_done: any thread, no GIL; owns: takes over obj's reference.
 * cs_tail_sweep: any thread, no GIL; takes the GIL only if a reference
 * is waiting. */
void cs_tail_done(cs_obj obj);
void cs_tail_sweep(void);

/* ------------------------------------------------------------------------
 * ASGI. One asyncio loop per interpreter runs on its own Python thread, and
 * it never calls into Go on the request path: a C thread that calls Go keeps
 * a Go P (scheduler slot) while it runs Python or sleeps in epoll, which Go's
 * sysmon then has to take back (polling every 20 us under load), and each
 * later call waits for a P again. So both directions are C queues:
 *   in:  Go pushes events (cs_asgi_push) and writes an eventfd only when the
 *        loop may be asleep; the loop swaps out the whole queue at once.
 *   out: the app's messages are validated and copied into malloc'd cs_msg
 *        records as send() runs (so send() can raise), held until the driver
 *        flushes once per loop iteration, then handed over in one list: C
 *        writes an eventfd that Go's netpoller watches, and one goroutine
 *        delivers the list to the request goroutines (cs_asgi_take_msgs).
 *        A timerfd, armed by the first message of a batch, flushes from Go
 *        if the loop does not within CS_LATE_FLUSH_NS (an app that blocks
 *        the loop right after send()).
 * ------------------------------------------------------------------------ */

enum {
    CS_EV_NEW = 1,        /* data: packed scope fields; flags: CS_NEW_* */
    CS_EV_BODY = 2,       /* data: body bytes, or app: the filled buffer (len bytes) of
                           * CS_MSG_WANT_BODY; flags: 1 if more body follows */
    CS_EV_SEND_DONE = 3,  /* flags: how many of the oldest queued sends Go has now
                           * written; app: NULL or the last one's ref */
    CS_EV_DISCONNECT = 4, /* client gone, an I/O error, or a WebSocket closed */
    CS_EV_RELEASE = 5,    /* drop the reference in app, after all earlier events */
    CS_EV_WS_MSG = 6,     /* data: a WebSocket message; flags: 1 if text (UTF-8) */
};
enum { CS_NEW_HAS_BODY = 1, CS_NEW_TRAILERS = 2, CS_NEW_TLS = 4, CS_NEW_WEBSOCKET = 8,
       CS_NEW_LARGE_BODY = 16, /* CS_ZERO_COPY_MIN or more, or of unknown length */
       CS_NEW_BODY_AHEAD = 32 /* Go reads the first body chunk unasked: a CS_EV_BODY follows */ };

/* One queued event. data is malloc'd by Go (C.malloc); whoever takes the
 * event owns it and frees it. app: for CS_EV_NEW, the Runner the request
 * belongs to, borrowed (Go keeps its reference until the app's last request
 * is over); for any other kind NULL or a reference the event hands to the
 * loop, which drops it when it takes the event (CS_EV_RELEASE: Go's
 * reference to an app, or a body chunk's ref; CS_EV_SEND_DONE: the ref of
 * the last chunk it acknowledges). */
typedef struct {
    uintptr_t handle;
    cs_obj app;
    char *data;
    size_t len;
    int kind;
    int flags;
} cs_event;

/* Queue ev for the loop (copied; ev.data now belongs to the queue), waking
 * the loop if it may be asleep. Any thread; GIL: not needed. */
void cs_asgi_push(cs_event ev);
/* The same without waking the loop: for an event that can wait for the
 * next one pushed, which the caller is sure to push (a streamed chunk's
 * CS_EV_RELEASE before its batch's CS_EV_SEND_DONE). */
void cs_asgi_push_quiet(cs_event ev);

/* Kinds of app messages (the numbers are Go's asgiCmd kinds). */
enum {
    CS_MSG_START = 1,      /* status; hdr; flags: CS_START_* */
    CS_MSG_EARLY_HINT = 2, /* hdr (Link) */
    CS_MSG_TRAILERS = 3,   /* hdr; flags: more trailers */
    CS_MSG_BODY = 4,       /* data; flags: more body */
    CS_MSG_WANT_BODY = 5,  /* the app waits in receive() (WebSocket: credits: the app
                            * has received status messages of flags bytes in all);
                            * with ref: a new bytes object of len bytes for Go to read
                            * the next chunk into (zero-copy upload) */
    CS_MSG_DONE = 6,       /* the app returned or raised; flags: failed */
    CS_MSG_PATHSEND = 7,   /* data: the file's path */
    CS_MSG_WS_ACCEPT = 8,  /* hdr, including the chosen sec-websocket-protocol */
    CS_MSG_WS_SEND = 9,    /* data; flags: text */
    CS_MSG_WS_CLOSE = 10,  /* status: close code; data: reason */
};
/* CS_MSG_START flags. NOW: the response has no Content-Length and no other
 * message of the request (but CS_MSG_WANT_BODY) came in the same flush: the
 * app is producing the body (a stream, an event feed), so Go sends the
 * headers at once instead of holding them for the first body bytes. */
enum { CS_START_TRAILERS = 1, CS_START_NOW = 2 };

/* One app message, in one malloc'd block (hdr and data point into it). The
 * list Go takes (cs_asgi_take_msgs) is Go's to read and to free
 * (cs_asgi_free_msgs); header names and values are checked already.
 * Zero copy: a body chunk of CS_ZERO_COPY_MIN bytes or more sent as an
 * immutable bytes object is not copied: data points into the object and ref
 * holds a reference to it, which Go takes over (clearing ref) and hands back
 * to the loop in a CS_EV_SEND_DONE or CS_EV_RELEASE event once the chunk is
 * written; so is a CS_MSG_WS_SEND of that size (bytes, or a str's UTF-8).
 * Likewise a CS_MSG_WANT_BODY for a large request body carries a
 * new bytes object for Go to read into, which comes back in CS_EV_BODY (or
 * CS_EV_RELEASE if unused). cs_asgi_free_msgs hands back any ref Go left in
 * a message. A CS_MSG_PATHSEND carries the file open (fd, owned by the
 * message until Go takes it, setting fd to -1; cs_asgi_free_msgs closes one
 * Go left), its size when opened, and its path as data (for log lines). */
typedef struct cs_msg {
    struct cs_msg *next;
    uintptr_t handle;
    int kind;
    int status;
    int flags;
    size_t nhdr; /* (name, value) pairs in hdr */
    cs_str *hdr;
    char *data;
    size_t len;
    cs_obj ref; /* the bytes object data points into, owned; or NULL */
    int fd;     /* CS_MSG_PATHSEND: the file, owned; else -1 */
    long long size; /* CS_MSG_PATHSEND: its size when opened */
} cs_msg;

/* Take every flushed message, oldest first (NULL if none). Go reads the
 * out eventfd before calling, so no wake-up is lost. Any thread. */
cs_msg *cs_asgi_take_msgs(void);
void cs_asgi_free_msgs(cs_msg *m);
#define CS_ZERO_COPY_MIN (16 * 1024)
#define CS_BODY_CHUNK (256 * 1024) /* the most Go reads per request body chunk */
/* WSGI: a read(n) of a body of unknown length first allocates this much,
 * then doubles as the body keeps coming (the driver's INPUT_BUFFER). */
#define CS_READ_STEP (64 * 1024)

/* WSGI: a streamed body chunk smaller than this is queued for Go's writer
 * with the GIL held (cs_go_stream); one this large or larger is written by Go
 * directly, without the GIL (from 768 KiB on after passing on the admit
 * token: yieldWrite, callbacks.go). From 32 KiB a chunk fills half the
 * writer's queue (streamQueueMax), so the thread would wait for the writer
 * every other chunk anyway, and a direct write costs less than a wait (a
 * locked goroutine parked and woken) and a copy: 1,000 MiB in 64 KiB chunks,
 * one connection, 2,268 -> 3,544 MiB/s; 32 KiB chunks 2,516 -> 3,005; 16 KiB
 * ones were faster queued (2,108 against 1,870). */
#define CS_BIG_WRITE (32 * 1024)

/* ASGI WebSocket: Go reads ahead of the app while fewer than CS_WS_QUEUE
 * messages and CS_WS_QUEUE_BYTES bytes are unreceived (uvicorn's
 * ws_max_queue is 32). The driver returns credits in lumps of a quarter of
 * either (asgi_signal 3), so a lump is always less than the window. */
#define CS_WS_QUEUE 32
#define CS_WS_QUEUE_BYTES (1024 * 1024)

/* The late-flush timerfd fired: flush the batch if it has waited
 * CS_LATE_FLUSH_NS (else re-arm for the rest). Any thread. */
void cs_asgi_late(void);
#define CS_LATE_FLUSH_NS 1000000LL

/* Start the event loop thread (once per process). in_efd: the eventfd the
 * loop watches for events; out_efd: the eventfd C writes when messages are
 * flushed; late_fd: the timerfd armed for late flushes (all non-blocking,
 * owned by Go for the process). loop_kind: "auto", "asyncio" or "uvloop".
 * GIL: not held in/out. owns: NULL or a malloc'd error/traceback. */
char *cs_asgi_start_loop(int in_efd, int out_efd, int late_fd, const char *loop_kind);

/* Call runner.<method>(timeout) — "startup" or "shutdown" of ASGI lifespan —
 * blocking the calling thread until it completes (the GIL is released while
 * waiting). It returns None, or why the phase failed (the app's message or
 * traceback, or the timeout), which is what Caddy shows: no traceback of
 * the driver's own. GIL: not held in/out. owns: NULL or a malloc'd error
 * message. */
char *cs_asgi_lifespan(cs_obj runner, const char *method, double timeout);

#endif
