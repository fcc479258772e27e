package caddysnake

// #include <stdlib.h>
// #include "caddysnake.h"
import "C"

import (
	"crypto/tls"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"go.uber.org/zap"
)

// asgiRequest is one HTTP request served by an ASGI app. Its ServeHTTP
// goroutine owns the ResponseWriter and the request body; the event loop
// thread talks to it only through cmds (the app's messages, handed over by
// eventLoop.deliver) and it answers through the loop's event queue.
type asgiRequest struct {
	w       http.ResponseWriter
	r       *http.Request
	handle  uintptr  // the request's key in requests, as Python knows it
	cmds    cmdQueue // the app's messages, from eventLoop.deliver
	loop    *eventLoop
	closing <-chan struct{} // the handler is being retired (reload or stop)
	cut     <-chan struct{} // the process exits and the grace period is over
	wsEnded atomic.Bool     // the WebSocket reader saw the connection end
	started bool            // the app sent http.response.start
	status  int             // its status
	header  http.Header     // its headers, applied by commit: with the first body bytes, or at once (cmdStart)
	sent    bool            // the status line has been written to the ResponseWriter
	// trailers: the app announced trailers, so the body is flushed as it is
	// written (chunked) and the response ends with http.response.trailers.
	trailers bool
	bodyLeft int64     // request body bytes still expected, -1 if unknown
	body     bodyLimit // response body against the declared Content-Length
	rc       *http.ResponseController
	// What the batch being handled wrote and has yet to settle: one flush
	// and one acknowledgement for all of its streamed chunks (settle).
	unflushed bool
	acks      int   // streamed chunks written, not yet acknowledged
	ackRef    pyRef // the last one's ref, sent back with the acknowledgement
	// refused: a body read failed before the response began in a way
	// Caddy answers itself (refusal): ServeHTTP returns this 413 or 400.
	refused error
	// The first messages' room in cmds: a response's start and body
	// usually arrive together, and then cost no allocation.
	firstCmds [2]asgiCmd
}

// The app's messages (asgiCmd kinds), as C numbers them (caddysnake.h).
const (
	cmdStart     = C.CS_MSG_START
	cmdEarlyHint = C.CS_MSG_EARLY_HINT
	cmdTrailers  = C.CS_MSG_TRAILERS
	cmdBody      = C.CS_MSG_BODY
	cmdWantBody  = C.CS_MSG_WANT_BODY
	cmdDone      = C.CS_MSG_DONE
	cmdPathsend  = C.CS_MSG_PATHSEND
	cmdWSAccept  = C.CS_MSG_WS_ACCEPT // header: extra headers; path: the chosen subprotocol
	cmdWSSend    = C.CS_MSG_WS_SEND   // body; more: text
	cmdWSClose   = C.CS_MSG_WS_CLOSE  // status: code; path: reason
)

// asgiCmd is one message from the app. Everything in it is Go memory
// (decodeMsg copies it out of the C message, which is freed at once), except
// a large body chunk: then body is a view of the app's bytes object and ref
// the reference that keeps it alive, which must go back to the loop once
// the chunk is written or dropped (writeBody, dropQueued, deliver).
type asgiCmd struct {
	kind   int
	status int
	header http.Header
	body   []byte
	more   bool // more_body / more_trailers / trailers announced, or "failed" for cmdDone
	now    bool // cmdStart: send the headers now (C's CS_START_NOW)
	size   int  // cmdWantBody on a WebSocket: bytes of the status messages received
	path   string
	ref    pyRef
	// cmdPathsend: the file the driver opened in send(), Go's to close
	// (sendFile, dropCmd); size is its size when opened.
	file *os.File
}

// pyRef is a reference to a Python object that Go holds and must hand back
// to the loop (eventLoop.release); nil for none.
type pyRef = C.cs_obj

// cmdQueue holds one request's messages from the app, in order. It is
// unbounded, so delivering never blocks or drops: the driver's flow control
// (STREAM_WINDOW, WebSocket credits) is what bounds it in practice.
type cmdQueue struct {
	mu     sync.Mutex
	q      []asgiCmd
	spare  []asgiCmd
	ready  chan struct{} // holds a token while q is not empty
	closed bool          // the request is over: put refuses
}

// put queues c; false if the request is over (the caller keeps c).
func (q *cmdQueue) put(c asgiCmd) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.q = append(q.q, c)
	first := len(q.q) == 1
	q.mu.Unlock()
	if first {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return true
}

