package caddysnake

import "testing"

// The pool's queue of waiting requests: FIFO order across the reuse and
// compaction of its storage, and removal of a request that gives up waiting
// from anywhere in it.
func TestFifoKeepsOrderAndRemovesAnywhere(t *testing.T) {
	rs := make([]*request, 10)
	for i := range rs {
		rs[i] = &request{status: i}
	}
	var q fifo
	var want []int
	next := 0
	check := func() {
		t.Helper()
		if q.len() != len(want) {
			t.Fatalf("len %d, want %d", q.len(), len(want))
		}
	}
	// Interleave pushes and pops so head moves and storage gets compacted.
	for round := 0; round < 50; round++ {
		for range 3 {
			q.push(rs[next%len(rs)])
			want = append(want, next%len(rs))
			next++
		}
		for range 2 {
			got := q.pop()
			if got.status != want[0] {
				t.Fatalf("round %d: popped %d, want %d", round, got.status, want[0])
			}
			want = want[1:]
		}
		check()
	}
	// Remove from the middle, the front and the back.
	for _, idx := range []int{len(want) / 2, 0, len(want) - 3} {
		r := rs[want[idx]]
		// Requests repeat in this queue; remove takes the first, as want does.
		if !q.remove(r) {
			t.Fatalf("remove of %d failed", r.status)
		}
		for i, v := range want {
			if v == r.status {
				want = append(want[:i], want[i+1:]...)
				break
			}
		}
		check()
	}
	for len(want) > 0 {
		if got := q.pop(); got.status != want[0] {
			t.Fatalf("drain: popped %d, want %d", got.status, want[0])
		}
		want = want[1:]
	}
	if q.remove(rs[0]) {
		t.Fatal("removed a request from an empty queue")
	}
	q.push(nil) // a stop signal
	if q.len() != 1 || q.pop() != nil || q.len() != 0 {
		t.Fatal("a stop signal did not pass through")
	}
}
