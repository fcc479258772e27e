package caddysnake

import (
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The python handler widens Caddy's default write chunk for its request,
// and leaves one the admin chose (or a request without one) alone.
func TestWidenWriteChunk(t *testing.T) {
	for _, tc := range []struct{ set, want int }{
		{0, wideWriteChunk},
		{caddyhttp.DefaultMaxWriteChunk, wideWriteChunk},
		{16 << 10, 16 << 10},
		{4 << 20, 4 << 20},
	} {
		w := &caddyhttp.IdleTimeoutWriter{MaxChunk: tc.set}
		r := httptest.NewRequest("GET", "/", nil)
		r = r.WithContext(caddyhttp.ContextWithIdleTimeouts(r.Context(), nil, w))
		widenWriteChunk(r)
		if w.MaxChunk != tc.want {
			t.Errorf("MaxChunk %d: got %d, want %d", tc.set, w.MaxChunk, tc.want)
		}
	}
	widenWriteChunk(httptest.NewRequest("GET", "/", nil)) // no idle writer: nothing to do
}

// bodyLimit.write widens on the first write larger than Caddy's chunk only.
func TestBodyLimitWidensOnLargeWrite(t *testing.T) {
	w := &caddyhttp.IdleTimeoutWriter{MaxChunk: caddyhttp.DefaultMaxWriteChunk}
	r := httptest.NewRequest("GET", "/", nil)
	r = r.WithContext(caddyhttp.ContextWithIdleTimeouts(r.Context(), nil, w))
	l := bodyLimit{length: -1}
	rec := httptest.NewRecorder()
	if err := l.write(rec, r, make([]byte, caddyhttp.DefaultMaxWriteChunk)); err != nil {
		t.Fatal(err)
	}
	if w.MaxChunk != caddyhttp.DefaultMaxWriteChunk {
		t.Fatalf("widened for a write that Caddy does not split: %d", w.MaxChunk)
	}
	if err := l.write(rec, r, make([]byte, caddyhttp.DefaultMaxWriteChunk+1)); err != nil {
		t.Fatal(err)
	}
	if w.MaxChunk != wideWriteChunk || rec.Body.Len() != 2*caddyhttp.DefaultMaxWriteChunk+1 {
		t.Fatalf("MaxChunk %d, wrote %d", w.MaxChunk, rec.Body.Len())
	}
}
