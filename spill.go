package caddysnake

import (
	"bytes"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Spilling: when the worker serving a request lets the next one take new
// requests (the admit token of pool, workers.go, passes on).
//
// A request that waits — on a database, an upstream API, time.sleep, a slow
// client — has released the GIL, and the next request should start at once,
// as it would on one of gunicorn's threads. A request that computes holds the
// GIL, and letting another thread in would only make the two fight over it.
//
// So one idle worker (the watcher) watches the holder's OS thread while it
// serves a request: its CPU time (the thread's CPU clock) over a window, and
// its state in /proc at the end of it. A request that spent less than half of
// the window on a CPU and is asleep now (not merely waiting for a CPU on a
// busy machine), or that still runs after spillAfter, loses the token to the
// watcher, which takes the next request itself. Windows double (50, 100,
// 200, 400 µs). A thread asleep on a futex does not count as waiting: it
// waits for another thread that computes (the GIL, a Go P, a lock), and one
// more thread in would only add to that contention; a request waits in
// poll, a socket read or a timer, or in Go on the client (worker.inIO:
// there a parked locked goroutine's thread sleeps on a futex too). A
// request first seen late and found waiting spills at once (lateSight).
//
// Why a watcher and not a timer per request: Go's timers cannot fire sooner
// than ~1.1 ms while the process is otherwise idle (its poller sleeps in
// milliseconds), which is exactly the state of a server whose requests all
// wait. A 1 ms timer let 4 threads start at most one request per ~1.1 ms:
// a Flask view sleeping 2 ms served 689 req/s where Caddy→gunicorn with 4
// threads served 1,444. The watcher is a locked OS thread and naps with
// nanosleep, which is precise. While requests come and go quickly the
// watcher naps longer (up to napMax), so a busy server pays ~1,000 wake-ups
// a second for it, and a request that waits is found within ~napMax; after
// idleLooks looks at a holder between requests it sleeps until the next
// request starts, so an idle server pays nothing.
const (
	spillFirst = 50 * time.Microsecond // the shortest window
	spillAfter = time.Millisecond      // spill regardless after this long
	napMax     = time.Millisecond      // the longest nap between looks
	idleLooks  = 3                     // then wait for the holder's next request
	// A request the watcher first sees this long after it began, and finds
	// waiting then, loses the token at that first look: with every thread
	// busy there was no watcher meanwhile, and a window more would only add
	// to the time the next request could already have been running. Short
	// requests (hello-world views, a streamed response's brief waits for
	// its writer) end before this, so a momentary sleep of theirs is never
	// taken for a wait: at 100 µs, streaming 100 pieces lost 10%.
	lateSight = 300 * time.Microsecond
)

var epoch = time.Now()

// sinceEpoch is a monotonic clock reading in ns (vDSO: no syscall).
func sinceEpoch() int64 { return int64(time.Since(epoch)) }

// yield passes the admit token on, if w holds it, before w does something
// long that needs no GIL.
func (w *worker) yield() {
	if w.state.CompareAndSwap(admitHolding, admitSpilled) {
		w.pool.admit <- struct{}{} // never blocks: w held the only token
	}
}

// threadProbe reads one worker thread's CPU time and scheduling state; made
// on that thread, used from any other.
type threadProbe struct {
	clock int32    // the thread's CPU-time clock; 0 if it cannot be read
	stat  *os.File // its /proc/<pid>/task/<tid>/stat; nil if unavailable
	wchan *os.File // its /proc/<pid>/task/<tid>/wchan; nil if unavailable
}

// newThreadProbe must run on the thread to probe (a locked worker thread).
// /proc/thread-self names the calling thread, and the open file keeps
// pointing at it.
func newThreadProbe() threadProbe {
	// The clock glibc's pthread_getcpuclockid returns: per-thread
	// (4) scheduler clock (2) of this tid.
	p := threadProbe{clock: int32(^int32(unix.Gettid())<<3 | 6)}
	if _, ok := p.cpu(); !ok {
		p.clock = 0
	}
	if f, err := os.Open("/proc/thread-self/stat"); err == nil {
		p.stat = f
	}
	if f, err := os.Open("/proc/thread-self/wchan"); err == nil {
		p.wchan = f
	}
	return p
}

func (p threadProbe) close() {
	for _, f := range []*os.File{p.stat, p.wchan} {
		if f != nil {
			f.Close()
		}
	}
}

// cpu returns the thread's CPU time in ns. It is exact even while the thread
// runs (the kernel accounts it up to now), unlike /proc's schedstat, which
// lags by up to a scheduler tick.
func (p threadProbe) cpu() (int64, bool) {
	if p.clock == 0 {
		return 0, false
	}
	var ts unix.Timespec
	if unix.ClockGettime(p.clock, &ts) != nil {
		return 0, false
	}
	return ts.Nano(), true
}

// waiting reports whether w's request waits now: its thread sleeps, and not
// on a futex unless w is in Go waiting on the client (a locked goroutine
// parked on the network sleeps on a futex too).
func (w *worker) waiting(buf []byte) bool {
	return w.probe.asleep(buf) && (w.inIO.Load() || !w.probe.inFutex(buf))
}

// asleep reports whether the thread sleeps now (state S or D), as opposed to
// running or runnable but waiting for a CPU. Unknown counts as sleeping.
func (p threadProbe) asleep(buf []byte) bool {
	if p.stat == nil {
		return true
	}
	n, _ := p.stat.ReadAt(buf, 0)
	// "<pid> (<comm>) <state> ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(buf[:n], ')')
	if i < 0 || i+2 >= n {
		return true
	}
	st := buf[i+2]
	return st == 'S' || st == 'D'
}

// inFutex reports whether the sleeping thread waits on a futex: for the GIL,
// a Go P or a lock, i.e. for another thread that computes, not for I/O or a
// timer (where a request waits), or in Go for the client (worker.inIO).
// Letting another request in then would only add to the contention. Unknown
// counts as not.
func (p threadProbe) inFutex(buf []byte) bool {
	if p.wchan == nil {
		return false
	}
	n, _ := p.wchan.ReadAt(buf, 0)
	return bytes.HasPrefix(buf[:n], []byte("futex"))
}

// watchToken returns once w holds the admit token: passed on the channel, or
// taken from a holder whose request waits or runs long. One idle worker
// watches at a time and hands the role on as soon as it holds the token, so
// the next idle worker watches the new holder.
func (w *worker) watchToken() {
	p := w.pool
	<-p.watch // one watcher at a time: idle workers queue here
	defer func() { p.watch <- struct{}{} }()
	var s spillWatch
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		h := p.holder.Load()
		if h == nil || h == w {
			<-p.admit // nobody to watch: the token comes back on the channel
			return
		}
		switch s.look(h) {
		case lookSpill:
			if h.state.CompareAndSwap(admitHolding, admitSpilled) {
				return // h goes on serving its request; w takes the next
			}
		case lookNap: // within a request: precisely
			nap(s.nap)
			select {
			case <-p.admit:
				return
			default:
			}
		case lookLater: // requests come and go: Go's (coarser) timer will do
			t.Reset(s.nap)
			select {
			case <-p.admit:
				return
			case <-t.C:
			}
		case lookIdle: // the holder is between requests: wait for its next
			p.watcherIdle.Store(true)
			if h.state.Load() != admitHolding { // it may have started one meanwhile
				select {
				case <-p.admit:
					p.watcherIdle.Store(false)
					return
				case <-p.wakeWatcher:
				}
			} else if !p.watcherIdle.CompareAndSwap(true, false) {
				<-p.wakeWatcher // the holder's wake-up is on its way: take it
			}
		}
	}
}

