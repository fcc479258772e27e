package caddysnake

// The functions in this file are called from C (caddysnake.c) on a worker's
// OS thread, while that worker serves a request, with the GIL released
// unless a function says otherwise. They must never panic across the C
// boundary: each validates its handle and recovers. Pointers they receive
// point into C/Python memory that stays valid only for the duration of the
// call; whatever Go keeps, it copies, but for a tail (cs_go_send), whose
// bytes object C keeps alive for Go with a reference.

// #include "caddysnake.h"
import "C"

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/net/http/httpguts"
)

// current returns the worker behind h and the request it is serving; the
// request is nil if there is none (and then the worker may be nil too).
func current(h C.uintptr_t) (*worker, *request) {
	if w := workerFor(h); w != nil {
		return w, w.cur
	}
	return nil, nil
}

// recoverTo turns a panic in a callback into an error code for C.
func recoverTo[T ~int64 | ~int32 | ~int](code *T) {
	if v := recover(); v != nil {
		pyLogger.Error("caddysnake: panic in Go callback", zap.Any("panic", v), zap.Stack("stack"))
		*code = T(C.CS_ERR_IO)
	}
}

// cs_go_read reads body bytes straight into the Python buffer (no
// intermediate copy): what has arrived, at least one byte unless the body
// has ended; with full, all n unless the body ends first (wsgi.input.read()
// of a large body: one call, not one per piece that has arrived, each
// dropping and retaking the GIL).
//
//export cs_go_read
func cs_go_read(h C.uintptr_t, buf *C.char, n C.size_t, full C.int) (rc C.long) {
	defer recoverTo(&rc)
	w, rq := current(h)
	if rq == nil {
		return C.CS_ERR_BAD_STATE
	}
	if n == 0 {
		return 0
	}
	w.inIO.Store(true)
	defer w.inIO.Store(false)
	b := unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(n))
	got := 0
	for got < len(b) {
		m, err := rq.read(b[got:])
		if err != nil {
			return readErr(err)
		}
		got += m
		if m == 0 || full == 0 {
			break // the end of the body, or what has arrived
		}
	}
	return C.long(got)
}

// cs_go_body_left reports how many body bytes the app has yet to read, or
// -1 if the body's length is unknown (chunked). It does not block.
//
//export cs_go_body_left
func cs_go_body_left(h C.uintptr_t) (rc C.longlong) {
	defer recoverTo(&rc)
	_, rq := current(h)
	if rq == nil {
		return C.CS_ERR_BAD_STATE
	}
	return C.longlong(rq.bodyLeft())
}

// readErr is the code for a failed body read.
func readErr(err error) C.long {
	switch {
	case overLimit(err):
		return C.CS_ERR_TOO_LARGE
	case malformedBody(err):
		return C.CS_ERR_BAD_BODY
	case errors.Is(err, http.ErrBodyReadAfterClose):
		return C.CS_ERR_BODY_CLOSED // the app's error: it is logged
	}
	return C.CS_ERR_CLIENT_GONE
}

// hopByHop lists headers that describe one connection, which the app must
// not set (PEP 3333) and which Go's server manages itself: the list Caddy's
// reverse_proxy strips from an upstream's response.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// addAppHeaders copies checked (name, value) pairs into h, which may already
// hold Caddy's own headers. As behind reverse_proxy, the app's Server
// replaces Caddy's and hop-by-hop headers are dropped, those the app's
// Connection header names too (RFC 9110 §7.6.1), except that
// "Connection: close" is honoured (Go closes the connection after this
// response, as uvicorn does). A repeated Content-Length is sent once, as
// the bare number.
func addAppHeaders(h http.Header, kv []C.cs_str) {
	// Two allocations per response rather than three per header: the values
	// are copied into one buffer, and each name's first value gets its
	// []string cut from one array (capped, so a repeated name appends to a
	// copy), as Go's own request header reader does.
	size := 0
	for i := 1; i < len(kv); i += 2 {
		size += int(kv[i].n)
	}
	buf := make([]byte, 0, size)
	slots := make([]string, len(kv)/2)
	server := false
	var named []string // the values of the app's Connection headers
	for i := 0; i < len(kv); i += 2 {
		key, val := headerKey(cstr(kv[i])), cstr(kv[i+1])
		switch {
		case key == "Connection":
			if httpguts.HeaderValuesContainsToken([]string{val}, "close") {
				h[key] = []string{"close"}
			}
			named = append(named, val)
			continue
		case key == "Content-Length":
			if len(h[key]) > 0 {
				continue
			}
			// C has checked it is one number, maybe with spaces around
			// (or a "+"): Go parses it to count the body, and sends it.
			val = strings.TrimLeft(strings.Trim(val, " \t"), "+")
		case hopByHop[key]:
			continue
		case key == "Server" && !server:
			server = true
			delete(h, key)
		}
		// buf never grows (it was sized for every value), so the strings
		// cut from it stay valid; nothing writes to it afterwards.
		start := len(buf)
		buf = append(buf, val...)
		val = unsafe.String(unsafe.SliceData(buf[start:]), len(val))
		if len(h[key]) == 0 {
			slot := slots[i/2 : i/2+1 : i/2+1]
			slot[0] = val
			h[key] = slot
		} else {
			h[key] = append(h[key], val)
		}
	}
	for _, v := range named {
		dropConnectionOptions(h, v)
	}
}

