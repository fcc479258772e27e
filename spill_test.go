package caddysnake

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// holding is what a holder thread does.
type holding int

const (
	spinning holding = iota // computing
	sleeping                // waiting on a timer, as on I/O
	blocked                 // waiting for another thread (a futex, as for the GIL)
)

// holderThread runs as a worker serving a request would (computing, waiting
// on a timer, or blocked on another thread) on its own locked OS thread, and
// returns a worker that the watcher can sample.
func holderThread(t *testing.T, how holding) *worker {
	t.Helper()
	ready := make(chan *worker)
	var stop atomic.Bool
	unblock := make(chan struct{})
	t.Cleanup(func() { stop.Store(true); close(unblock) })
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		w := &worker{probe: newThreadProbe()}
		defer w.probe.close()
		if w.probe.clock == 0 || w.probe.stat == nil {
			ready <- nil
			return
		}
		w.began.Store(sinceEpoch())
		w.gen.Store(1)
		w.state.Store(admitHolding)
		ready <- w
		if how == blocked {
			// A locked goroutine that blocks parks its thread on a futex.
			<-unblock
			return
		}
		for x := 0; !stop.Load(); x++ {
			if how == sleeping {
				nap(200 * time.Microsecond)
			}
		}
	}()
	w := <-ready
	if w == nil {
		t.Skip("no thread CPU clock or /proc/thread-self/stat here")
	}
	return w
}

// watch looks at h as watchToken does until a look says spill; it returns
// how long the watcher had seen h's request by then.
func watch(h *worker) time.Duration {
	var s spillWatch
	for {
		switch s.look(h) {
		case lookSpill:
			return time.Since(s.since)
		case lookNap:
			nap(s.nap)
		default:
			time.Sleep(s.nap)
		}
	}
}

func TestWatcherSpillsAWaitingRequestAtOnce(t *testing.T) {
	h := holderThread(t, sleeping)
	// A busy machine can stretch the naps past spillAfter now and then;
	// the decision must come from the samples in most attempts.
	early := 0
	for range 5 {
		if watch(h) < spillAfter {
			early++
		}
	}
	if early < 3 {
		t.Fatalf("a sleeping holder was spilled before spillAfter in %d of 5 looks; want it found waiting", early)
	}
}

func TestWatcherLeavesAComputingRequestUntilSpillAfter(t *testing.T) {
	h := holderThread(t, spinning)
	for range 5 {
		if d := watch(h); d < spillAfter {
			t.Fatalf("a spinning holder was spilled after %v, before spillAfter (%v): computing taken for waiting", d, spillAfter)
		}
	}
}

func TestWatcherWaitsWhileTheHolderIsBetweenRequests(t *testing.T) {
	h := holderThread(t, sleeping)
	h.state.Store(admitIdle)
	var s spillWatch
	for i := 0; i < idleLooks; i++ {
		if got := s.look(h); got != lookLater {
			t.Fatalf("look %d at an idle holder = %d, want lookLater", i, got)
		}
	}
	if got := s.look(h); got != lookIdle {
		t.Fatalf("look after %d idle looks = %d, want lookIdle", idleLooks, got)
	}
}

func TestAThreadWaitingOnAFutexIsNotTakenForWaitingOnIO(t *testing.T) {
	h := holderThread(t, blocked)
	if h.probe.wchan == nil {
		t.Skip("no /proc/thread-self/wchan here")
	}
	var buf [512]byte
	waitUntil(t, func() bool { return h.probe.inFutex(buf[:]) }, "the blocked holder's thread to sleep on a futex")
	if h.waiting(buf[:]) {
		t.Fatal("a thread asleep on a futex (another thread's lock, the GIL) counted as waiting on I/O")
	}
	// Unless it is in Go waiting on the client: a parked locked goroutine's
	// thread sleeps on a futex too.
	h.inIO.Store(true)
	if !h.waiting(buf[:]) {
		t.Fatal("a thread blocked on the client in a Go callback not counted as waiting")
	}
	s := holderThread(t, sleeping)
	waitUntil(t, func() bool { return s.waiting(buf[:]) }, "a sleeping holder to be seen waiting")
	if s.probe.inFutex(buf[:]) {
		t.Fatal("a thread in nanosleep reported as on a futex")
	}
}

func TestAWaitingRequestFirstSeenLateSpillsAtTheFirstLook(t *testing.T) {
	h := holderThread(t, sleeping)
	h.began.Store(sinceEpoch() - int64(2*lateSight))
	spilled := 0
	var buf [512]byte
	for range 5 {
		// Look while it sleeps, as a watcher finding it waiting would: the
		// holder runs between naps, and a just-started one may not sleep yet
		// (a loaded machine, -race).
		waitUntil(t, func() bool { return h.waiting(buf[:]) }, "the sleeping holder to be seen waiting")
		var s spillWatch
		if s.look(h) == lookSpill {
			spilled++
		}
	}
	if spilled < 3 {
		t.Fatalf("a request first seen %v after it began, asleep, spilled at the first look %d times in 5", 2*lateSight, spilled)
	}
	// Not so a computing one, nor one just begun.
	c := holderThread(t, spinning)
	c.began.Store(sinceEpoch() - int64(2*lateSight))
	n := holderThread(t, sleeping)
	n.began.Store(sinceEpoch() + int64(time.Hour))
	// A just-started spinner may not spin yet (it failed once in a
	// clean-clone make test: seen asleep before its loop began).
	waitUntil(t, func() bool { return !c.waiting(buf[:]) }, "the spinning holder to be seen running")
	for range 5 {
		var s spillWatch
		if s.look(c) == lookSpill {
			t.Fatal("a computing request spilled at the first look")
		}
		s = spillWatch{}
		if s.look(n) == lookSpill {
			t.Fatal("a request that had just begun spilled at the first look")
		}
	}
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
