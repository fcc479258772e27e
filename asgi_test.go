package caddysnake

import (
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"unsafe"
)

// scopeFields splits appendScope's packing as caddysnake.c's http_scope does.
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
	r := served(t, "/api/caf%C3%A9/x?a=%20b", "/api") // under handle_path /api/*
	r.Method = "POST"
	r.RemoteAddr = "192.0.2.9:4000"
	r.Header.Add("X-Dup", "1")
	r.Header.Add("X-Dup", "2")
	f := scopeFields(t, appendScope(nil, r, ""))
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

// A request's queue hands over its messages in order, in batches, with one
// ready token per batch, and putBack returns an unread rest to the front.
func TestCmdQueue(t *testing.T) {
	q := cmdQueue{ready: make(chan struct{}, 1)}
	kinds := func(cs []asgiCmd) (k []int) {
		for _, c := range cs {
			k = append(k, c.kind)
		}
		return k
	}
	q.put(asgiCmd{kind: cmdStart})
	q.put(asgiCmd{kind: cmdBody})
	<-q.ready
	if got := kinds(q.take()); !reflect.DeepEqual(got, []int{cmdStart, cmdBody}) {
		t.Fatalf("first batch %v", got)
	}
	select {
	case <-q.ready:
		t.Fatal("a ready token without messages")
	default:
	}
	q.put(asgiCmd{kind: cmdWSAccept})
	q.put(asgiCmd{kind: cmdWSSend})
	<-q.ready
	batch := q.take()
	q.put(asgiCmd{kind: cmdWSClose}) // arrives while the batch is being read
	q.putBack(batch[1:])
	<-q.ready
	if got := kinds(q.take()); !reflect.DeepEqual(got, []int{cmdWSSend, cmdWSClose}) {
		t.Fatalf("after putBack %v", got)
	}
}

// A request that ends gets back every message it never handled (so their
// body references can be handed back), each once, and later puts fail.
func TestCmdQueueClose(t *testing.T) {
	var x, y, z byte
	q := cmdQueue{ready: make(chan struct{}, 1)}
	q.put(asgiCmd{kind: cmdStart})
	q.put(asgiCmd{kind: cmdBody, ref: pyRef(unsafe.Pointer(&x))})
	q.put(asgiCmd{kind: cmdBody, ref: pyRef(unsafe.Pointer(&y))})
	batch := q.take()
	batch[1].ref = nil // handled: handle_ took the reference over
	q.put(asgiCmd{kind: cmdBody, ref: pyRef(unsafe.Pointer(&z))})
	var left []unsafe.Pointer
	waiting, last := q.close()
	for _, c := range append(waiting, last...) {
		if c.ref != nil {
			left = append(left, unsafe.Pointer(c.ref))
		}
	}
	if want := []unsafe.Pointer{unsafe.Pointer(&z), unsafe.Pointer(&y)}; !reflect.DeepEqual(left, want) {
		t.Fatalf("unhandled refs %v, want %v", left, want)
	}
	if q.put(asgiCmd{kind: cmdBody}) {
		t.Fatal("put after close accepted")
	}

	// putBack moves the rest of a batch to the queue: only the queue has it.
	q = cmdQueue{ready: make(chan struct{}, 1)}
	q.put(asgiCmd{kind: cmdWSAccept})
	q.put(asgiCmd{kind: cmdBody, ref: pyRef(unsafe.Pointer(&x))})
	batch = q.take()
	q.putBack(batch[1:])
	if waiting, _ := q.close(); len(waiting) != 1 || waiting[0].ref == nil || batch[1].ref != nil {
		t.Fatalf("close after putBack: waiting %v, batch ref %v", waiting, batch[1].ref)
	}
}

// Handles are never reused: a late message for a finished request finds
// nothing, even after another request started.
func TestRequestTable(t *testing.T) {
	a, b := &asgiRequest{}, &asgiRequest{}
	ha := requests.add(a)
	if requests.get(ha) != a {
		t.Fatal("get after add")
	}
	requests.remove(ha)
	hb := requests.add(b)
	defer requests.remove(hb)
	if hb == ha || requests.get(ha) != nil || requests.get(hb) != b {
		t.Fatalf("handles %d, %d: stale lookup", ha, hb)
	}
}

// TestSmallChunksTakeSmallBuffers: a small response chunk's copy does not
// hold a 64 KiB buffer for as long as its response is in flight (at 2,000
// connections of a hello app that was ~150 MB of RSS).
func TestSmallChunksTakeSmallBuffers(t *testing.T) {
	for _, n := range []int{0, 13, smallChunk, smallChunk + 1, 64 << 10, 64<<10 + 1} {
		b := getChunk(n)
		if len(b) != n {
			t.Fatalf("getChunk(%d): len %d", n, len(b))
		}
		if n <= smallChunk && cap(b) > smallChunk {
			t.Errorf("getChunk(%d): a %d-byte buffer", n, cap(b))
		}
		putChunk(b)
	}
}