// dropConnectionOptions removes the headers a Connection value names: they
// describe the connection, not the response. "close" stays (see above).
func dropConnectionOptions(h http.Header, v string) {
	for _, name := range strings.Split(v, ",") {
		if k := http.CanonicalHeaderKey(strings.TrimSpace(name)); k != "" && k != "Close" && k != "Connection" {
			delete(h, k)
		}
	}
}

// headerKey canonicalizes a header name the app gave, a view of C memory
// that must not be kept. Go returns a name it had to change as a new string
// (its own interned one for a common header) and an already-canonical one
// (what WSGI apps send) as is: that one is swapped for the same name in
// Go's memory, from commonKeys when it is a usual one, else copied.
func headerKey(name string) string {
	k := http.CanonicalHeaderKey(name)
	if len(k) == 0 || unsafe.StringData(k) != unsafe.StringData(name) {
		return k
	}
	if c, ok := commonKeys[k]; ok {
		return c
	}
	return strings.Clone(k)
}

// commonKeys holds response header names apps send on most responses.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Content-Type", "Content-Length", "Content-Encoding", "Content-Disposition",
		"Content-Language", "Content-Security-Policy", "Cache-Control", "Set-Cookie", "Location",
		"Date", "Server", "Etag", "Last-Modified", "Expires", "Vary", "Link", "Allow",
		"Accept-Ranges", "Access-Control-Allow-Origin", "Access-Control-Allow-Credentials",
		"X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy",
		"Strict-Transport-Security", "Www-Authenticate", "Retry-After", "Pragma", "Connection",
	} {
		m[k] = k
	}
	return m
}()

// finishHeaders settles the app's headers just before they are written,
// for WSGI and ASGI alike:
//   - a response without Content-Type keeps none: Go would otherwise guess
//     one from the first bytes of the body, and PEP 3333 (like gunicorn and
//     uvicorn) leaves the meaning of a response to the app;
//   - a 204 carries no Content-Length (RFC 9110 §8.6: a server MUST NOT
//     send one; Django adds "0" to every 204): Go's HTTP/1 server drops it,
//     its HTTP/2 server would send it, gunicorn drops it;
//   - "Connection: close" is for HTTP/1 only: over HTTP/2 Go would answer
//     it with a GOAWAY, ending the connection for every other stream on it
//     (through reverse_proxy the header is simply dropped);
//   - an HTTP/1 response to a request whose client asked for
//     "100-continue" and has not sent all of its body (bodyDone false)
//     says "Connection: close": Go means to close such a connection (its
//     server.go: "don't reuse this connection") but misses it when Caddy
//     has wrapped r.Body, and then reads the body before it writes the
//     response, while the client holds the body back for a 100 Continue
//     that never comes (curl gives up after 1 s; Caddy's own respond
//     waits the same way). uvicorn and gunicorn answer at once.
func finishHeaders(h http.Header, r *http.Request, status int, bodyDone bool) {
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil
	}
	if status == http.StatusNoContent {
		delete(h, "Content-Length")
	}
	if r.ProtoMajor != 1 {
		delete(h, "Connection")
	} else if !bodyDone && len(r.Header["Expect"]) > 0 {
		h["Connection"] = []string{"close"}
	}
}

// yieldWrite is the response chunk size from which a worker passes the
// admit token on before writing (yield, spill.go). On loopback, writing 1 MiB
// keeps the thread on a CPU in the kernel for ~300 µs, which the watcher
// cannot tell from Python computing; without the GIL, another request can
// run meanwhile. Flask sending 1 MiB responses at 100 connections: 1,500 →
// 2,200 req/s. For smaller writes the extra thread's wake-up and its fight
// for the GIL cost more than the write: yielding from 128 KiB on, Flask
// served 256 KiB responses at 2.9-3.1k req/s, against 5.0-5.5k without;
// 512 KiB 2.7-2.8k against 3.7-3.9k; a raw app at 768 KiB still gained
// (4.2-4.3k against 3.6-4.0k).
const yieldWrite = 768 << 10