// take returns every waiting message, oldest first; the slice is valid until
// the next take (the request goroutine's alone).
func (q *cmdQueue) take() []asgiCmd {
	clear(q.spare) // drop the previous batch's references
	q.mu.Lock()
	batch := q.q
	q.q = q.spare[:0]
	q.mu.Unlock()
	q.spare = batch
	return batch
}

// putBack returns the unread rest of a batch to the front of the queue.
func (q *cmdQueue) putBack(rest []asgiCmd) {
	if len(rest) == 0 {
		return
	}
	q.mu.Lock()
	q.q = append(append([]asgiCmd(nil), rest...), q.q...)
	q.mu.Unlock()
	clear(rest) // queued again: the batch no longer holds them
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// close ends the queue: it returns the messages still waiting and the last
// batch taken, where handled messages have had their ref zeroed (handle_),
// and later puts fail.
func (q *cmdQueue) close() (waiting, batch []asgiCmd) {
	q.mu.Lock()
	q.closed = true
	waiting = q.q
	q.q = nil
	q.mu.Unlock()
	return waiting, q.spare
}

// requestTable maps the handles Python holds to live requests. A handle is
// never reused, so a message for a request that is over finds nothing.
type requestTable struct {
	mu   sync.Mutex
	m    map[uintptr]*asgiRequest
	last uintptr
}

var requests = requestTable{m: make(map[uintptr]*asgiRequest)}

func (t *requestTable) add(rq *asgiRequest) uintptr {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last++
	t.m[t.last] = rq
	return t.last
}

func (t *requestTable) get(h uintptr) *asgiRequest {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[h]
}

func (t *requestTable) remove(h uintptr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, h)
}

// chunkPool recycles the Go copies of response chunks (streaming 100 MiB
// in 64 KiB chunks would otherwise allocate 1,600 buffers for the GC), and
// smallChunkPool those of small ones: most bodies are small (bytes objects
// of CS_ZERO_COPY_MIN or more are not copied), and a 64 KiB buffer for each
// held every response in flight at 64 KiB (a 13-byte hello at 2,000
// connections: ~400 MB of RSS against ~200 MB for one of 4 KiB).
var (
	chunkPool      = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}
	smallChunkPool = sync.Pool{New: func() any { b := make([]byte, 0, smallChunk); return &b }}
)

const smallChunk = 4 << 10

func getChunk(n int) []byte {
	switch {
	case n <= smallChunk:
		return (*smallChunkPool.Get().(*[]byte))[:n]
	case n <= 64<<10:
		return (*chunkPool.Get().(*[]byte))[:n]
	}
	return make([]byte, n)
}

func putChunk(b []byte) {
	switch cap(b) {
	case smallChunk:
		smallChunkPool.Put(&b)
	case 64 << 10:
		chunkPool.Put(&b)
	}
}

// serveASGI runs one request through the app's Runner and returns when the
// response is complete (the app may still run, e.g. background tasks).
func (p *Python) serveASGI(w http.ResponseWriter, r *http.Request) error {
	rq := &asgiRequest{w: w, r: r, loop: p.loop, closing: p.closing, cut: p.cut,
		bodyLeft: r.ContentLength, body: bodyLimit{length: -1}}
	rq.cmds.ready = make(chan struct{}, 1)
	rq.cmds.q = rq.firstCmds[:0]
	rq.handle = requests.add(rq)
	// Once removed, late messages for this request are dropped on delivery
	// instead of touching a finished response.
	defer requests.remove(rq.handle)
	p.inflight.Add(1)
	defer p.inflight.Done()
	defer rq.dropQueued()

	flags := 0
	if hasBody(r) {
		flags |= C.CS_NEW_HAS_BODY
		if r.ContentLength < 0 || r.ContentLength >= C.CS_ZERO_COPY_MIN {
			flags |= C.CS_NEW_LARGE_BODY
		} else if bodyAhead(r) {
			flags |= C.CS_NEW_BODY_AHEAD
		}
	}
	if acceptsTrailers(r) {
		flags |= C.CS_NEW_TRAILERS
	}
	if r.TLS != nil {
		flags |= C.CS_NEW_TLS
	}
	ws := isWebSocket(r)
	if ws {
		flags |= C.CS_NEW_WEBSOCKET
	}
	buf := scopeBufs.Get().(*[]byte)
	scope := appendScope((*buf)[:0], r, p.RootPath)
	data := C.CBytes(scope) // the loop thread frees it after decoding
	*buf = scope
	scopeBufs.Put(buf)
	p.loop.push(C.cs_event{handle: C.uintptr_t(rq.handle), app: p.app.obj,
		data: (*C.char)(data), len: C.size_t(len(scope)), kind: C.CS_EV_NEW, flags: C.int(flags)})
	if ws {
		return rq.runWS(p.wsOptions())
	}
	if flags&C.CS_NEW_BODY_AHEAD != 0 {
		rq.readBody(nil, nil) // what has arrived of it, or else its first bytes
	}
	if rq.refused != nil {
		return rq.refused
	}
	return rq.run()
}

