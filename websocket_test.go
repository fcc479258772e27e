package caddysnake

import (
	"context"
	"testing"
	"time"
)

// The read-ahead window closes on either limit and reopens on credit.
func TestWSWindowClosesOnCountOrBytes(t *testing.T) {
	w := newWSWindow()
	for range wsQueue - 1 {
		w.read(10)
	}
	if !w.open() {
		t.Fatal("closed before wsQueue messages")
	}
	w.read(10)
	if w.open() {
		t.Fatal("open at wsQueue messages")
	}
	w.credit(wsQueue, wsQueue*10)
	w.read(wsQueueBytes - 1)
	if !w.open() {
		t.Fatal("closed below wsQueueBytes")
	}
	w.read(1)
	if w.open() {
		t.Fatal("open at wsQueueBytes")
	}
}

// A reader waiting on a closed window wakes when the app hands back credit,
// and gives up when the connection ends.
func TestWSWindowWaitWakesOnCredit(t *testing.T) {
	w := newWSWindow()
	w.read(wsQueueBytes)
	got := make(chan bool)
	go func() { got <- w.wait(context.Background()) }()
	select {
	case <-got:
		t.Fatal("wait returned on a closed window")
	case <-time.After(50 * time.Millisecond):
	}
	w.credit(1, wsQueueBytes)
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("wait failed after credit")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not wake on credit")
	}

	w.read(wsQueueBytes)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { got <- w.wait(ctx) }()
	cancel()
	if <-got {
		t.Fatal("wait reported open after the connection ended")
	}
}