// tail: nil, or the bytes object body points into, when it is the
// response's last chunk and C holds the GIL: it is kept, to be written once
// the worker is free (CS_TAIL_KEPT, tails.go), unless over tailBudget
// (CS_TAIL_REFUSED, after sending the status: C then calls again with status
// 0 and without the GIL). Nothing may block then.
//
//export cs_go_send
func cs_go_send(h C.uintptr_t, status C.int, hdrs *C.cs_str, nh C.size_t, clen C.longlong,
	body *C.char, blen C.size_t, flush C.int, tail C.cs_obj) (rc C.long) {
	defer recoverTo(&rc)
	w, rq := current(h)
	if rq == nil {
		return C.CS_ERR_BAD_STATE
	}
	if status != 0 {
		if rq.left() {
			return C.CS_ERR_CLIENT_GONE // serve logs the 499
		}
		if code := rq.start(int(status), unsafe.Slice(hdrs, int(nh)*2), int64(clen)); code != C.CS_OK {
			return code
		}
	} else if rq.status == 0 {
		return C.CS_ERR_BAD_STATE
	}
	if tail != nil {
		if !bodySent(rq.r, rq.status) {
			return C.CS_OK // a HEAD's, 204's or 304's body: nothing to keep
		}
		return rq.keepTail(tail, cbytes(body, blen))
	}
	// From here on the thread may block on the client (a full socket).
	w.inIO.Store(true)
	defer w.inIO.Store(false)
	if err := rq.ownWriter(); err != nil {
		return writeErr(err)
	}
	// A cancelled request context is no reason not to write: Go cancels it
	// when the client half-closes after its request (nc -N, HTTP/1.0
	// scripts), and such a client reads the answer, as gunicorn gives it;
	// one that really left makes the write fail.
	if blen > 0 && bodyAllowed(rq.status) {
		// Counted for HEAD too, though not written (bodySent), so that the
		// flush below is skipped as for GET: C may hold the GIL here.
		b := rq.body.clip(cbytes(body, blen))
		if len(b) > 0 && bodySent(rq.r, rq.status) {
			if len(b) >= yieldWrite {
				w.yield() // the write is long and needs no GIL: let the next request run
			}
			// The writer copies (bufio) or sends the bytes before returning,
			// so passing a view of the Python bytes object needs no copy.
			if err := rq.body.send(rq.w, rq.r, b); err != nil {
				return writeErr(err)
			}
		}
	}
	// Skip the flush when the declared length is reached: the handler's
	// return flushes the tail together with the headers in one write.
	// (request_send in caddysnake.c counts on it: it keeps the GIL for a
	// small first write that completes the declared length.)
	if flush != 0 && (rq.body.length < 0 || rq.body.written < rq.body.length) {
		if err := rq.flush(); err != nil {
			return writeErr(err)
		}
	}
	return C.CS_OK
}

// start validates the status and sends it with the headers, which C has
// checked: clen is their Content-Length (-1 if none) or CS_ERR_BAD_HEADER.
// Nothing reaches the client unless all of them are valid, so a bad header
// becomes a clean 500.
func (rq *request) start(status int, kv []C.cs_str, clen int64) C.long {
	if rq.status != 0 {
		return C.CS_ERR_BAD_STATE
	}
	if rq.refused != nil {
		return C.CS_ERR_CLIENT_GONE // ServeHTTP answers 413 instead
	}
	if status < 200 || status > 999 {
		return C.CS_ERR_BAD_STATUS
	}
	// Before touching the ResponseWriter: a 500 sent instead must not
	// carry some of the rejected headers.
	if clen == C.CS_ERR_BAD_HEADER {
		return C.CS_ERR_BAD_HEADER
	}
	rq.body.length = clen
	header := rq.w.Header()
	addAppHeaders(header, kv)
	finishHeaders(header, rq.r, status, rq.bodyLeft() == 0)
	rq.status = status
	rq.w.WriteHeader(status)
	return C.CS_OK
}

// cbytes views C memory as a byte slice without copying (valid while C
// keeps it: for the call only, unless it is a tail).
func cbytes(p *C.char, n C.size_t) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))
}

// cstr views a cs_str as a string without copying (valid for the call only).
func cstr(s C.cs_str) string {
	return unsafe.String((*byte)(unsafe.Pointer(s.p)), int(s.n))
}

func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified && status >= 200
}

