package caddysnake

import (
	"context"
	"crypto/tls"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// forwardedHeaders gives what reverse_proxy would send: the client's own
// values only from a trusted proxy.
func TestForwardedHeaders(t *testing.T) {
	for _, c := range []struct {
		name     string
		trusted  bool
		clientIP string // Caddy's client_ip var, set by trusted_proxies
		tls      bool
		remote   string
		want     forwarded
		scheme   string
	}{
		{"untrusted", false, "", false, "192.0.2.7:1234", forwarded{xff: "192.0.2.7", proto: "http", host: "site.test", client: "192.0.2.7", port: "1234"}, "http"},
		{"untrusted tls", false, "", true, "192.0.2.7:1234", forwarded{xff: "192.0.2.7", proto: "https", host: "site.test", client: "192.0.2.7", port: "1234"}, "https"},
		{"trusted", true, "6.6.6.6", false, "192.0.2.7:1234", forwarded{xff: "6.6.6.6, 192.0.2.7", proto: "https", host: "evil.example", client: "6.6.6.6", port: "1234"}, "https"},
		{"untrusted, no peer ip", false, "", false, "@", forwarded{omit: true, client: "@"}, "http"},
	} {
		r := httptest.NewRequest("GET", "http://site.test/", nil)
		r.RemoteAddr = c.remote
		if c.tls {
			r.TLS = &tls.ConnectionState{}
		}
		r.Header.Set("X-Forwarded-For", "6.6.6.6")
		r.Header.Set("X-Forwarded-Proto", "https")
		r.Header.Set("X-Forwarded-Host", "evil.example")
		vars := map[string]any{caddyhttp.TrustedProxyVarKey: c.trusted}
		if c.clientIP != "" {
			vars[caddyhttp.ClientIPVarKey] = c.clientIP
		}
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars))
		got := forwardedHeaders(r)
		if got != c.want || got.scheme() != c.scheme {
			t.Errorf("%s: got %+v (scheme %s), want %+v (scheme %s)", c.name, got, got.scheme(), c.want, c.scheme)
		}
	}
}
