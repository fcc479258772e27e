package caddysnake

// #include "caddysnake.h"
import "C"

import (
	"sync"
	"unsafe"
)

// streamer writes the streamed chunks of a WSGI response (iterator items
// after the first, write() calls) from a goroutine of its own. The app's
// thread only copies a chunk into the queue, without giving up the GIL
// (cs_go_stream), and carries on producing the next one while the writer
// sends: PEP 3333 allows a server to buffer a block "for transmission while
// the application proceeds", as long as transmission continues meanwhile,
// and the writer starts at once. Chunks that arrive while it writes go out
// together, with one flush: a generator of 100 small pieces costs a few
// write syscalls, not 100, and no GIL hand-off per piece.
//
// The ResponseWriter belongs to the writer while it has work: the app's
// thread calls idle before it writes anything itself, and stop before the
// request ends.
type streamer struct {
	mu      sync.Mutex
	cond    sync.Cond // L is &mu: signalled on every change below
	queue   []byte    // chunks waiting for the writer, in order
	spare   []byte    // the batch buffer the writer hands back
	running bool      // the writer goroutine exists
	writing bool      // it is writing a batch (without the lock)
	closing bool      // the request ends: the writer exits once idle
	err     error     // the first write error: later chunks are refused
}

// The results of put and waitRoom (C's, named for Go's tests).
const (
	streamOK   = C.CS_OK
	streamWait = C.CS_STREAM_WAIT
	streamGone = C.CS_ERR_CLIENT_GONE
)

// streamQueueMax is what the app may get ahead of the client before its
// thread waits (uvicorn's transport high-water mark is the same 64 KiB).
const streamQueueMax = 64 << 10

// put queues b (copied) and starts the writer if needed. CS_STREAM_WAIT
// asks the caller to give up the GIL and waitRoom: the queue is full.
// Never blocks (beyond the writer's brief hold of mu).
func (s *streamer) put(rq *request, b []byte) C.long {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return writeErr(s.err)
	}
	s.queue = append(s.queue, b...)
	if !s.running {
		s.running, s.cond.L = true, &s.mu
		go s.run(rq)
	} else {
		s.cond.Broadcast()
	}
	if len(s.queue) >= streamQueueMax {
		return streamWait
	}
	return streamOK
}

// waitRoom blocks until the writer has taken the queue (a slow client slows
// the app). Called without the GIL.
func (s *streamer) waitRoom() C.long {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.queue) >= streamQueueMax && s.err == nil {
		s.cond.Wait()
	}
	if s.err != nil {
		return writeErr(s.err)
	}
	return streamOK
}

// idle waits until everything queued is written, so the caller may use the
// ResponseWriter; it returns the writer's error, if any.
func (s *streamer) idle() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for (len(s.queue) > 0 || s.writing) && s.err == nil {
		s.cond.Wait()
	}
	return s.err
}

// stop waits for the writer to finish and exit; the request can then end.
func (s *streamer) stop() {
	s.mu.Lock()
	s.closing = true
	s.cond.Broadcast()
	for s.running {
		s.cond.Wait()
	}
	s.closing, s.err = false, nil
	s.queue = s.queue[:0]
	s.mu.Unlock()
}

// run is the writer: it takes the whole queue, writes and flushes it, and
// repeats until the request ends.
func (s *streamer) run(rq *request) {
	s.mu.Lock()
	for {
		for len(s.queue) == 0 && !s.closing {
			s.cond.Wait()
		}
		if len(s.queue) == 0 {
			break // closing, and nothing left to write
		}
		batch := s.queue
		s.queue, s.writing = s.spare[:0], true
		s.cond.Broadcast() // room for an app thread waiting in waitRoom
		s.mu.Unlock()
		_, err := rq.w.Write(batch)
		if err == nil {
			err = rq.flush()
		}
		s.mu.Lock()
		s.spare, s.writing = batch[:0], false
		if err != nil && s.err == nil {
			s.err = err
			s.queue = s.queue[:0] // undeliverable: the app hears of it at its next write
		}
		s.cond.Broadcast()
	}
	s.running = false
	s.cond.Broadcast()
	s.mu.Unlock()
}

// cs_go_stream queues a streamed chunk of the current request (body: C's
// view of the app's bytes, copied here). GIL: held by the caller, so it
// must not block: a full queue returns CS_STREAM_WAIT instead.
//
//export cs_go_stream
func cs_go_stream(h C.uintptr_t, body *C.char, blen C.size_t) (rc C.long) {
	defer recoverTo(&rc)
	_, rq := current(h)
	if rq == nil || rq.status == 0 {
		return C.CS_ERR_BAD_STATE
	}
	if !bodySent(rq.r, rq.status) {
		return C.CS_OK
	}
	b := rq.body.clip(unsafe.Slice((*byte)(unsafe.Pointer(body)), int(blen)))
	if len(b) == 0 {
		return C.CS_OK
	}
	rq.streaming = true
	return rq.stream.put(rq, b)
}

// cs_go_stream_wait waits for room in the queue after CS_STREAM_WAIT.
// GIL: released by the caller (this blocks on the client).
//
//export cs_go_stream_wait
func cs_go_stream_wait(h C.uintptr_t) (rc C.long) {
	defer recoverTo(&rc)
	w, rq := current(h)
	if rq == nil {
		return C.CS_ERR_BAD_STATE
	}
	w.inIO.Store(true)
	defer w.inIO.Store(false)
	return rq.stream.waitRoom()
}

// ownWriter makes the ResponseWriter the app thread's again (see streamer):
// it waits for the writer to send what is queued, and reports its error.
func (rq *request) ownWriter() error {
	if !rq.streaming {
		return nil
	}
	return rq.stream.idle()
}