// nudgeWatcher is called by a worker as it starts a request: one atomic
// load unless the watcher waits for the holder's next request.
func (p *pool) nudgeWatcher() {
	if p.watcherIdle.Load() && p.watcherIdle.CompareAndSwap(true, false) {
		select {
		case p.wakeWatcher <- struct{}{}:
		default: // a wake-up is already pending (left by a watcher that took the token instead)
		}
	}
}

// What the watcher does after a look.
const (
	lookSpill = iota // take the token
	lookNap          // look again after s.nap, precisely (nanosleep)
	lookLater        // look again after s.nap, on a Go timer
	lookIdle         // wait for the holder's next request
)

// spillWatch is the watcher's view of the holder's current request.
type spillWatch struct {
	h      *worker
	gen    uint64        // the holder's request count when this request was first seen
	since  time.Time     // when it was first seen
	at     time.Time     // the last sample; zero if none
	cpu    int64         // the holder's CPU time (ns) at the last sample
	window time.Duration // the current sampling window
	nap    time.Duration // until the next look
	idle   int           // looks in a row that found the holder between requests
	warm   bool          // requests were seen finishing between looks
	buf    [512]byte     // for /proc's stat line
}

// look decides what the watcher does about the holder h, setting s.nap.
func (s *spillWatch) look(h *worker) int {
	if h.state.Load() != admitHolding { // between requests: it takes the next itself
		s.h = nil
		if s.idle++; s.idle > idleLooks {
			return lookIdle
		}
		s.nap = min(2*max(s.nap, spillFirst), napMax)
		return lookLater
	}
	s.idle = 0
	now := time.Now()
	if gen := h.gen.Load(); h != s.h || gen != s.gen { // a request not seen before
		warm := s.warm
		*s = spillWatch{h: h, gen: gen, since: now, window: spillFirst, nap: s.nap, warm: true}
		// began is stored before gen moves on: re-reading gen makes sure it
		// is this request's (or a later one's, which only makes it younger).
		if sinceEpoch()-h.began.Load() >= int64(lateSight) && h.gen.Load() == gen &&
			h.waiting(s.buf[:]) {
			return lookSpill
		}
		s.sample(now)
		if warm { // requests are finishing between looks: look less often
			s.nap = min(2*max(s.nap, spillFirst), napMax)
			return lookLater
		}
		s.nap = spillFirst // a new watcher, likely after a steal: look closely
		return lookNap
	}
	if now.Sub(s.since) >= spillAfter {
		return lookSpill
	}
	cpu, at := s.cpu, s.at
	if at.IsZero() || !s.sample(now) { // no CPU clock: time alone
		s.nap = spillAfter - now.Sub(s.since)
		return lookLater
	}
	// Off a CPU for most of the window and asleep now: waiting (I/O, a
	// sleep, a slow client), GIL released. A thread that only waited for a
	// CPU on a busy machine is runnable, not asleep.
	if 2*time.Duration(s.cpu-cpu) < now.Sub(at) && s.h.waiting(s.buf[:]) {
		return lookSpill
	}
	s.window = min(2*s.window, spillAfter)
	s.nap = s.window
	return lookNap
}

// sample records the holder's CPU time now; false if it cannot be read.
func (s *spillWatch) sample(now time.Time) bool {
	cpu, ok := s.h.probe.cpu()
	if ok {
		s.cpu, s.at = cpu, now
	} else {
		s.at = time.Time{}
	}
	return ok
}

// nap sleeps the calling (locked) thread for d, precisely: Go's own timers
// round sub-millisecond sleeps up to ~1.1 ms when the process is idle. The
// thread keeps its P meanwhile, so only looks within a request nap this way.
func nap(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	_ = unix.Nanosleep(&ts, nil) // an early wake-up only means an early look
}
