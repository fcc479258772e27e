package caddysnake

// #include "caddysnake.h"
import "C"

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// request is the Go side of one HTTP request while a worker serves it. It is
// touched by the ServeHTTP goroutine before submit and after done, and by the
// worker (through the callbacks) in between, never by both at once.
type request struct {
	w       http.ResponseWriter
	r       *http.Request
	done    chan struct{}
	status  int       // status sent to the client; 0 until the headers are sent
	body    bodyLimit // body bytes written against the declared Content-Length
	aborted bool      // the app failed after the response began
	rc      *http.ResponseController
	// streaming: stream's writer has been used (it writes small streamed
	// chunks for the app's thread, see stream.go).
	streaming bool
	stream    streamer
	// A small request body, read by the ServeHTTP goroutine before the
	// request is queued (readAhead): ahead is what the app has not been
	// given yet, aheadErr the error that cut that read short, whole whether
	// ahead is the whole body (it then reaches the app as bytes, not through
	// cs_go_read). aheadBuf is ahead's storage, kept with the pooled request.
	ahead    []byte
	aheadErr error
	whole    bool
	aheadBuf []byte
	// aheadHeld: the bytes of ahead counted against aheadBudget.
	aheadHeld int64
	// refused: a body read failed before the response began in a way
	// Caddy answers itself (refusal): the handler error ServeHTTP returns.
	refused  error
	consumed int64 // body bytes given to the app
	ended    bool  // the body's end was read (a chunked one's too)
	// uploadLost: a body read failed because the client left (left).
	uploadLost bool
	// spool: the body, drained to disk while the request waited for a
	// thread (spoolIfWaiting); nil when the app reads r.Body itself.
	spool *spooledBody
	// What finishWrites writes once the worker is free (tails.go): a last
	// chunk (tail, a view of the bytes object tailObj, whose reference Go
	// holds; it counts against tailBudget), or a file's tailFileN bytes.
	tail      []byte
	tailObj   C.cs_obj
	tailFile  *os.File
	tailFileN int64
}

var requestPool = sync.Pool{New: func() any {
	return &request{done: make(chan struct{}, 1)}
}}

func newRequest(w http.ResponseWriter, r *http.Request) *request {
	rq := requestPool.Get().(*request)
	rq.w, rq.r = w, r
	rq.status, rq.body, rq.aborted, rq.rc = 0, bodyLimit{length: -1}, false, nil
	rq.ahead, rq.aheadErr, rq.whole, rq.refused, rq.consumed, rq.uploadLost = nil, nil, false, nil, 0, false
	rq.ended = false
	return rq
}

// readAheadMax: bodies this long or longer are read only as the app asks.
// Below it, reading the body before the request takes a thread costs a copy
// into the bytes object (C, with the GIL) but saves the app's thread a call
// into Go that gives up and retakes the GIL, and a wait on the client that
// the spill watcher takes for I/O (spill.go): 64 KiB uploads, 100
// connections, 19.4k -> 24.7k req/s (CPU per request 74 -> 60 µs), where
// the bound was 16 KiB. ASGI's first chunk is one read of Go's (at most
// CS_BODY_CHUNK, the same 256 KiB).
const readAheadMax = 256 << 10

const aheadStep = 16 << 10

// aheadBudget bounds the bytes of bodies of 16 KiB or more (aheadStep) read
// ahead and held by requests in flight, process-wide: a burst of uploads
// waiting for threads is not all held in memory at once. Past it, the app
// reads the body from the client itself, as it did bodies of that size
// before they were read ahead.
var aheadBudget int64 = 64 << 20 // (a variable for the tests)

var aheadBytes atomic.Int64

// readAhead reads a small request body (of known length, under
// readAheadMax; see bodyAhead) whole on the ServeHTTP goroutine, before the
// request waits for a Python thread, as waitress does with every body. Such
// a body nearly always came with the headers: the app then gets it as one
// bytes object, with no call back into Go, and no Python thread waits on a
// client that is slow to send it. (ASGI reads only what has arrived: an
// async app may answer while the body trickles in; a WSGI app reads first.)
// If the read fails, the app gets what came before the failure, then the
// failure, as when it reads the body itself.
func (rq *request) readAhead() {
	r := rq.r
	if r.Body == nil || r.ContentLength <= 0 || r.ContentLength >= readAheadMax || !bodyAhead(r) {
		return
	}
	if r.ContentLength >= aheadStep {
		if aheadBytes.Add(r.ContentLength) > aheadBudget {
			aheadBytes.Add(-r.ContentLength)
			return
		}
		rq.aheadHeld = r.ContentLength // until release
	}
	if int64(cap(rq.aheadBuf)) < r.ContentLength {
		// Grown to the largest body this pooled request has read ahead,
		// in steps of 16 KiB (most bodies are far smaller than the bound).
		rq.aheadBuf = make([]byte, (r.ContentLength+aheadStep-1)/aheadStep*aheadStep)
	}
	n, err := io.ReadFull(r.Body, rq.aheadBuf[:r.ContentLength])
	rq.ahead = rq.aheadBuf[:n]
	if err == nil {
		rq.whole = true
	} else {
		rq.aheadErr = err // the app's read of the rest fails
	}
}

