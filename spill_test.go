package caddysnake

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// holderThread runs busy (spinning) or waiting (sleeping) on its own locked
// OS thread, as a worker serving a request would, and returns a worker that
// the watcher can sample.
func holderThread(t *testing.T, spin bool) *worker {
	t.Helper()
	ready := make(chan *worker)
	var stop atomic.Bool
	t.Cleanup(func() { stop.Store(true) })
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		w := &worker{probe: newThreadProbe()}
		defer w.probe.close()
		if w.probe.clock == 0 || w.probe.stat == nil {
			ready <- nil
			return
		}
		w.gen.Store(1)
		w.state.Store(admitHolding)
		ready <- w
		for x := 0; !stop.Load(); x++ {
			if !spin {
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
	h := holderThread(t, false)
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
	h := holderThread(t, true)
	for range 5 {
		if d := watch(h); d < spillAfter {
			t.Fatalf("a spinning holder was spilled after %v, before spillAfter (%v): computing taken for waiting", d, spillAfter)
		}
	}
}

func TestWatcherWaitsWhileTheHolderIsBetweenRequests(t *testing.T) {
	h := holderThread(t, false)
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