// bodySent says whether a response's body bytes are written at all: not a
// 204's or 304's, nor any in answer to HEAD. Go's server drops them itself,
// but only below the handlers that wrap the ResponseWriter: `encode` would
// compress them (and send the compressed length), the access log and the
// metrics would count them as sent. Behind reverse_proxy no HEAD body
// reaches those handlers either.
func bodySent(r *http.Request, status int) bool {
	return bodyAllowed(status) && r.Method != http.MethodHead
}

// bodyLimit tracks a response body against the Content-Length the app
// declared (length -1: none).
type bodyLimit struct {
	length, written int64
	warned          bool
	wide            bool // widenWriteChunk was called
}

// write writes b, but never past a declared Content-Length: the excess is
// dropped (and logged once), as gunicorn does, so an app that miscounts still
// delivers the response it promised instead of a broken connection.
func (l *bodyLimit) write(w http.ResponseWriter, r *http.Request, b []byte) error {
	return l.send(w, r, l.clip(b))
}

// send writes b, clipped and counted already.
func (l *bodyLimit) send(w http.ResponseWriter, r *http.Request, b []byte) error {
	if len(b) > caddyhttp.DefaultMaxWriteChunk && !l.wide {
		l.wide = true
		widenWriteChunk(r)
	}
	_, err := w.Write(b)
	return err
}

// short says whether a response that is over sent less than its declared
// Content-Length (HEAD and bodiless statuses aside).
func (l *bodyLimit) short(r *http.Request, status int) bool {
	return l.length >= 0 && l.written < l.length && bodySent(r, status)
}

// clip cuts b at the declared Content-Length and counts what is left as
// written.
func (l *bodyLimit) clip(b []byte) []byte {
	if l.length >= 0 && l.written+int64(len(b)) > l.length {
		if !l.warned {
			l.warned = true
			pyLogger.Warn("python app wrote more than its Content-Length; extra bytes dropped",
				zap.Int64("content_length", l.length))
		}
		b = b[:max(0, l.length-l.written)]
	}
	l.written += int64(len(b))
	return b
}

// writeErr classifies a write failure: writing past the declared
// Content-Length is the app's error; anything else means the client is gone.
func writeErr(err error) C.long {
	if errors.Is(err, http.ErrContentLength) {
		return C.CS_ERR_IO
	}
	return C.CS_ERR_CLIENT_GONE
}

//export cs_go_sendfile
func cs_go_sendfile(h C.uintptr_t, fd C.int, offset, count C.longlong) (rc C.longlong) {
	defer recoverTo(&rc)
	_, rq := current(h)
	if rq == nil || rq.status == 0 || rq.hasTail() {
		return C.CS_ERR_BAD_STATE
	}
	if !bodySent(rq.r, rq.status) || count == 0 {
		return 0
	}
	// Python keeps its descriptor (the app may close it as soon as this
	// returns); Go sends from a file of its own once the worker is free
	// (finishWrites, tails.go), so a slow client holds no thread.
	f, err := reopen(int(fd))
	if err != nil {
		return C.CS_ERR_IO
	}
	if _, err := f.Seek(int64(offset), io.SeekStart); err != nil {
		f.Close()
		return C.CS_ERR_IO
	}
	if count < 0 { // to the end of the file
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return C.CS_ERR_IO
		}
		count = C.longlong(max(0, st.Size()-int64(offset)))
	}
	rq.keepFile(f, int64(count))
	return count // to be sent: a short file is found out then (cutShort)
}

// reopen opens the file behind fd anew, with an offset of its own: a
// duplicate would share the app's, and an app that serves one open file
// object to several requests at once would see them move each other's.
// Falls back to a duplicate where /proc is not mounted.
func reopen(fd int) (*os.File, error) {
	if f, err := os.Open("/proc/self/fd/" + strconv.Itoa(fd)); err == nil {
		return f, nil
	}
	dup, err := syscall.Dup(fd)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(dup), "wsgi.file_wrapper"), nil
}

//export cs_go_abort
func cs_go_abort(h C.uintptr_t) {
	defer func() { _ = recover() }()
	if _, rq := current(h); rq != nil {
		rq.aborted = true
	}
}

var zapLevels = [...]zapcore.Level{zapcore.DebugLevel, zapcore.InfoLevel, zapcore.WarnLevel, zapcore.ErrorLevel}

//export cs_go_log
func cs_go_log(level C.int, msg *C.char, n C.size_t) {
	defer func() { _ = recover() }()
	lvl := zapcore.ErrorLevel
	if level >= 0 && int(level) < len(zapLevels) {
		lvl = zapLevels[level]
	}
	if ce := pyLogger.Check(lvl, C.GoStringN(msg, C.int(n))); ce != nil {
		ce.Write()
	}
}