// scopeBufs recycles the Go buffers scopes are packed in (C.CBytes copies).
var scopeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (rq *asgiRequest) run() error {
	gone := rq.r.Context().Done()
	for {
		select {
		case <-rq.cmds.ready:
			batch := rq.cmds.take()
			done := false
			for i := 0; i < len(batch) && !done; i++ {
				done = rq.handle_(&batch[i])
			}
			// Finished: the app completed the response (its receive() now
			// returns http.disconnect without a word from Go), it ended, or
			// a write failed (which already told it).
			if rq.settle() || done {
				return rq.refused // nil, or Caddy's 413 or 400
			}
		case <-gone:
			rq.loop.pushSimple(rq.handle, C.CS_EV_DISCONNECT)
			rq.clientClosed()
			return nil
		case <-rq.cut:
			// The app sees a disconnect; the client a 503, or a truncated
			// response rather than one that looks complete.
			rq.loop.pushSimple(rq.handle, C.CS_EV_DISCONNECT)
			if rq.sent {
				panic(http.ErrAbortHandler)
			}
			rq.sent = true
			http.Error(rq.w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
			return nil
		}
	}
}

// clientClosed records a 499 for a client that left before the response
// began, as reverse_proxy does, so the access log shows the disconnect and
// Go does not answer an empty 200 to a client that only half-closed.
func (rq *asgiRequest) clientClosed() {
	if !rq.sent {
		rq.sent = true
		rq.w.WriteHeader(499)
	}
}

// dropQueued hands back the refs of the messages the request never handled
// (it ended early: a disconnect, a failed write, the app's failure).
func (rq *asgiRequest) dropQueued() {
	rq.loop.release(rq.ackRef) // a batch that ended in a panic did not settle
	rq.ackRef = nil
	waiting, batch := rq.cmds.close()
	for _, cs := range [2][]asgiCmd{waiting, batch} {
		for i := range cs {
			rq.loop.dropCmd(&cs[i])
		}
	}
}

// handle_ applies one message; it reports whether the response is finished.
// It takes over c's ref (zeroing it), so an unhandled rest of a batch is all
// dropQueued has to release.
func (rq *asgiRequest) handle_(c *asgiCmd) bool {
	switch c.kind {
	case cmdEarlyHint:
		if !rq.started && rq.r.ProtoAtLeast(1, 1) {
			h := rq.w.Header()
			h["Link"] = c.header["Link"]
			rq.w.WriteHeader(http.StatusEarlyHints)
			delete(h, "Link")
		}
	case cmdStart:
		// Held until the first body bytes (as a WSGI server does), so an
		// app that fails before sending any body still gets a clean 500;
		// except a response of unknown length whose body did not come with
		// it (a stream, an event feed): the client gets its headers now, as
		// reverse_proxy flushes such a response's headers at once (and
		// uvicorn sends every start at once).
		rq.started, rq.trailers, rq.status, rq.header = true, c.more, c.status, c.header
		if c.now {
			rq.commit()
			rq.unflushed = true // settle, at the end of the batch
		}
	case cmdBody:
		ref := c.ref
		c.ref = nil
		done := rq.writeBody(c.body, c.more, ref)
		if ref == nil {
			putChunk(c.body)
		}
		return done
	case cmdTrailers:
		rq.commit()
		h := rq.w.Header()
		for k, v := range c.header {
			if !notInTrailers[k] {
				h[http.TrailerPrefix+k] = v
			}
		}
		return !c.more
	case cmdPathsend:
		f := c.file
		c.file = nil
		rq.sendFile(f, int64(c.size))
		return true
	case cmdWantBody:
		// What was written goes out before Go waits on the client, who may
		// be waiting for it (a full-duplex stream).
		if rq.settle() {
			return true
		}
		ref := c.ref
		c.ref = nil
		rq.readBody(c.body, ref)
		return rq.refused != nil
	case cmdDone:
		// The app ended (raised, or returned) before completing the
		// response; the Python side logged why.
		if !rq.sent {
			rq.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			rq.w.Header().Set("Content-Length", "21")
			rq.w.WriteHeader(http.StatusInternalServerError)
			if bodySent(rq.r, http.StatusInternalServerError) {
				_, _ = io.WriteString(rq.w, "Internal Server Error")
			}
			return true
		}
		rq.settle()                 // the client gets what was sent,
		panic(http.ErrAbortHandler) // then a truncated response
	}
	return false
}

// commit writes the status and headers of http.response.start.
func (rq *asgiRequest) commit() {
	if rq.sent {
		return
	}
	rq.sent = true
	h := rq.w.Header()
	for k, v := range rq.header {
		// Added to what Caddy's `header` directive set, as reverse_proxy
		// adds an upstream's headers (and as WSGI's addAppHeaders does);
		// the app's Server replaces Caddy's.
		if k == "Server" || len(h[k]) == 0 {
			h[k] = v
		} else {
			h[k] = slices.Concat(h[k], v) // a new slice: Caddy's may be shared
		}
	}
	finishHeaders(h, rq.r, rq.status, rq.bodyLeft == 0)
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			rq.body.length = n
		}
	}
	rq.w.WriteHeader(rq.status)
}

