package caddysnake

// #include <stdlib.h>
// #include "caddysnake.h"
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// eventLoop is Go's side of the interpreter's single asyncio loop, which
// runs on its own Python thread. Go never calls into Python to deliver an
// event: it queues the event and, only if the queue was empty, writes the
// eventfd the loop watches. The loop then takes the whole batch in one
// crossing (cs_go_asgi_take). So a burst of N events costs one wake-up and one
// crossing, not N thread-safe calls, and an idle loop costs nothing (no
// polling).
//
// The other direction is batched too: the app's messages (cs_go_asgi_*
// callbacks) are validated and copied at once, so send() can raise, but wait
// in the outbox until the driver calls cs_go_asgi_flush, scheduled for the
// loop's next iteration by the first message after a flush. Waking a
// request goroutine costs the loop thread a futex wake-up and a context
// switch; flushing a whole iteration's messages together wakes each
// goroutine once (start and body arrive together) and lets the scheduler
// wake one thread for the lot. An app that blocks the loop right after
// send() (time.sleep in an async background task, say) would hold the
// batch until it yields: the first message also arms a timer that flushes
// from Go after lateFlush, so what send() was given still leaves at once,
// as the ASGI spec asks (and as under uvicorn).
type eventLoop struct {
	efd      int
	mu       sync.Mutex
	pending  []C.cs_event // C pointers only, so C may read them
	signaled bool         // a wake-up is in flight and not yet consumed

	outMu     sync.Mutex  // uncontended: the loop thread posts and flushes (and lateFlush's timer)
	out       []outMsg    // messages posted since the last flush, in order
	spare     []outMsg    // the previous flush's slice, reused
	late      *time.Timer // flushes the outbox if the loop has not within lateAfter
	lateAfter time.Duration
}

// lateFlush bounds how long a posted message waits for the loop's flush: far
// above a loop iteration's usual length (tens of µs), far below what a
// client would notice.
const lateFlush = time.Millisecond

// outMsg is one app message on its way to its request goroutine.
type outMsg struct {
	rq *asgiRequest
	c  asgiCmd
}

var (
	loopOnce sync.Once
	loopErr  error
	theLoop  *eventLoop
	loopKind string
)

// startEventLoop starts the process's ASGI loop on first use. The loop kind
// is process-wide: the first app that needs the loop chooses it.
func startEventLoop(kind string) (*eventLoop, error) {
	loopOnce.Do(func() {
		efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			loopErr = fmt.Errorf("python: eventfd: %w", err)
			return
		}
		l := newEventLoop(efd, lateFlush)
		theLoop, loopKind = l, kind // visible to cs_go_asgi_take before the loop runs
		ckind := C.CString(kind)
		defer C.free(unsafe.Pointer(ckind))
		if msg := C.cs_asgi_start_loop(C.int(efd), ckind); msg != nil {
			loopErr = errors.New("python: cannot start the ASGI event loop:\n" + takeCString(msg))
		}
	})
	if loopErr == nil && kind != loopKind && kind != "auto" {
		pyLogger.Warn("the ASGI event loop is process-wide and already runs as chosen by another app",
			zap.String("wanted", kind), zap.String("running", loopKind))
	}
	return theLoop, loopErr
}

func newEventLoop(efd int, lateAfter time.Duration) *eventLoop {
	l := &eventLoop{efd: efd, pending: make([]C.cs_event, 0, 256), lateAfter: lateAfter}
	l.late = time.AfterFunc(time.Hour, l.flush)
	l.late.Stop()
	return l
}

var eventfdOne = [8]byte{1} // little-endian uint64 1: one eventfd increment

// push queues an event for the loop, waking it if it may be asleep.
func (l *eventLoop) push(ev C.cs_event) {
	l.mu.Lock()
	l.pending = append(l.pending, ev)
	wake := !l.signaled
	l.signaled = true
	l.mu.Unlock()
	if wake {
		// EAGAIN only if the counter is saturated: the loop is awake anyway.
		_, _ = unix.Write(l.efd, eventfdOne[:])
	}
}

func (l *eventLoop) pushSimple(h uintptr, kind int) {
	l.push(C.cs_event{handle: C.uintptr_t(h), kind: C.int(kind)})
}

// post's results, as the C wrappers read them (caddysnake.h).
const (
	postQueued = C.CS_OK
	postFirst  = C.CS_OK_FLUSH      // the outbox was empty: the driver schedules a flush
	postFull   = C.CS_ERR_BAD_STATE // rq's channel could overflow
)

// post queues an app message for rq until the next flush. It fails only if
// rq's command channel could overflow, which the driver's ordering rules out.
func (l *eventLoop) post(rq *asgiRequest, c asgiCmd) C.long {
	l.outMu.Lock()
	defer l.outMu.Unlock()
	// len(rq.cmds) only shrinks meanwhile (the goroutine consumes), so the
	// check stays true until the flush sends.
	if len(rq.cmds)+rq.posted >= cap(rq.cmds) {
		return postFull
	}
	rq.posted++
	l.out = append(l.out, outMsg{rq, c})
	if len(l.out) == 1 {
		l.late.Reset(l.lateAfter)
		return postFirst
	}
	return postQueued
}

// flush hands every posted message to its request goroutine, in order. A
// request that ended meanwhile still has its buffered channel: the send
// succeeds and the message is dropped with it.
func (l *eventLoop) flush() {
	l.outMu.Lock()
	defer l.outMu.Unlock()
	l.late.Stop()
	for i := range l.out {
		m := &l.out[i]
		m.rq.posted--
		select {
		case m.rq.cmds <- m.c:
		default: // unreachable: post reserved the room
		}
	}
	clear(l.out) // drop the references to finished requests
	l.out, l.spare = l.spare[:0], l.out
}

// cs_go_asgi_flush is the driver's asgi_flush (see flush).
//
//export cs_go_asgi_flush
func cs_go_asgi_flush() {
	theLoop.flush()
}

// cs_go_asgi_take moves up to max queued events into out (C memory owned by
// the caller). Once the queue is empty the next push signals again; the loop
// drains the eventfd before taking, so no wake-up is lost.
//
//export cs_go_asgi_take
func cs_go_asgi_take(out *C.cs_event, max C.size_t) C.size_t {
	l := theLoop
	if l == nil || max == 0 {
		return 0
	}
	l.mu.Lock()
	n := copy(unsafe.Slice(out, int(max)), l.pending)
	rest := copy(l.pending, l.pending[n:])
	clear(l.pending[rest:]) // drop stale C pointers
	l.pending = l.pending[:rest]
	if rest == 0 {
		l.signaled = false
	}
	l.mu.Unlock()
	return C.size_t(n)
}
