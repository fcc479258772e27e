package caddysnake

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"

	"go.uber.org/zap"
)

// gcHeadroom is the least heap growth allowed between two Go collections in
// a Caddy process that runs Python.
//
// Why: Caddy allocates ~5 KB per request and keeps a live heap of a few MB,
// so with Go's default GOGC=100 it collects every ~1,000 requests (~50
// times a second at 50k req/s), and marking, assists and write barriers cost
// it more CPU than the Python hand-off. 16 MiB of headroom cuts that to ~20
// collections a second. The memory it trades is bounded (at most 16 MiB of
// not-yet-collected garbage, next to an interpreter that itself holds tens
// of MB), unlike a higher GOGC, which multiplies whatever the live heap grows
// to. Once the live heap exceeds 16 MiB this is plain GOGC=100. Measured on
// 2 vCPUs, raw WSGI hello: +10% req/s for +12 MB of RSS; 32 MiB gave no more
// for a one-app process and cost +34 MB.
const gcHeadroom = 16 << 20

// tuneGC keeps gcHeadroom between collections by adjusting the GC percent
// after every collection, unless the operator tuned the GC (GOGC or
// GOMEMLIMIT set; GOGC=100 restores Go's default).
func tuneGC() {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	newGCTuner().tune()
	pyLogger.Info("GC heap headroom kept for the Python app", zap.Int("bytes", gcHeadroom))
}

type gcTuner struct {
	sample  []metrics.Sample
	percent int         // the GC percent it last set
	stop    atomic.Bool // ends the chain (tests only: the process keeps it)
}

func newGCTuner() *gcTuner {
	return &gcTuner{sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}, percent: 100}
}

// tune sets the GC percent so the next collection comes no sooner than
// gcHeadroom bytes from now, and re-arms itself as a finalizer of a fresh
// object, which the runtime runs after the next collection.
func (t *gcTuner) tune() {
	if t.stop.Load() {
		return
	}
	metrics.Read(t.sample)
	live := t.sample[0].Value.Uint64()
	p := 100
	if live > 0 && gcHeadroom*100/live > 100 {
		p = int(min(gcHeadroom*100/live, 10000))
	}
	// SetGCPercent takes the heap lock: only call it when the change matters.
	if p > t.percent*5/4 || p < t.percent*4/5 {
		t.percent = p
		debug.SetGCPercent(p)
	}
	runtime.SetFinalizer(new(gcTick), func(*gcTick) { t.tune() })
}

// gcTick exists only to be collected: its finalizer marks each GC cycle. It
// holds a pointer so it is not batched by the tiny allocator with other
// objects that could keep it alive (nor zero-sized, which is never freed).
type gcTick struct{ _ *byte }
