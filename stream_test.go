package caddysnake

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// gateWriter is a ResponseWriter whose writes wait for open (a client that
// reads only when told to), and fail with err once it is set.
type gateWriter struct {
	httptest.ResponseRecorder
	mu     sync.Mutex
	open   chan struct{}
	err    error
	writes int
}

func (g *gateWriter) Write(b []byte) (int, error) {
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	g.writes++
	if g.err != nil {
		return 0, g.err
	}
	return g.ResponseRecorder.Write(b)
}

func newGate(open bool) *gateWriter {
	g := &gateWriter{ResponseRecorder: *httptest.NewRecorder(), open: make(chan struct{})}
	if open {
		close(g.open)
	}
	return g
}

func TestStreamerKeepsOrderAndCoalesces(t *testing.T) {
	g := newGate(false)
	rq := &request{w: g, status: 200}
	var want bytes.Buffer
	for i := 0; i < 1000; i++ {
		b := []byte{byte('a' + i%26)}
		want.Write(b)
		if rc := rq.stream.put(rq, b); rc != streamOK {
			t.Fatalf("put %d = %d", i, rc)
		}
	}
	close(g.open) // the client starts reading: what piled up goes out together
	rq.stream.stop()
	if !bytes.Equal(g.Body.Bytes(), want.Bytes()) {
		t.Fatalf("body %q, want %q", g.Body.Bytes(), want.Bytes())
	}
	if g.writes > 2 {
		t.Fatalf("%d writes for 1,000 chunks queued while the first was held", g.writes)
	}
}

func TestStreamerFullQueueWaitsForTheClient(t *testing.T) {
	g := newGate(false)
	rq := &request{w: g, status: 200}
	chunk := make([]byte, 16<<10)
	fill := func() {
		t.Helper()
		for n := 0; rq.stream.put(rq, chunk) == streamOK; n++ {
			if n > streamQueueMax/len(chunk) {
				t.Fatal("the queue never filled")
			}
		}
	}
	// The writer takes the first full queue and is held writing it; the
	// second fills up behind it, and the app must wait.
	fill()
	if rc := rq.stream.waitRoom(); rc != streamOK {
		t.Fatalf("waitRoom = %d", rc)
	}
	fill()
	done := make(chan bool)
	go func() { done <- rq.stream.waitRoom() == streamOK }()
	select {
	case <-done:
		t.Fatal("waitRoom returned while the client read nothing")
	case <-time.After(50 * time.Millisecond):
	}
	close(g.open)
	if !<-done {
		t.Fatal("waitRoom failed")
	}
	rq.stream.stop()
	if g.Body.Len() != 2*len(chunk)*(streamQueueMax/len(chunk)) {
		t.Fatalf("%d bytes written", g.Body.Len())
	}
}

func TestStreamerReportsAWriteError(t *testing.T) {
	g := newGate(false)
	g.err = errors.New("connection reset by peer")
	rq := &request{w: g, status: 200}
	chunk := make([]byte, 16<<10)
	for rq.stream.put(rq, chunk) == streamOK {
	}
	close(g.open)
	if rc := rq.stream.waitRoom(); rc != streamGone {
		t.Fatalf("waitRoom after a failed write = %d, want streamGone", rc)
	}
	if rc := rq.stream.put(rq, chunk); rc != streamGone {
		t.Fatalf("put after a failed write = %d, want streamGone", rc)
	}
	if err := rq.stream.idle(); err == nil {
		t.Fatal("idle after a failed write reports no error")
	}
	rq.stream.stop()
	// Pooled for the next request: no error, nothing queued, no writer.
	if rq.stream.err != nil || len(rq.stream.queue) != 0 || rq.stream.running {
		t.Fatalf("streamer not reset: %+v", rq.stream.err)
	}
}

var _ http.Flusher = (*gateWriter)(nil)
