package caddysnake

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestSpooledBodyDrainsAheadOfTheReader checks that the whole body is taken
// from the source before anyone reads (what frees an HTTP/2 window), then
// read back in order, ending with the source's own error.
func TestSpooledBodyDrainsAheadOfTheReader(t *testing.T) {
	pr, pw := io.Pipe()
	s := spoolBody(pr)
	if s == nil {
		t.Fatal("no temporary file")
	}
	defer s.Close()
	want := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320 KB, several drain reads
	wrote := make(chan error, 1)
	go func() {
		_, err := pw.Write(want) // blocks until the drain has taken it all
		pw.CloseWithError(errors.New("client reset the stream"))
		wrote <- err
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the drain did not take the body before it was read")
	}
	got, err := io.ReadAll(s)
	if err == nil || err.Error() != "client reset the stream" {
		t.Fatalf("err = %v, want the source's error", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want %d in order", len(got), len(want))
	}
}

// TestSpooledBodyReaderWaitsForTheDrain checks a read that catches up with
// the drain waits for more, and that io.EOF ends the body.
func TestSpooledBodyReaderWaitsForTheDrain(t *testing.T) {
	pr, pw := io.Pipe()
	s := spoolBody(pr)
	defer s.Close()
	go func() {
		for _, part := range []string{"first ", "second ", "third"} {
			time.Sleep(20 * time.Millisecond)
			pw.Write([]byte(part))
		}
		pw.Close()
	}()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "first second third" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// TestSpooledBodyCloseStopsTheDrain checks Close unblocks a drain waiting
// on a source that sends nothing, and later reads fail.
func TestSpooledBodyCloseStopsTheDrain(t *testing.T) {
	pr, _ := io.Pipe()
	s := spoolBody(pr)
	s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		drained := s.drained
		s.mu.Unlock()
		if drained {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the drain did not stop")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := s.Read(make([]byte, 10)); !errors.Is(err, http.ErrBodyReadAfterClose) {
		t.Fatalf("read after close: %v", err)
	}
}
