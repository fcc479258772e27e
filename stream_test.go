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
	mu      sync.Mutex
	open    chan struct{}
	entered chan struct{} // a token each time a Write starts (while room)
	err     error
	writes  int
}

func (g *gateWriter) Write(b []byte) (int, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
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
	g := &gateWriter{ResponseRecorder: *httptest.NewRecorder(), open: make(chan struct{}),
		entered: make(chan struct{}, 1)}
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
	// The writer takes the first chunk and is held writing it (the client
	// reads nothing); the queue fills up behind it, and the app must wait.
	if rc := rq.stream.put(rq, chunk); rc != streamOK {
		t.Fatalf("put = %d", rc)
	}
	<-g.entered
	puts := 1
	for ; rq.stream.put(rq, chunk) == streamOK; puts++ {
		if puts > streamQueueMax/len(chunk) {
			t.Fatal("the queue never filled")
		}
	}
	puts++
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
	if g.Body.Len() != puts*len(chunk) {
		t.Fatalf("%d bytes written, %d put", g.Body.Len(), puts*len(chunk))
	}
}

func TestStreamerReportsAWriteError(t *testing.T) {
	g := newGate(false)
	g.err = errors.New("connection reset by peer")
	rq := &request{w: g, status: 200}
	chunk := make([]byte, 16<<10)
	rq.stream.put(rq, chunk)
	<-g.entered // held writing the first chunk, which will fail
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
