package caddysnake

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"unsafe"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// testdataDir is resolved before any test changes the working directory.
var testdataDir, _ = filepath.Abs("testdata")

// decodeEnviron reverses appendEnviron's packing, as caddysnake.c does.
func decodeEnviron(t *testing.T, b []byte) map[string]string {
	t.Helper()
	env := map[string]string{}
	next := func() string {
		if len(b) < 4 {
			t.Fatalf("truncated environ buffer")
		}
		n := binary.LittleEndian.Uint32(b)
		s := string(b[4 : 4+n])
		b = b[4+n:]
		return s
	}
	for len(b) > 0 {
		k := next()
		if _, dup := env[k]; dup {
			t.Fatalf("duplicate environ key %q", k)
		}
		env[k] = next()
	}
	return env
}

func TestAppendEnviron(t *testing.T) {
	r := httptest.NewRequest("POST", "http://example.com:8080/caf%C3%A9/x?a=%20b&c", strings.NewReader("body"))
	r.RemoteAddr = "192.0.2.7:51234"
	r.Header.Set("Content-Type", "text/plain")
	r.Header.Set("Content-Length", "4")
	r.Header.Add("X-Multi", "1")
	r.Header.Add("X-Multi", "2")
	r.Header["X_Forwarded_For"] = []string{"spoofed"}
	r.Header.Set("X-Forwarded-For", "198.51.100.1")
	r.Header.Add("Cookie", "a=1")
	r.Header.Add("Cookie", "b=2")
	env := decodeEnviron(t, appendEnviron(nil, r, ""))
	want := map[string]string{
		"REQUEST_METHOD":         "POST",
		"SCRIPT_NAME":            "",
		"PATH_INFO":              "/caf\xc3\xa9/x",
		"QUERY_STRING":           "a=%20b&c",
		"REQUEST_URI":            "http://example.com:8080/caf%C3%A9/x?a=%20b&c",
		"RAW_URI":                "http://example.com:8080/caf%C3%A9/x?a=%20b&c",
		"SERVER_PROTOCOL":        "HTTP/1.1",
		"SERVER_NAME":            "example.com",
		"SERVER_PORT":            "8080",
		"REMOTE_ADDR":            "192.0.2.7",
		"REMOTE_PORT":            "51234",
		"HTTP_HOST":              "example.com:8080",
		"CONTENT_TYPE":           "text/plain",
		"CONTENT_LENGTH":         "4",
		"HTTP_X_MULTI":           "1,2",
		"HTTP_X_FORWARDED_FOR":   "192.0.2.7", // the client's own replaced, as by reverse_proxy
		"HTTP_X_FORWARDED_PROTO": "http",
		"HTTP_X_FORWARDED_HOST":  "example.com:8080",
		"HTTP_COOKIE":            "a=1; b=2",
		"wsgi.url_scheme":        "http",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	for _, k := range []string{"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_X_FORWARDED_FOR_"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s must not be present", k)
		}
	}
	if len(env) != len(want) {
		t.Errorf("environ has %d keys, want %d: %v", len(env), len(want), env)
	}
}

func TestServerNamePortDefaults(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Host = "example.org"
	if n, p := serverNamePort(r, "http"); n != "example.org" || p != "80" {
		t.Errorf("http: got %s %s", n, p)
	}
	r.TLS = &tls.ConnectionState{}
	if n, p := serverNamePort(r, "https"); n != "example.org" || p != "443" {
		t.Errorf("https: got %s %s", n, p)
	}
	r.Host = "[::1]:9000"
	if n, p := serverNamePort(r, "http"); n != "::1" || p != "9000" {
		t.Errorf("ipv6: got %s %s", n, p)
	}
	env := decodeEnviron(t, appendEnviron(nil, r, ""))
	if env["wsgi.url_scheme"] != "https" {
		t.Errorf("url_scheme under TLS = %q", env["wsgi.url_scheme"])
	}
}

