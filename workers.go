package caddysnake

// #include "caddysnake.h"
import "C"

import (
	"errors"
	"runtime"
	"runtime/cgo"
	"slices"
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
// Requests wait in a FIFO (waiting) that the worker holding the admit token
// takes from. The ServeHTTP goroutine parks once per request, until the
// request is done: with an unbuffered channel instead, a waiting sender is
// woken when a worker takes its request, only to park again on done (one
// more wake-up and context switch per request under load). A request whose
// client leaves (or that waits past max_wait, or outlives the pool) is taken
// back out of the FIFO, so the worker never sees it.
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
	app  *pyApp
	root string // the handler's root_path (requestTarget)
	// mu guards waiting and taker. taker: the admit token's holder is
	// parked in take, to be woken through wake (capacity 1) by the next
	// request; nil in waiting is a worker's stop signal.
	mu          sync.Mutex
	waiting     fifo
	taker       bool
	wake        chan struct{}
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
		wake:        make(chan struct{}, 1),
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
	if p.offer(rq, false) { // the parked worker takes it at once
		<-rq.done
		return nil
	}
	// It has to wait: its body must not hold the connection's window.
	// Spooled before it is queued, so no worker can take it meanwhile.
	rq.spoolIfWaiting()
	p.offer(rq, true)
	var timeout <-chan time.Time
	if maxWait > 0 {
		t := time.NewTimer(maxWait)
		defer t.Stop()
		timeout = t.C
	}
	var err error
	select {
	case <-rq.done:
		return nil
	case <-rq.r.Context().Done():
		err = errClientGone
	case <-timeout:
		err = errBusy
	case <-p.stopped:
		err = errStopped
	}
	if p.withdraw(rq) {
		return err
	}
	<-rq.done // a worker took it first: it runs to the end
	return nil
}

// offer queues rq (nil: a stop signal) and wakes the worker parked in take.
// Unless always, it queues rq only if that worker is there to take it at
// once, and reports whether it did.
func (p *pool) offer(rq *request, always bool) bool {
	p.mu.Lock()
	wake := p.taker // parked, so nothing else waits: rq is taken at once
	if !wake && !always {
		p.mu.Unlock()
		return false
	}
	p.waiting.push(rq)
	p.taker = false
	p.mu.Unlock()
	if wake {
		p.wake <- struct{}{} // never blocks: only a parked taker is woken, once
	}
	return true
}

// withdraw takes rq back out of the queue; false if a worker has taken it.
func (p *pool) withdraw(rq *request) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting.remove(rq)
}

// take returns the next request, parking until one comes; called only by
// the admit token's holder, so one worker at most is parked here.
func (p *pool) take() *request {
	for {
		p.mu.Lock()
		if p.waiting.len() > 0 {
			rq := p.waiting.pop()
			p.mu.Unlock()
			return rq
		}
		p.taker = true
		p.mu.Unlock()
		<-p.wake
	}
}

// fifo is a queue of waiting requests; its storage is reused.
type fifo struct {
	items []*request
	head  int
}

func (q *fifo) len() int { return len(q.items) - q.head }

func (q *fifo) push(rq *request) {
	if q.head > 0 && len(q.items) == cap(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, rq)
}

func (q *fifo) pop() *request {
	rq := q.items[q.head]
	q.items[q.head] = nil
	if q.head++; q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return rq
}

// remove takes rq out of the queue, wherever it is; false if it is not in
// it. Linear, but only a request that gives up waiting pays it.
func (q *fifo) remove(rq *request) bool {
	i := slices.Index(q.items[q.head:], rq)
	if i < 0 {
		return false
	}
	i += q.head
	copy(q.items[i:], q.items[i+1:])
	q.items[len(q.items)-1] = nil
	q.items = q.items[:len(q.items)-1]
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return true
}

// stop lets every worker finish its current request, then exit; the app is
// released once the last one is gone. It does not block Caddy's reload.
func (p *pool) stop() {
	p.once.Do(func() {
		go func() {
			for range p.threads {
				p.offer(nil, true) // one stop signal per worker, taken when idle
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
		rq := p.take()
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
