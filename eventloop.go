package caddysnake

// #include <stdlib.h>
// #include "caddysnake.h"
import "C"

import (
	"errors"
	"fmt"
	"sync"
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
type eventLoop struct {
	efd      int
	mu       sync.Mutex
	pending  []C.cs_event // C pointers only, so C may read them
	signaled bool         // a wake-up is in flight and not yet consumed
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
		l := &eventLoop{efd: efd, pending: make([]C.cs_event, 0, 256)}
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