// TestServeHTTP runs the real handler with the embedded interpreter: it
// provisions a WSGI app from testdata and serves concurrent requests, which
// exercises the pool, the cgo crossings and the callbacks under -race.
func TestServeHTTP(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	dir := testdataDir
	p := &Python{ModuleWSGI: "gotest_app:app", WorkingDir: dir, Threads: 3}
	if err := p.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Cleanup()

	serve := func(method, target, body string) *httptest.ResponseRecorder {
		var rd *strings.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		var req *http.Request
		if rd != nil {
			req = httptest.NewRequest(method, target, rd)
		} else {
			req = httptest.NewRequest(method, target, nil)
		}
		rec := httptest.NewRecorder()
		if err := p.ServeHTTP(rec, req, nil); err != nil {
			t.Errorf("%s %s: %v", method, target, err)
		}
		return rec
	}

	var wg sync.WaitGroup
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := strings.Repeat("x", i*1000)
			if rec := serve("POST", "/echo", body+"!"); rec.Code != 201 || rec.Body.String() != body+"!" {
				t.Errorf("echo %d: %d %d bytes", i, rec.Code, rec.Body.Len())
			}
		}()
	}
	wg.Wait()

	if rec := serve("GET", "/hi", ""); rec.Code != 200 || rec.Body.String() != "hello GET" ||
		rec.Header().Get("Content-Type") != "text/plain" {
		t.Errorf("GET: %d %q %v", rec.Code, rec.Body.String(), rec.Header())
	}
	if rec := serve("GET", "/raise", ""); rec.Code != 500 || rec.Body.String() != "Internal Server Error" {
		t.Errorf("raise: %d %q", rec.Code, rec.Body.String())
	}
	// A header rejected after others were given must not leak the others
	// into the 500 sent instead.
	if rec := serve("GET", "/badlen", ""); rec.Code != 500 || rec.Header().Get("Set-Cookie") != "" {
		t.Errorf("badlen: %d %v", rec.Code, rec.Header())
	}
	if rec := serve("GET", "/after-error", ""); rec.Code != 200 {
		t.Errorf("the app must keep serving after an error: %d", rec.Code)
	}

	// A large last chunk is written after the worker is done (kept), or by
	// the worker when kept ones would pass tailBudget (refused): the same
	// response either way, and nothing left counted against the budget.
	defer func(b int64) { tailBudget = b }(tailBudget)
	for _, budget := range []int64{1 << 30, 50_000} {
		tailBudget = budget
		rec := serve("GET", "/big", "")
		if rec.Code != 200 || rec.Body.String() != strings.Repeat("t", 100_000) {
			t.Errorf("big (budget %d): %d, %d bytes", budget, rec.Code, rec.Body.Len())
		}
		if n := tailBytes.Load(); n != 0 {
			t.Errorf("big (budget %d): %d bytes still counted as kept", budget, n)
		}
		rec = serve("GET", "/big-over", "")
		if rec.Code != 200 || rec.Body.String() != strings.Repeat("o", 60_000) {
			t.Errorf("big-over (budget %d): %d, %d bytes", budget, rec.Code, rec.Body.Len())
		}
		if n := tailBytes.Load(); n != 0 {
			t.Errorf("big-over (budget %d): %d bytes still counted as kept", budget, n)
		}
	}
}

func TestProvisionImportError(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	dir := testdataDir
	p := &Python{ModuleWSGI: "gotest_app:missing", WorkingDir: dir}
	err := p.Provision(ctx)
	if err == nil || !strings.Contains(err.Error(), "has no attribute 'missing'") {
		t.Fatalf("got %v", err)
	}
	p = &Python{ModuleWSGI: "no_such_module_here:app", WorkingDir: dir}
	err = p.Provision(ctx)
	if err == nil || !strings.Contains(err.Error(), "Traceback") || !strings.Contains(err.Error(), "No module named 'no_such_module_here'") {
		t.Fatalf("got %v", err)
	}
}

func TestHeaderKey(t *testing.T) {
	for in, want := range map[string]string{
		"Content-Type": "Content-Type", "content-type": "Content-Type", "ETag": "Etag",
		"set-cookie":     "Set-Cookie",
		"x-custom-thing": "X-Custom-Thing", "X-Custom-Thing": "X-Custom-Thing",
		"Content-Length": "Content-Length", "X-Frame-Options": "X-Frame-Options", "bad name": "bad name",
	} {
		b := []byte(in) // stands in for Python memory, freed after the call
		got := headerKey(unsafe.String(&b[0], len(b)))
		for i := range b {
			b[i] = '#'
		}
		if got != want {
			t.Errorf("headerKey(%q) = %q, want %q (a view of the caller's memory?)", in, got, want)
		}
	}
}

// TestLocalAddr checks the reuse of the last formatted local address: each
// address, in any order, still gets its own strings.
func TestLocalAddr(t *testing.T) {
	withLocal := func(a net.Addr) *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		return r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, a))
	}
	cases := []struct {
		addr       net.Addr
		host, port string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9080}, "127.0.0.1", "9080"},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1).To4(), Port: 9080}, "127.0.0.1", "9080"},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9081}, "127.0.0.1", "9081"},
		{&net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 9081}, "10.0.0.2", "9081"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 443, Zone: "eth0"}, "fe80::1%eth0", "443"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 443}, "fe80::1", "443"},
		{&net.UnixAddr{Name: "/run/caddy.sock", Net: "unix"}, "", ""},
	}
	for round := 0; round < 2; round++ { // the second round starts from a warm cache
		for _, tc := range cases {
			if h, p := localAddr(withLocal(tc.addr)); h != tc.host || p != tc.port {
				t.Errorf("%v: got (%q, %q), want (%q, %q)", tc.addr, h, p, tc.host, tc.port)
			}
		}
	}
	if h, p := localAddr(httptest.NewRequest("GET", "/", nil)); h != "" || p != "" {
		t.Errorf("no local address: got (%q, %q)", h, p)
	}
}