// spoolIfWaiting drains the body of an HTTP/2 or HTTP/3 request that has
// to wait for a thread into a temporary file (spool.go), so that it stops
// holding its connection's flow-control window. Not a body read ahead
// already, nor one behind "Expect: 100-continue" (its client sends nothing
// before the app reads, so it holds no window).
func (rq *request) spoolIfWaiting() {
	r := rq.r
	if r.ProtoMajor < 2 || !hasBody(r) || !bodyAhead(r) || rq.whole || rq.aheadErr != nil {
		return
	}
	rq.spool = spoolBody(r.Body)
}

// read fills b with the app's next body bytes: first what readAhead kept,
// then the error that ended its read, then from the client. 0, nil at the
// end of the body.
func (rq *request) read(b []byte) (int, error) {
	if len(rq.ahead) > 0 {
		m := copy(b, rq.ahead)
		rq.ahead = rq.ahead[m:]
		rq.consumed += int64(m)
		return m, nil
	}
	if err := rq.aheadErr; err != nil {
		rq.aheadErr = nil
		return 0, rq.readFailed(err)
	}
	for {
		var src io.Reader = rq.r.Body
		if rq.spool != nil {
			src = rq.spool
		}
		m, err := src.Read(b)
		if err == io.EOF {
			rq.ended = true
		}
		switch {
		case m > 0:
			rq.consumed += int64(m)
			return m, nil
		case err == io.EOF:
			return 0, nil
		case err != nil:
			return 0, rq.readFailed(err)
		}
	}
}

// bodyLeft is how many body bytes the app has yet to read (0 once its end
// was read, a chunked body's too), or -1 if the body's length is unknown.
func (rq *request) bodyLeft() int64 {
	if rq.ended {
		return 0
	}
	if rq.r.ContentLength < 0 {
		return -1
	}
	return max(0, rq.r.ContentLength-rq.consumed)
}

// readFailed notes a body Caddy refuses (refusal): the response becomes
// Caddy's 413 or 400, or is cut off if it has begun (the client is still
// there, and must not take it for a whole answer). The app's read fails
// either way.
func (rq *request) readFailed(err error) error {
	if rq.refused != nil || rq.aborted {
		return err // noted already: a failed body fails every later read
	}
	if refused := refusal(rq.r, err); refused != nil {
		if rq.status == 0 {
			rq.refused = refused
		} else {
			rq.aborted = true
		}
	} else {
		rq.uploadLost = true
	}
	return err
}

// left says whether the client went away during its upload (and Go then
// cancelled the request): an answer the app makes anyway reaches nobody,
// and is logged as a 499, as reverse_proxy logs it, not as a 200 that was
// never sent. Not for every cancelled request: Go also cancels one whose
// client only half-closed after sending it, which may still read the answer.
func (rq *request) left() bool {
	return rq.uploadLost && rq.r.Context().Err() != nil
}

// refusal is the handler error a failed body read makes of the response,
// or nil if the client left: Caddy's 413 for a body over request_body's
// max_size, a 400 for a malformed one (logged: Caddy logs a handler's 4xx
// only at debug level). The app cannot answer either: its read fails.
func refusal(r *http.Request, err error) error {
	switch {
	case overLimit(err):
		return caddyhttp.Error(http.StatusRequestEntityTooLarge, err)
	case malformedBody(err):
		pyLogger.Warn("malformed request body: answered 400", zap.String("path", r.URL.Path), zap.Error(err))
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	return nil
}

// malformedBody says whether a body read failed because the client broke
// the chunked encoding (a bad chunk size, a line too long, a bad trailer),
// not because it left; Caddy→gunicorn answers that with a 502 from
// reverse_proxy. Go does not export its chunked reader's errors: they are
// matched by their text.
func malformedBody(err error) bool {
	var pe textproto.ProtocolError
	if errors.Is(err, http.ErrLineTooLong) || errors.As(err, &pe) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "chunk") || strings.Contains(msg, "suspiciously long trailer")
}

