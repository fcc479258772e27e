package caddysnake

// #include "caddysnake.h"
import "C"

import (
	"io"
	"os"
	"sync/atomic"
	"time"
)

// Tails: what is left to write of a WSGI response once the app has made all
// of it is written by the request's own goroutine (ServeHTTP), not by the
// worker thread, which is free for the next request at once. A client that
// reads slowly (a phone on a poor network, a stalled download) then holds a
// goroutine and its bytes, not one of the `threads`: behind reverse_proxy,
// gunicorn is freed the same way by the socket buffers between Caddy and it
// (a few MiB), and uvicorn by its transport's buffer.
//
// Three kinds, all written by finishWrites after the worker is done:
//   - the chunks the streamer (stream.go) still has queued;
//   - a large last chunk, kept by reference (cs_go_send returns
//     CS_TAIL_KEPT and C adds a reference to the bytes object, handed back
//     with cs_tail_done once written: no copy);
//   - a wsgi.file_wrapper file, which Go opens anew (reopen, callbacks.go:
//     the app may close its own at once).

// tailBudget bounds the bytes of kept chunks not yet written, process-wide.
// Over it, a chunk is written by the worker as before (holding the thread
// while the client is slow), so slow clients cannot make the app's bytes
// outlive its threads without limit.
var tailBudget int64 = 256 << 20 // (a variable for the tests)

var tailBytes atomic.Int64

// tailSweepDelay: a written chunk's reference is dropped by the next WSGI
// request's thread (it holds the GIL anyway, C's drop_tails); a server with
// no next request drops it after this long, taking the GIL for it.
const tailSweepDelay = 50 * time.Millisecond

var tailSweepArmed atomic.Bool

// keepTail keeps b, a view of the bytes object obj (C's), to be written by
// finishWrites. The caller holds the GIL: this must not block. Nothing is
// written after a tail: the driver sends it last, and once a declared
// Content-Length is complete, later chunks are clipped to nothing.
func (rq *request) keepTail(obj C.cs_obj, b []byte) C.long {
	if rq.hasTail() {
		return C.CS_TAIL_REFUSED // (never: a tail is the last thing sent)
	}
	n := int64(len(b))
	if tailBytes.Add(n) > tailBudget {
		tailBytes.Add(-n)
		return C.CS_TAIL_REFUSED
	}
	rq.tailObj = obj
	rq.tail = rq.body.clip(b)
	tailBytes.Add(int64(len(rq.tail)) - n) // what the clip cut is never written
	return C.CS_TAIL_KEPT
}

// hasTail says whether a chunk or a file is kept for finishWrites.
func (rq *request) hasTail() bool {
	return rq.tailObj != nil || rq.tailFile != nil
}

// keepFile keeps f (owned: closed by finishWrites) to send count bytes from
// its current offset after the worker is done.
func (rq *request) keepFile(f *os.File, count int64) {
	rq.tailFile, rq.tailFileN = f, count
}

// finishWrites writes what the app made and the worker left: the
// streamer's queue, then a kept chunk or file. On the ServeHTTP goroutine,
// after the worker is done. A write that fails (the client left) only ends
// the writing: the app has finished, and the response is logged as sent.
// (Nothing is kept for HEAD: see bodySent. Written even if Go cancelled the
// request: see cs_go_send.)
func (rq *request) finishWrites() {
	if rq.streaming {
		rq.stream.stop()
		rq.streaming = false
	}
	if !rq.hasTail() {
		return // most responses: nothing left
	}
	if obj := rq.tailObj; obj != nil {
		b := rq.tail
		rq.tail, rq.tailObj = nil, nil
		defer releaseTail(obj, int64(len(b))) // after the write, whatever becomes of it
		if len(b) > 0 {
			_ = rq.body.send(rq.w, rq.r, b)
		}
	}
	if f := rq.tailFile; f != nil {
		rq.tailFile = nil
		defer f.Close()
		src := &io.LimitedReader{R: f, N: rq.tailFileN}
		// io.Copy reaches the connection's ReadFrom, i.e. sendfile(2), when
		// the response has a Content-Length and no encoder sits in between.
		widenWriteChunk(rq.r)
		n, _ := io.Copy(rq.w, src)
		rq.body.written += n
	}
}

// releaseTail hands a written chunk's bytes object back to C.
func releaseTail(obj C.cs_obj, n int64) {
	C.cs_tail_done(obj)
	tailBytes.Add(-n)
	if tailSweepArmed.CompareAndSwap(false, true) {
		time.AfterFunc(tailSweepDelay, func() {
			tailSweepArmed.Store(false) // before the sweep: a later chunk arms another
			C.cs_tail_sweep()
		})
	}
}