func TestReadAhead(t *testing.T) {
	failed := errors.New("connection reset")
	small := strings.Repeat("x", readAheadMax-1)
	for _, c := range []struct {
		name   string
		body   io.Reader
		length int64
		expect string
		ahead  string
		whole  bool
		err    error
	}{
		{"whole", strings.NewReader("hello"), 5, "", "hello", true, nil},
		{"just under the bound", strings.NewReader(small), int64(len(small)), "", small, true, nil},
		{"in pieces", iotest.OneByteReader(strings.NewReader("hello")), 5, "", "hello", true, nil},
		{"error after some", io.MultiReader(strings.NewReader("he"), iotest.ErrReader(failed)),
			5, "", "he", false, failed},
		{"cut short", strings.NewReader("he"), 5, "", "he", false, io.ErrUnexpectedEOF},
		{"error at once", iotest.ErrReader(failed), 5, "", "", false, failed},
		{"100-continue waits for the app", strings.NewReader("hello"), 5, "100-continue", "", false, nil},
		{"at the bound", strings.NewReader(small + "x"), readAheadMax, "", "", false, nil},
		{"unknown length", strings.NewReader("hello"), -1, "", "", false, nil},
		{"empty", strings.NewReader(""), 0, "", "", false, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &http.Request{Header: http.Header{}, Body: io.NopCloser(c.body), ContentLength: c.length}
			if c.expect != "" {
				r.Header.Set("Expect", c.expect)
			}
			rq := newRequest(httptest.NewRecorder(), r)
			defer rq.release()
			rq.readAhead()
			if string(rq.ahead) != c.ahead || rq.whole != c.whole || rq.aheadErr != c.err {
				t.Errorf("ahead %q whole %v err %v; want %q %v %v", rq.ahead, rq.whole, rq.aheadErr, c.ahead, c.whole, c.err)
			}
		})
	}
}

func TestReadAheadBudget(t *testing.T) {
	defer func(b int64) { aheadBudget = b }(aheadBudget)
	aheadBudget = 50_000
	body := strings.Repeat("b", 30_000) // counted (16 KiB or more)
	read := func() *request {
		r := &http.Request{Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
		rq := newRequest(httptest.NewRecorder(), r)
		rq.readAhead()
		return rq
	}
	first := read()
	if !first.whole {
		t.Fatal("a body within the budget is read ahead")
	}
	second := read() // 60,000 bytes would be held: over the budget
	if second.whole || len(second.ahead) != 0 {
		t.Error("a body past the budget is left for the app to read")
	}
	second.release()
	first.release()
	if n := aheadBytes.Load(); n != 0 {
		t.Errorf("%d bytes still counted after release", n)
	}
	third := read()
	defer third.release()
	if !third.whole {
		t.Error("released bytes make room again")
	}
}

func TestRequestReadAfterReadAhead(t *testing.T) {
	failed := errors.New("connection reset")
	read := func(rq *request, n int) string {
		b := make([]byte, n)
		m, err := rq.read(b)
		if err != nil {
			return "error: " + err.Error()
		}
		return string(b[:m])
	}
	// A body cut short while it was read ahead: the app gets what came, then the failure.
	body := io.MultiReader(strings.NewReader("hel"), iotest.ErrReader(failed))
	rq := newRequest(httptest.NewRecorder(), &http.Request{Header: http.Header{}, Body: io.NopCloser(body), ContentLength: 10})
	rq.readAhead()
	got := []string{read(rq, 2), read(rq, 2), read(rq, 2)}
	if want := []string{"he", "l", "error: connection reset"}; !slices.Equal(got, want) {
		t.Errorf("reads %q, want %q", got, want)
	}
	rq.release()
	// A body read lazily (too long to read ahead) ends with 0, nil.
	long := strings.Repeat("y", readAheadMax)
	rq = newRequest(httptest.NewRecorder(), &http.Request{Header: http.Header{},
		Body: io.NopCloser(strings.NewReader(long)), ContentLength: int64(len(long))})
	defer rq.release()
	rq.readAhead()
	all, _ := io.ReadAll(readerFunc(rq.read))
	if string(all) != long {
		t.Errorf("read %d bytes lazily, want %d", len(all), len(long))
	}
}

// readerFunc adapts request.read (0, nil at the end) to an io.Reader.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) {
	n, err := f(b)
	if n == 0 && err == nil {
		return 0, io.EOF
	}
	return n, err
}

