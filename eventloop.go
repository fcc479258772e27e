package caddysnake

// #include <stdlib.h>
// #include "caddysnake.h"
// #cgo noescape cs_asgi_push
// #cgo nocallback cs_asgi_push
// #cgo nocallback cs_asgi_take_msgs
// #cgo nocallback cs_asgi_free_msgs
// #cgo nocallback cs_asgi_late
import "C"

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// eventLoop is Go's side of the interpreter's single asyncio loop, which
// runs on its own Python thread. The two meet only in C queues (see
// caddysnake.h), so the loop thread never calls into Go while it serves
// requests: a C thread that has called Go keeps one of Go's Ps while it runs
// Python or sleeps, Go's sysmon must keep polling to take it back, and each
// later call waits for a P again (measured: ~2 µs of sysmon per request).
//
// In: push queues an event in C, which writes the eventfd the loop watches
// only if the loop may be asleep; the loop takes the whole batch at once.
//
// Out: the app's messages are checked and copied in C as send() runs, held
// until the driver's flush at the end of the loop iteration, then handed
// over as one list: C writes an eventfd that Go's netpoller watches, and
// deliver (one goroutine) decodes each message and sends it to its request
// goroutine. Waking the request goroutines once per iteration, not per
// message, lets start and body arrive together. An app that blocks the loop
// right after send() (time.sleep in an async background task, say) would
// hold the batch until it yields: the first message of a batch arms a
// timerfd, and after CS_LATE_FLUSH_NS (1 ms) Go flushes it instead, so what
// send() was given still leaves at once, as the ASGI spec asks (and as
// under uvicorn).
type eventLoop struct {
	out  *os.File // eventfd: messages were flushed
	late *os.File // timerfd: a batch may have waited too long
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
		theLoop, loopErr = newEventLoop(kind)
		loopKind = kind
	})
	if loopErr == nil && kind != loopKind && kind != "auto" {
		pyLogger.Warn("the ASGI event loop is process-wide and already runs as chosen by another app",
			zap.String("wanted", kind), zap.String("running", loopKind))
	}
	return theLoop, loopErr
}

func newEventLoop(kind string) (*eventLoop, error) {
	// Non-blocking, so os.NewFile makes out and late pollable: the
	// goroutines reading them park in Go's netpoller, holding no thread.
	in, err1 := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	out, err2 := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	late, err3 := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("python: ASGI loop fds: %w", err)
	}
	l := &eventLoop{out: os.NewFile(uintptr(out), "asgi-out"), late: os.NewFile(uintptr(late), "asgi-late")}
	go onReadable(l.out, func() { l.deliver(C.cs_asgi_take_msgs()) })
	go onReadable(l.late, func() { C.cs_asgi_late() }) // flush a batch held too long
	ckind := C.CString(kind)
	defer C.free(unsafe.Pointer(ckind))
	if msg := C.cs_asgi_start_loop(C.int(in), C.int(out), C.int(late), ckind); msg != nil {
		return nil, errors.New("python: cannot start the ASGI event loop:\n" + takeCString(msg))
	}
	return l, nil
}

// push queues an event for the loop; ev.data (C memory) goes with it.
func (l *eventLoop) push(ev C.cs_event) {
	C.cs_asgi_push(ev)
}

// release hands a reference (an app, a body chunk's bytes) back to the
// loop, which drops it after the events queued before it.
func (l *eventLoop) release(ref pyRef) {
	if ref != nil {
		l.push(C.cs_event{app: ref, kind: C.CS_EV_RELEASE})
	}
}

// releaseQuiet is release without waking the loop, for a reference whose
// drop can wait for an event the caller is about to push anyway.
func (l *eventLoop) releaseQuiet(ref pyRef) {
	if ref != nil {
		C.cs_asgi_push_quiet(C.cs_event{app: ref, kind: C.CS_EV_RELEASE})
	}
}

// dropCmd lets go of what a message the request never handled holds: the
// reference to a Python object, a file the driver opened.
func (l *eventLoop) dropCmd(c *asgiCmd) {
	l.release(c.ref)
	c.ref = nil
	if c.file != nil {
		c.file.Close()
		c.file = nil
	}
}

func (l *eventLoop) pushSimple(h uintptr, kind int) {
	l.push(C.cs_event{handle: C.uintptr_t(h), kind: C.int(kind)})
}

// onReadable calls fn each time the pollable fd f becomes readable, after
// reading it (which resets an eventfd or a timerfd, so no wake-up between
// the read and fn is lost). It parks in Go's netpoller, holding no thread.
func onReadable(f *os.File, fn func()) {
	var b [8]byte
	for {
		if _, err := f.Read(b[:]); err != nil {
			pyLogger.Error("ASGI: the loop's "+f.Name()+" fd failed; responses stop", zap.Error(err))
			return
		}
		fn()
	}
}

// deliver sends each message to its request goroutine, in order, and frees
// the list. A message for a request that is over is dropped.
func (l *eventLoop) deliver(head *C.cs_msg) {
	for m := head; m != nil; m = m.next {
		rq := requests.get(uintptr(m.handle))
		if rq == nil {
			continue
		}
		if c := decodeMsg(m); !rq.cmds.put(c) {
			l.dropCmd(&c) // the request ended meanwhile
		}
	}
	C.cs_asgi_free_msgs(head)
}