// overLimit says whether a body read failed because the body went over
// request_body's max_size (Caddy wraps an *http.MaxBytesError). Caddy
// answers a Content-Length over the limit with 413 before the app runs; a
// chunked body over it is found out only as the app reads, and its response
// is then 413 too (request_body's documented answer when a later handler
// reads too much), not whatever the app made of a cut-off body: a 400 from
// a form parser, or a 500 from the failed read.
func overLimit(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

func (rq *request) flush() error {
	if rq.rc == nil {
		rq.rc = http.NewResponseController(rq.w)
	}
	return rq.rc.Flush()
}

// cutShort makes a response shorter than its declared Content-Length end as
// reverse_proxy ends a short upstream body: the client gets what was sent,
// then sees truncation (HTTP/2: a reset stream; Go's HTTP/1 server closes the
// connection), not a response that ends as if it were whole. After
// finishWrites.
func (rq *request) cutShort() {
	if rq.aborted || !rq.body.short(rq.r, rq.status) { // (false before a status: no body allowed)
		return
	}
	_ = rq.flush()
	rq.aborted = true
	if rq.r.Context().Err() == nil { // else the client left: not the app's doing
		pyLogger.Warn("python app wrote less than its Content-Length; response cut off",
			zap.Int64("content_length", rq.body.length), zap.Int64("written", rq.body.written),
			zap.String("path", rq.r.URL.Path))
	}
}

func (rq *request) release() {
	if rq.spool != nil {
		rq.spool.Close()
		rq.spool = nil
	}
	rq.w, rq.r, rq.rc = nil, nil, nil
	rq.ahead, rq.aheadErr = nil, nil
	if rq.aheadHeld > 0 {
		aheadBytes.Add(-rq.aheadHeld)
		rq.aheadHeld = 0
	}
	rq.tail, rq.tailObj, rq.tailFile = nil, nil, nil // (finishWrites took them)
	requestPool.Put(rq)
}

// serve runs one request on this worker's thread.
func (w *worker) serve(ts C.cs_tstate, rq *request) {
	w.cur = rq
	w.env = appendEnviron(w.env[:0], rq.r, w.pool.root)
	withBody := C.int(0)
	if hasBody(rq.r) {
		withBody = 1
	}
	var body *C.char
	if rq.whole {
		body = (*C.char)(unsafe.Pointer(unsafe.SliceData(rq.ahead)))
	}
	// w.env and the body are Go memory without Go pointers, borrowed by C
	// for the call only.
	C.cs_wsgi_handle(ts, w.pool.app.obj, (*C.char)(unsafe.Pointer(unsafe.SliceData(w.env))),
		C.size_t(len(w.env)), C.uintptr_t(w.handle), withBody, body, C.size_t(len(rq.ahead)))
	// What the app streamed or left as its tail is written by ServeHTTP,
	// once this thread is free (finishWrites).
	if rq.status == 0 && !rq.aborted && rq.refused == nil {
		if rq.left() {
			rq.w.WriteHeader(499) // logged as reverse_proxy logs it (cs_go_send sent nothing)
		} else {
			// The driver always answers; this is the last line of defence.
			rq.w.WriteHeader(http.StatusInternalServerError)
		}
	}
	w.cur = nil
}

// appendEnviron packs the CGI part of the WSGI environ as length-prefixed
// (key, value) pairs that C turns into str objects (latin-1, PEP 3333's
// "bytes-as-str"). Go does the string work here because it is cheaper than
// doing it in Python; the wsgi.* keys are added by caddysnake_py.wsgi.
func appendEnviron(b []byte, r *http.Request, root string) []byte {
	t := requestTarget(r, root)
	b = pair(b, "REQUEST_METHOD", r.Method)
	b = pair(b, "SCRIPT_NAME", t.script)
	b = pair(b, "PATH_INFO", t.path)
	b = pair(b, "QUERY_STRING", t.query)
	b = pair(b, "REQUEST_URI", t.uri)
	b = pair(b, "RAW_URI", t.uri) // gunicorn's name for it
	b = pair(b, "SERVER_PROTOCOL", serverProtocol(r))
	fwd := forwardedHeaders(r)
	scheme := fwd.scheme()
	b = pair(b, "wsgi.url_scheme", scheme)
	name, port := serverNamePort(r, scheme)
	b = pair(b, "SERVER_NAME", name)
	b = pair(b, "SERVER_PORT", port)
	b = pair(b, "REMOTE_ADDR", fwd.client)
	b = pair(b, "REMOTE_PORT", fwd.port)
	if r.Host != "" { // an HTTP/1.0 client may send none: then no HTTP_HOST
		b = pair(b, "HTTP_HOST", r.Host)
	}
	if len(r.TransferEncoding) > 0 {
		// Go moves Transfer-Encoding out of r.Header; PEP 3333 wants every
		// header the client sent (apps test it to see that a body comes).
		b = pair(b, "HTTP_TRANSFER_ENCODING", strings.Join(r.TransferEncoding, ","))
	}
	if len(r.Trailer) > 0 { // likewise Trailer, into r.Trailer's keys
		b = pair(b, "HTTP_TRAILER", trailerNames(r))
	}
	if !fwd.omit {
		b = pair(b, "HTTP_X_FORWARDED_FOR", fwd.xff)
		b = pair(b, "HTTP_X_FORWARDED_PROTO", fwd.proto)
		if fwd.host != "" {
			b = pair(b, "HTTP_X_FORWARDED_HOST", fwd.host)
		}
	}
	for k, vs := range r.Header {
		switch {
		case isForwardedHeader(k):
			continue // replaced above
		case strings.IndexByte(k, '_') >= 0:
			// "X_Forwarded_For" would become HTTP_X_FORWARDED_FOR and spoof
			// the dashed header a proxy vouches for: drop it, as gunicorn does.
			continue
		case k == "Content-Type":
			b = pair(b, "CONTENT_TYPE", vs[0])
			continue
		case k == "Content-Length":
			b = pair(b, "CONTENT_LENGTH", vs[0])
			continue
		}
		b = headerPair(b, k, vs)
	}
	return b
}

// pair appends one [u32 len][bytes] key and value.
func pair(b []byte, k, v string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(k)))
	b = append(b, k...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// headerPair appends HTTP_<NAME> for a request header, repeated values joined
// with "," as gunicorn does (and cookies with "; ", RFC 9113 §8.2.3), without
// building intermediate strings.
func headerPair(b []byte, k string, vs []string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(5+len(k)))
	b = append(b, "HTTP_"...)
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '-':
			c = '_'
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		}
		b = append(b, c)
	}
	sep := ","
	if k == "Cookie" {
		sep = "; "
	}
	n := len(sep) * (len(vs) - 1)
	for _, v := range vs {
		n += len(v)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	for i, v := range vs {
		if i > 0 {
			b = append(b, sep...)
		}
		b = append(b, v...)
	}
	return b
}