// A body over request_body's max_size (Caddy wraps the MaxBytesError in a
// handler error) is noted for a 413 while no response has begun, and cuts
// off one that has; other read failures do neither.
func TestRequestReadOverLimit(t *testing.T) {
	limited := func(status int, limit int64) *request {
		w := httptest.NewRecorder()
		r := &http.Request{Header: http.Header{}, ContentLength: -1}
		r.Body = overLimitBody{http.MaxBytesReader(w, io.NopCloser(strings.NewReader("0123456789")), limit)}
		rq := newRequest(w, r)
		rq.status = status
		return rq
	}
	cases := []struct {
		name      string
		status    int
		limit     int64
		refused   bool
		aborted   bool
		readError bool
	}{
		{"over, before the response", 0, 4, true, false, true},
		{"over, response begun", 200, 4, false, true, true},
		{"under the limit", 0, 100, false, false, false},
	}
	for _, c := range cases {
		rq := limited(c.status, c.limit)
		_, err := io.ReadAll(readerFunc(rq.read))
		if (err != nil) != c.readError || (rq.refused != nil) != c.refused || rq.aborted != c.aborted {
			t.Errorf("%s: read error %v, refused %v, aborted %v", c.name, err, rq.refused, rq.aborted)
		}
		rq.release()
	}
	if overLimit(errors.New("connection reset")) || overLimit(io.ErrUnexpectedEOF) {
		t.Error("a failed read that is not the limit counts as over it")
	}
}

// overLimitBody wraps read errors as Caddy's request_body handler does.
type overLimitBody struct{ io.ReadCloser }

func (b overLimitBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = caddyhttp.Error(http.StatusRequestEntityTooLarge, err)
	}
	return n, err
}

// bodyLeft counts down as the app reads, read-ahead bytes included, and is
// -1 for a body of unknown length.
func TestRequestBodyLeft(t *testing.T) {
	body := strings.Repeat("z", readAheadMax+10)
	rq := newRequest(httptest.NewRecorder(), &http.Request{Header: http.Header{},
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))})
	defer rq.release()
	b := make([]byte, 1000)
	var left []int64
	for range 2 {
		if _, err := rq.read(b); err != nil {
			t.Fatal(err)
		}
		left = append(left, rq.bodyLeft())
	}
	if want := []int64{int64(len(body)) - 1000, int64(len(body)) - 2000}; !slices.Equal(left, want) {
		t.Errorf("bodyLeft %v, want %v", left, want)
	}
	rq.r.ContentLength = -1
	if got := rq.bodyLeft(); got != -1 {
		t.Errorf("bodyLeft of a chunked body %d, want -1", got)
	}
}

// A broken chunked encoding is the client's error (a 400); a body cut short
// or a reset connection is the client leaving; a body over the limit is a
// 413 (refusal).
func TestRefusalOfAFailedBodyRead(t *testing.T) {
	chunked := func(body string) error {
		_, err := io.ReadAll(httputil.NewChunkedReader(strings.NewReader(body)))
		return err
	}
	r := httptest.NewRequest("POST", "/x", nil)
	cases := []struct {
		name string
		err  error
		want int // 0: the client left
	}{
		{"bad chunk size", chunked("zz\r\nabc\r\n0\r\n\r\n"), http.StatusBadRequest},
		{"chunk size too large", chunked("ffffffffffffffffff\r\n"), http.StatusBadRequest},
		{"bare LF", chunked("3\nabc\r\n0\r\n\r\n"), http.StatusBadRequest},
		{"body cut short", chunked("a\r\nabc"), 0},
		{"connection reset", &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, 0},
		{"over the limit", caddyhttp.Error(http.StatusRequestEntityTooLarge, &http.MaxBytesError{Limit: 4}),
			http.StatusRequestEntityTooLarge},
	}
	for _, c := range cases {
		if c.err == nil {
			t.Fatalf("%s: the reader did not fail", c.name)
		}
		got := 0
		var he caddyhttp.HandlerError
		if err := refusal(r, c.err); errors.As(err, &he) {
			got = he.StatusCode
		} else if err != nil {
			t.Fatalf("%s: refusal %v is not a handler error", c.name, err)
		}
		if got != c.want {
			t.Errorf("%s (%v): refusal status %d, want %d", c.name, c.err, got, c.want)
		}
	}
}
