package caddysnake

import (
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Caddy bounds each write to the client by its write idle timeout, and so
// cuts every Write into write_max_chunk pieces (64 KiB by default), resetting
// the deadline before each. For an app's large response that costs a write
// syscall and a deadline reset per 64 KiB: a 1 MiB response is 17 writes.
// When the server leaves write_max_chunk at its default, the python handler
// raises it for its own request to wideWriteChunk on its first large write:
// measured on a Flask view returning 1 MiB (100 connections), 2,170 →
// 2,550 req/s and 610 → 470 µs of CPU per request. The idle timeout still
// applies to every 256 KiB: a client must take 256 KiB per write_idle
// (1 minute by default), about 4.4 KB/s, where Caddy's default asks for
// about 1.1 KB/s. A write_max_chunk set in the Caddyfile to anything but
// 64 KiB is left alone.
const wideWriteChunk = 256 << 10

// widenWriteChunk raises the request's write chunk (see above). It is
// called by whoever owns the ResponseWriter at the time, before the write.
func widenWriteChunk(r *http.Request) {
	// Caddy fills in its default when provisioning, so a write_max_chunk
	// of exactly 64 KiB cannot be told from none.
	if _, w := caddyhttp.IdleTimeoutsFromContext(r.Context()); w != nil &&
		(w.MaxChunk == 0 || w.MaxChunk == caddyhttp.DefaultMaxWriteChunk) {
		w.MaxChunk = wideWriteChunk // this request's writer only
	}
}
