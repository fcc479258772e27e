package caddysnake

import (
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// scopeFields splits appendScope's packing as caddysnake.c's scope_fields does.
func scopeFields(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	for len(b) > 0 {
		if len(b) < 4 {
			t.Fatal("truncated scope buffer")
		}
		n := binary.LittleEndian.Uint32(b)
		out = append(out, string(b[4:4+n]))
		b = b[4+n:]
	}
	return out
}

func TestAppendScope(t *testing.T) {
	r := httptest.NewRequest("POST", "/api/caf%C3%A9/x?a=%20b", nil)
	r.RemoteAddr = "192.0.2.9:4000"
	r.Header.Add("X-Dup", "1")
	r.Header.Add("X-Dup", "2")
	r.URL = &url.URL{Path: "/caf\xc3\xa9/x", RawQuery: "a=%20b"} // after handle_path /api/*
	r = withOriginal(r, "/api/caf\xc3\xa9/x")
	f := scopeFields(t, appendScope(nil, r))
	if len(f) < 15 || (len(f)-15)%2 != 0 {
		t.Fatalf("got %d fields", len(f))
	}
	want := []string{"POST", "http", "1.1", "/api/caf\xc3\xa9/x", "/api/caf%C3%A9/x", "a=%20b", "/api", "192.0.2.9", "4000"}
	for i, w := range want {
		if f[i] != w {
			t.Errorf("field %d = %q, want %q", i, f[i], w)
		}
	}
	if f[11] != "" || f[12] != "" {
		t.Errorf("tls fields must be empty without TLS: %q %q", f[11], f[12])
	}
	headers := f[15:]
	if headers[0] != "host" || headers[1] != "example.com" {
		t.Errorf("host must come first: %q", headers[:2])
	}
	var dups []string
	for i := 0; i < len(headers); i += 2 {
		if headers[i] == "x-dup" {
			dups = append(dups, headers[i+1])
		}
	}
	if len(dups) != 2 || dups[0] != "1" || dups[1] != "2" {
		t.Errorf("duplicate headers must be kept in order, lowercased: %q", dups)
	}
}

func TestHTTPVersionAndTrailers(t *testing.T) {
	for _, tc := range []struct {
		major, minor int
		want         string
	}{{1, 0, "1.0"}, {1, 1, "1.1"}, {2, 0, "2"}, {3, 0, "3"}} {
		r := &http.Request{ProtoMajor: tc.major, ProtoMinor: tc.minor}
		if got := httpVersion(r); got != tc.want {
			t.Errorf("%d.%d: got %q", tc.major, tc.minor, got)
		}
	}
	for te, want := range map[string]bool{"trailers": true, "gzip, Trailers;q=1": true, "gzip": false, "": false} {
		r := httptest.NewRequest("GET", "/", nil)
		if te != "" {
			r.Header.Set("TE", te)
		}
		if got := acceptsTrailers(r); got != want {
			t.Errorf("TE %q: got %v", te, got)
		}
	}
}

// The outbox keeps each request's messages in order, delivers nothing before
// a flush, reports the first message after a flush (the driver schedules the
// next flush on it) and never lets a request's channel overflow.
func TestOutboxPostAndFlush(t *testing.T) {
	l := newEventLoop(-1, time.Hour)
	a := &asgiRequest{cmds: make(chan asgiCmd, 2)}
	b := &asgiRequest{cmds: make(chan asgiCmd, maxPendingCmds)}
	steps := []struct {
		rq   *asgiRequest
		kind int
		want int
	}{
		{a, cmdStart, postFirst},
		{b, cmdStart, postQueued},
		{a, cmdBody, postQueued},
		{a, cmdDone, postFull}, // a's two slots are spoken for
		{b, cmdBody, postQueued},
	}
	for i, s := range steps {
		if got := int(l.post(s.rq, asgiCmd{kind: s.kind})); got != s.want {
			t.Fatalf("step %d: post = %v, want %v", i, got, s.want)
		}
	}
	if len(a.cmds) != 0 || len(b.cmds) != 0 {
		t.Fatal("a message reached a request before the flush")
	}
	l.flush()
	for _, c := range []struct {
		rq   *asgiRequest
		want []int
	}{{a, []int{cmdStart, cmdBody}}, {b, []int{cmdStart, cmdBody}}} {
		if c.rq.posted != 0 || len(c.rq.cmds) != len(c.want) {
			t.Fatalf("after flush: posted %d, %d queued, want 0 and %d", c.rq.posted, len(c.rq.cmds), len(c.want))
		}
		for _, k := range c.want {
			if got := (<-c.rq.cmds).kind; got != k {
				t.Fatalf("delivered kind %d, want %d", got, k)
			}
		}
	}
	// Delivered but unread messages still count against the channel.
	a.cmds <- asgiCmd{kind: cmdStart}
	a.cmds <- asgiCmd{kind: cmdBody}
	if got := int(l.post(a, asgiCmd{kind: cmdDone})); got != postFull {
		t.Fatalf("post to a full channel = %v, want postFull", got)
	}
	<-a.cmds
	if got := int(l.post(a, asgiCmd{kind: cmdDone})); got != postFirst {
		t.Fatalf("post after the goroutine read one = %v, want postFirst", got)
	}
}

// A message the loop does not flush (the app blocked it right after send())
// still reaches its request: the timer armed by the batch's first message
// flushes it from Go.
func TestOutboxLateFlush(t *testing.T) {
	l := newEventLoop(-1, time.Millisecond)
	rq := &asgiRequest{cmds: make(chan asgiCmd, maxPendingCmds)}
	for round := 0; round < 2; round++ { // and again after a timer flush
		if got := int(l.post(rq, asgiCmd{kind: cmdBody})); got != postFirst {
			t.Fatalf("round %d: post = %v, want postFirst", round, got)
		}
		select {
		case c := <-rq.cmds:
			if c.kind != cmdBody {
				t.Fatalf("delivered kind %d", c.kind)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: no flush without the loop", round)
		}
	}
}