func (rq *asgiRequest) flush() error {
	if rq.rc == nil {
		rq.rc = http.NewResponseController(rq.w)
	}
	return rq.rc.Flush()
}

// writeBody writes a chunk. A more_body chunk is acknowledged once it is
// flushed (settle), so the app's send() waits only when the client is slow
// (backpressure); the chunks of one batch share that flush. ref (nil, or the
// reference keeping b alive) is not needed once Write returns (io.Writer
// does not keep b), but the last streamed one rides back with the
// acknowledgement, saving an event; others go back alone, deferred, so a
// writer that panics does not leak them.
func (rq *asgiRequest) writeBody(b []byte, more bool, ref pyRef) bool {
	defer func() { rq.loop.release(ref) }()
	rq.commit()
	var err error
	if len(b) > 0 && bodySent(rq.r, rq.status) { // HEAD, 204 and 304 bodies are dropped
		err = rq.body.write(rq.w, rq.r, b)
	}
	if err != nil {
		rq.writeFailed()
		return true
	}
	// Announced trailers need a chunked body: flushed before the handler
	// returns, it is not given a Content-Length.
	rq.unflushed = rq.unflushed || more || rq.trailers
	if more {
		rq.taken(ref)
		ref = nil
	}
	return !more && !rq.trailers
}

// taken counts a streamed chunk or WebSocket message as written, for settle
// to acknowledge; its ref (nil or the reference keeping it alive) rides
// back with the acknowledgement if it is the batch's last.
func (rq *asgiRequest) taken(ref pyRef) {
	rq.acks++
	// Quietly: settle's acknowledgement follows and wakes the loop. A
	// release that woke it made it wake twice per batch while the app
	// waited for the acknowledgement (once for nothing it could use).
	rq.loop.releaseQuiet(rq.ackRef)
	rq.ackRef = ref
}

// settle flushes what the batch wrote and acknowledges its streamed chunks
// in one event. It reports a failed flush (the app has been told).
func (rq *asgiRequest) settle() bool {
	if rq.unflushed {
		rq.unflushed = false
		if err := rq.flush(); err != nil {
			rq.writeFailed()
			return true
		}
	}
	if rq.acks > 0 {
		rq.loop.push(C.cs_event{handle: C.uintptr_t(rq.handle), app: rq.ackRef,
			kind: C.CS_EV_SEND_DONE, flags: C.int(rq.acks)})
		rq.acks, rq.ackRef = 0, nil
	}
	return false
}

// writeFailed tells the app that the client is gone (which fails its
// waiting sends) and drops what awaited acknowledgement.
func (rq *asgiRequest) writeFailed() {
	rq.unflushed, rq.acks = false, 0
	rq.loop.release(rq.ackRef)
	rq.ackRef = nil
	rq.loop.pushSimple(rq.handle, C.CS_EV_DISCONNECT)
}

