package caddysnake

import (
	"io"
	"net/http"
	"os"
	"sync"
)

// spooledBody drains a request body into an unlinked temporary file while
// the request waits for a Python thread, and hands it to the app from there.
//
// Why: over HTTP/2 every stream of a connection shares one flow-control
// window (1 MiB in Go's server), which Go gives back to the client only as
// handlers read. A WSGI request queued for a thread reads nothing, so the
// bodies of queued uploads fill that window, and the uploads that do have
// a thread can no longer get the rest of theirs: with more parallel
// uploads on one connection than `threads`, all of them stall until the
// client gives up (reverse_proxy, which reads every stream at once, never
// does). Draining to disk, not memory, keeps RSS flat whatever the bodies
// weigh; only requests that have to wait pay for it.
type spooledBody struct {
	src  io.ReadCloser
	f    *os.File
	mu   sync.Mutex
	cond sync.Cond
	// written: bytes of the body in f; read: bytes given out of it. err:
	// what ended the drain (io.EOF at the end of the body), the source's
	// own error otherwise, so refusals (413, 400) are recognised as before.
	written, read int64
	err           error
	closed        bool // Close was called: reads fail, the drain stops
	drained       bool // the drain goroutine has returned
}

// spoolBody starts draining src; nil if no temporary file can be made (the
// request then reads src directly, as it would have).
func spoolBody(src io.ReadCloser) *spooledBody {
	f, err := os.CreateTemp("", "caddysnake-body-*")
	if err != nil {
		return nil
	}
	_ = os.Remove(f.Name()) // unlinked: gone once closed, whatever happens
	s := &spooledBody{src: src, f: f}
	s.cond.L = &s.mu
	go s.drain()
	return s
}

func (s *spooledBody) drain() {
	buf := make([]byte, 64<<10)
	var err error
	for err == nil {
		var n int
		n, err = s.src.Read(buf)
		if n > 0 {
			s.mu.Lock()
			off := s.written
			s.mu.Unlock()
			if _, werr := s.f.WriteAt(buf[:n], off); werr != nil {
				err = werr // the reader gets what was written, then this
			} else {
				s.mu.Lock()
				s.written += int64(n)
				s.cond.Broadcast()
				s.mu.Unlock()
			}
		}
		s.mu.Lock()
		if s.closed {
			err = http.ErrBodyReadAfterClose
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err, s.drained = err, true
	s.cond.Broadcast()
	if s.closed {
		s.f.Close()
	}
}

// Read gives the next spooled bytes, waiting for the drain when it has
// given out all it has; at the end, the error that ended the drain.
func (s *spooledBody) Read(p []byte) (int, error) {
	s.mu.Lock()
	for s.read == s.written && !s.drained && !s.closed {
		s.cond.Wait()
	}
	if s.closed {
		s.mu.Unlock()
		return 0, http.ErrBodyReadAfterClose
	}
	if s.read == s.written {
		err := s.err
		s.mu.Unlock()
		return 0, err
	}
	off, n := s.read, int(min(int64(len(p)), s.written-s.read))
	s.mu.Unlock()
	// The drain only appends, so [off, off+n) is written and stays so.
	m, err := s.f.ReadAt(p[:n], off)
	s.mu.Lock()
	s.read += int64(m)
	s.mu.Unlock()
	if m == n {
		err = nil
	}
	return m, err
}

// Close stops the drain (closing the source unblocks its pending read) and
// frees the file, at once or when the drain returns. It does not wait.
func (s *spooledBody) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cond.Broadcast()
	if s.drained {
		s.f.Close()
	}
	s.mu.Unlock()
	return s.src.Close()
}
