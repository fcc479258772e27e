package caddysnake

// #include "caddysnake.h"
import "C"

import (
	"errors"
	"runtime"
	"runtime/cgo"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

var (
	errClientGone = errors.New("client went away while waiting for a Python thread")
	errBusy       = errors.New("no Python thread became free within max_wait")
	errStopped    = errors.New("python app is shutting down")
)

// pool is one app's set of long-lived interpreter threads. Each worker is a
// goroutine locked to its own OS thread that keeps one Python thread state
// for its whole life, so per-thread state (threading.local, Django's DB
// connections) persists across requests, and no thread state is created per
// request.
//
// Requests are handed over on an unbuffered channel: a send completes only
// when an idle worker takes it, so waiting requests queue in the channel's
// FIFO of blocked senders and nothing is ever stranded in a buffer.
//
// Admission: only the worker holding the admit token takes requests. It
// keeps the token while its requests finish quickly, so CPU-bound requests
// run back to back on one thread instead of several threads fighting for
// the GIL (CPython's 5 ms forced switches and futex hand-offs halved Django
// throughput and multiplied its p99 with 2+ busy threads). A request found
// waiting (I/O, GIL released), or still running after spillAfter, loses the
// token to an idle worker, which serves new requests meanwhile (spill.go), so
// up to `threads` requests wait on I/O in parallel.
type pool struct {
	app         *pyApp
	reqs        chan *request
	admit       chan struct{} // the right to take the next request (capacity 1)
	stopped     chan struct{} // closed once every worker has exited
	threads     int
	holder      atomic.Pointer[worker] // the worker that last took the admit token
	watch       chan struct{}          // the right to watch the holder (capacity 1; spill.go)
	watcherIdle atomic.Bool            // the watcher waits on wakeWatcher for the next request
	wakeWatcher chan struct{}          // capacity 1
	wg          sync.WaitGroup
	once        sync.Once
	logger      *zap.Logger
}

// Worker admission states (worker.state).
const (
	admitIdle    = iota // not serving
	admitHolding        // serving, and holding the admit token
	admitSpilled        // serving; the token was passed on
)

func newPool(app *pyApp, threads int, logger *zap.Logger) *pool {
	reserveInterpreterP()
	p := &pool{
		app:         app,
		reqs:        make(chan *request),
		admit:       make(chan struct{}, 1),
		watch:       make(chan struct{}, 1),
		wakeWatcher: make(chan struct{}, 1),
		stopped:     make(chan struct{}),
		threads:     threads,
		logger:      logger,
	}
	p.admit <- struct{}{}
	p.watch <- struct{}{}
	p.wg.Add(threads)
	for range threads {
		go p.work()
	}
	return p
}

// submit runs rq on a worker and returns when the response is complete.
func (p *pool) submit(rq *request, maxWait time.Duration) error {
	select {
	case p.reqs <- rq: // an idle worker took it at once
		<-rq.done
		return nil
	default:
	}
	rq.spoolIfWaiting() // it has to wait: its body must not hold the connection's window
	var timeout <-chan time.Time
	if maxWait > 0 {
		t := time.NewTimer(maxWait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case p.reqs <- rq:
	case <-rq.r.Context().Done():
		return errClientGone
	case <-timeout:
		return errBusy
	case <-p.stopped:
		return errStopped
	}
	<-rq.done
	return nil
}

// stop lets every worker finish its current request, then exit; the app is
// released once the last one is gone. It does not block Caddy's reload.
func (p *pool) stop() {
	p.once.Do(func() {
		go func() {
			for range p.threads {
				p.reqs <- nil // one stop signal per worker, taken when idle
			}
			p.wg.Wait()
			close(p.stopped)
			p.app.release()
		}()
	})
}

// worker is one interpreter thread. Its cgo.Handle is what the C side passes
// back to the Go callbacks, so they find the current request without any
// per-request registration.
type worker struct {
	pool   *pool
	handle cgo.Handle
	cur    *request
	env    []byte        // packed environ, reused across requests
	state  atomic.Int32  // admitIdle / admitHolding / admitSpilled
	gen    atomic.Uint64 // requests taken, so the watcher tells them apart
	began  atomic.Int64  // when the current request began (sinceEpoch)
	// In a callback that may block on the client (reading the body,
	// writing, flushing): its thread then sleeps on a futex, which the
	// watcher would otherwise take for waiting on another thread (spill.go).
	inIO  atomic.Bool
	probe threadProbe // this thread, for the watcher (spill.go)
}

func (p *pool) work() {
	defer p.wg.Done()
	// Never unlocked: the thread state is bound to this OS thread, and the
	// thread exits with the goroutine after the state is destroyed.
	runtime.LockOSThread()
	w := &worker{pool: p, env: make([]byte, 0, 4096)}
	w.handle = cgo.NewHandle(w)
	defer w.handle.Delete()
	ts := C.cs_thread_attach()
	defer C.cs_thread_detach(ts)
	w.probe = newThreadProbe() // on this thread: it describes this thread
	defer w.probe.close()
	holding := false
	for {
		if !holding {
			w.watchToken()
			p.holder.Store(w)
		}
		rq := <-p.reqs
		if rq == nil { // stop signal: let the next worker take its own
			p.admit <- struct{}{}
			return
		}
		w.began.Store(sinceEpoch())
		w.gen.Add(1)
		w.state.Store(admitHolding)
		p.nudgeWatcher()
		w.serve(ts, rq)
		// Still holding unless the watcher took the token meanwhile.
		holding = w.state.Swap(admitIdle) == admitHolding
		rq.done <- struct{}{}
	}
}

// workerFor maps a handle from C back to its worker; nil if it is not one
// (a defensive check: callbacks must never panic across the C boundary).
func workerFor(h C.uintptr_t) *worker {
	defer func() { _ = recover() }()
	w, _ := cgo.Handle(h).Value().(*worker)
	return w
}