// readBody reads the next chunk of the request body for the app; it is
// called only when the app waits in receive(), so at most one chunk is ever
// buffered per request (flow control for large uploads). For a large body
// the app sent a bytes object to read into (into, its reference ref), which
// goes back filled: no copy. Otherwise the chunk is read into C memory,
// which the loop copies into a bytes object.
func (rq *asgiRequest) readBody(into []byte, ref pyRef) {
	size := C.CS_BODY_CHUNK // bounded per request; big enough that uploads cost few crossings
	if ref != nil {
		size = len(into)
	}
	if rq.bodyLeft >= 0 && rq.bodyLeft < int64(size) {
		size = int(rq.bodyLeft)
	}
	if size == 0 {
		rq.loop.release(ref)
		rq.pushBody(nil, nil, 0, false)
		return
	}
	var buf unsafe.Pointer
	if ref == nil {
		buf = C.malloc(C.size_t(size))
		into = unsafe.Slice((*byte)(buf), size)
	}
	n, err := 0, error(nil)
	for n == 0 && err == nil {
		n, err = rq.r.Body.Read(into[:size])
	}
	if err != nil && err != io.EOF {
		if buf != nil {
			C.free(buf)
		}
		rq.loop.release(ref)
		// The app sees a disconnect; for a body Caddy refuses (over
		// request_body's max_size, malformed) the client gets Caddy's 413
		// or 400, if the response has not begun.
		rq.loop.pushSimple(rq.handle, C.CS_EV_DISCONNECT)
		var refused error
		if !rq.sent {
			refused = refusal(rq.r, err)
		}
		switch {
		case refused != nil:
			rq.refused = refused
		case errors.Is(err, http.ErrBodyReadAfterClose):
			pyLogger.Warn("ASGI app read the request body after its response began: over HTTP/1.x, "+
				"Go's server discards the unread body then unless Caddy's enable_full_duplex server "+
				"option is on; the app got http.disconnect", zap.String("path", rq.r.URL.Path))
		}
		return
	}
	if err == io.EOF {
		rq.bodyLeft = 0 // a chunked body's end too: finishHeaders keeps the connection
	} else if rq.bodyLeft > 0 {
		rq.bodyLeft -= int64(n)
	}
	more := err == nil && rq.bodyLeft != 0
	if n == 0 && buf != nil {
		C.free(buf)
		buf = nil
	}
	rq.pushBody(buf, ref, n, more)
}

// pushBody hands the app a body chunk: n bytes of C memory at buf (the
// loop frees it), or of the bytes object ref.
func (rq *asgiRequest) pushBody(buf unsafe.Pointer, ref pyRef, n int, more bool) {
	flags := 0
	if more {
		flags = 1
	}
	rq.loop.push(C.cs_event{handle: C.uintptr_t(rq.handle), data: (*C.char)(buf), app: ref,
		len: C.size_t(n), kind: C.CS_EV_BODY, flags: C.int(flags)})
}

// sendFile serves http.response.pathsend from f, which the driver opened in
// send() (so the app may delete the file once send() returns): Go reads it
// itself, with sendfile(2) when nothing between the handler and the socket
// needs bytes. It sends exactly the response's Content-Length (the app's,
// else size, the file's when opened): a file that grew meanwhile is cut
// there, so the next response on the connection is not read from its tail;
// one that shrank leaves the client a cut-off response (a reset HTTP/2
// stream), never a short one that looks whole.
func (rq *asgiRequest) sendFile(f *os.File, size int64) {
	defer f.Close()
	if rq.header.Get("Content-Length") == "" && !rq.trailers {
		rq.header.Set("Content-Length", strconv.FormatInt(size, 10))
	}
	rq.commit()
	if !bodySent(rq.r, rq.status) {
		return
	}
	widenWriteChunk(rq.r)
	var n int64
	var err error
	if rq.body.length >= 0 {
		n, err = io.CopyN(rq.w, f, rq.body.length) // a LimitedReader: still sendfile(2)
	} else {
		n, err = io.Copy(rq.w, f) // announced trailers: chunked, the whole file
	}
	rq.body.written += n
	if err == nil {
		return
	}
	if rq.r.Context().Err() == nil { // else the client left
		pyLogger.Error("http.response.pathsend: the file ended short of the response's Content-Length, "+
			"or could not be read; response cut off", zap.String("file", f.Name()),
			zap.Int64("content_length", rq.body.length), zap.Int64("sent", n), zap.Error(err))
	}
	panic(http.ErrAbortHandler)
}

