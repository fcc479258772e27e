package caddysnake

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// gcPercent reads the current GC percent (SetGCPercent returns the old one).
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// waitPercent collects until the tuner's finalizer has moved the GC percent
// into [lo, hi], or fails after a few seconds.
func waitPercent(t *testing.T, lo, hi int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // finalizers run on their own goroutine
		if p := gcPercent(); p >= lo && p <= hi {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("GC percent %d, want it in [%d, %d]", gcPercent(), lo, hi)
		}
	}
}

func TestGCTunerKeepsHeadroomAndFollowsTheLiveHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tuner := newGCTuner()
	defer tuner.stop.Store(true)
	tuner.tune()
	// A test binary's live heap is a few MB: 16 MiB of headroom is a
	// percent well above Go's default.
	p := waitPercent(t, 200, 10000)
	// A live heap above the headroom: plain GOGC=100 again.
	big := make([]byte, 3*gcHeadroom)
	for i := range big {
		big[i] = byte(i)
	}
	waitPercent(t, 100, 100)
	runtime.KeepAlive(big)
	big = nil
	// And back once it is gone: the tuner re-arms after every collection.
	waitPercent(t, p*4/5, 10000)
}