// trailerNames rebuilds the Trailer header a client sent, which Go's server
// takes out of r.Header and keeps as the (canonical) keys of r.Trailer.
func trailerNames(r *http.Request) string {
	names := make([]string, 0, len(r.Trailer))
	for k := range r.Trailer {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// serverProtocol is the request's HTTP version, except that a 1.x above 1.1
// (Go accepts "HTTP/1.2" and answers it as 1.1) is reported as HTTP/1.1, as
// the ASGI scope reports it (httpVersion) and as the response goes out.
func serverProtocol(r *http.Request) string {
	if r.ProtoMajor == 1 && r.ProtoMinor > 1 {
		return "HTTP/1.1"
	}
	return r.Proto
}

// serverNamePort is the address the connection arrived on, as gunicorn and
// uvicorn report their listening socket (RFC 3875 §4.1.14-15): never the
// client's Host header, which apps read from HTTP_HOST. On a listener with
// no host:port (a unix socket), the Host header with the scheme's port.
func serverNamePort(r *http.Request, scheme string) (string, string) {
	if name, port := localAddr(r); name != "" {
		return name, port
	}
	name, port, err := net.SplitHostPort(r.Host)
	if err != nil { // no port in the Host header
		name, port = strings.Trim(r.Host, "[]"), "80"
		if scheme == "https" {
			port = "443"
		}
	}
	return name, port
}

// localAddr is the host and port of the connection's local end, or "" when
// the listener has none (a unix socket).
func localAddr(r *http.Request) (string, string) {
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return "", ""
	}
	t, isTCP := a.(*net.TCPAddr)
	if isTCP {
		// Every connection on a listener has the same local address, so the
		// strings made for the last one are reused: formatting them cost
		// three allocations and ~0.3 µs per request.
		if c := lastLocalAddr.Load(); c != nil && c.port == t.Port && c.ip.Equal(t.IP) && c.zone == t.Zone {
			return c.hostStr, c.portStr
		}
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "", ""
	}
	if isTCP {
		lastLocalAddr.Store(&localAddrStrings{ip: t.IP, port: t.Port, zone: t.Zone, hostStr: host, portStr: port})
	}
	return host, port
}

// localAddrStrings is a TCP address and its formatted host and port.
type localAddrStrings struct {
	ip               net.IP // never written to: a connection's address is fixed
	port             int
	zone             string
	hostStr, portStr string
}

var lastLocalAddr atomic.Pointer[localAddrStrings]