// hasBody says whether a request has a body to read (Go gives one without
// a body http.NoBody, or a ContentLength of 0).
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// bodyAhead says whether the first chunk of a small request body (of known
// length, under CS_ZERO_COPY_MIN) goes to the app before it asks: it has
// nearly always arrived with the headers, and the app's first receive() is
// then answered without a round trip to Go. Not with "Expect:
// 100-continue", whose "100 Continue" must wait until the app reads.
// Go takes only what has arrived (one Read), so an app still sees a body
// that trickles in piece by piece, as under uvicorn.
func bodyAhead(r *http.Request) bool {
	return len(r.Header["Expect"]) == 0
}

// notInTrailers are fields a trailer section must not carry (RFC 9110
// §6.5.1: framing, routing and content processing; hop-by-hop ones never
// reach here, addAppHeaders drops them): an app's are dropped, as Go's
// server would otherwise write them.
var notInTrailers = map[string]bool{
	"Content-Length": true, "Content-Type": true, "Content-Encoding": true, "Content-Range": true,
	"Host": true, "Connection": true,
}

func acceptsTrailers(r *http.Request) bool {
	for _, v := range r.Header["Te"] {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]), "trailers") {
				return true
			}
		}
	}
	return false
}

// appendScope packs the HTTP scope as [u32 len][bytes] fields in the order
// caddysnake.c's http_scope reads them: method, scheme,
// http_version, path, raw_path, query_string, root_path, client host/port,
// server host/port, tls version, cipher suite, client cert chain (PEM),
// client cert name; then (lowercased name, value) header pairs: host first
// (when sent), the X-Forwarded-* trio (see forwarded.go), the others.
func appendScope(b []byte, r *http.Request, root string) []byte {
	t := requestTarget(r, root)
	fwd := forwardedHeaders(r)
	scheme := fwd.scheme()
	b = field(b, r.Method)
	b = field(b, scheme)
	b = field(b, httpVersion(r))
	b = field(b, t.script+t.path)
	b = field(b, t.rawPath(r))
	b = field(b, t.query)
	b = field(b, t.script)
	b = field(b, fwd.client)
	b = field(b, fwd.port)
	shost, sport := localAddr(r)
	b = field(b, shost)
	b = field(b, sport)
	b = appendTLS(b, r.TLS)
	if r.Host != "" { // an HTTP/1.0 client may send none
		b = field(b, "host")
		b = field(b, r.Host)
	}
	for _, te := range r.TransferEncoding { // Go moves it out of r.Header
		b = field(b, "transfer-encoding")
		b = field(b, te)
	}
	if len(r.Trailer) > 0 { // and Trailer too
		b = field(field(b, "trailer"), trailerNames(r))
	}
	if !fwd.omit {
		b = field(field(b, "x-forwarded-for"), fwd.xff)
		b = field(field(b, "x-forwarded-proto"), fwd.proto)
		if fwd.host != "" {
			b = field(field(b, "x-forwarded-host"), fwd.host)
		}
	}
	for k, vs := range r.Header {
		if isForwardedHeader(k) {
			continue // replaced above
		}
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint32(b, uint32(len(k)))
			for i := 0; i < len(k); i++ {
				c := k[i]
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				b = append(b, c)
			}
			b = field(b, v)
		}
	}
	return b
}

func field(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func httpVersion(r *http.Request) string {
	switch {
	case r.ProtoMajor >= 2:
		return strconv.Itoa(r.ProtoMajor)
	case r.ProtoMinor == 0:
		return "1.0"
	}
	return "1.1"
}

// appendTLS adds the four fields of the ASGI tls extension (empty without TLS).
func appendTLS(b []byte, cs *tls.ConnectionState) []byte {
	if cs == nil {
		return field(field(field(field(b, ""), ""), ""), "")
	}
	var chain []byte
	name := ""
	for i, c := range cs.PeerCertificates {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		if i == 0 {
			name = c.Subject.ToRDNSequence().String()
		}
	}
	b = field(b, strconv.Itoa(int(cs.Version)))
	b = field(b, strconv.Itoa(int(cs.CipherSuite)))
	b = field(b, string(chain))
	return field(b, name)
}
