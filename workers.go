package caddysnake

// #include "caddysnake.h"
import "C"

import (
	"errors"
	"runtime"
	"runtime/cgo"
	"sync"
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
type pool struct {
	app     *pyApp
	reqs    chan *request
	stopped chan struct{} // closed once every worker has exited
	threads int
	wg      sync.WaitGroup
	once    sync.Once
	logger  *zap.Logger
}

func newPool(app *pyApp, threads int, logger *zap.Logger) *pool {
	p := &pool{
		app:     app,
		reqs:    make(chan *request),
		stopped: make(chan struct{}),
		threads: threads,
		logger:  logger,
	}
	p.wg.Add(threads)
	for range threads {
		go p.work()
	}
	return p
}

// submit runs rq on a worker and returns when the response is complete.
func (p *pool) submit(rq *request, maxWait time.Duration) error {
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
	env    []byte // packed environ, reused across requests
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
	for rq := range p.reqs {
		if rq == nil {
			return
		}
		w.serve(ts, rq)
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
