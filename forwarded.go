package caddysnake

import (
	"net"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// forwarded is what an app behind Caddy's reverse_proxy reads in the
// X-Forwarded-For, -Proto and -Host request headers. Apps moved from
// Caddy→gunicorn/uvicorn keep trusting them (Django's SECURE_PROXY_SSL_HEADER
// and USE_X_FORWARDED_HOST, Werkzeug's ProxyFix), so they must mean here
// what they meant there: a client's own values count only when the server's
// trusted_proxies vouch for it; otherwise they are replaced by what Caddy
// saw. omit means none is sent (an untrusted peer without an IP). An empty
// host (an HTTP/1.0 client that sent no Host) is not sent either: Django's
// USE_X_FORWARDED_HOST would take "" as the host and answer 400, where
// without the header it falls back to SERVER_NAME.
type forwarded struct {
	xff, proto, host string
	omit             bool
	// The client as REMOTE_ADDR / REMOTE_PORT and the scope's client say
	// it: Caddy's client IP (which honours the server's trusted_proxies)
	// and the connection's port. Found here, with the same one look at the
	// request's vars and one split of RemoteAddr.
	client, port string
}

// forwardedHeaders follows reverse_proxy's addForwardedHeaders (Caddy
// v2.11), minus its per-handler trusted_proxies.
func forwardedHeaders(r *http.Request) forwarded {
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	trusted, _ := vars[caddyhttp.TrustedProxyVarKey].(bool)
	ip, port, err := net.SplitHostPort(r.RemoteAddr)
	f := forwarded{client: ip, port: port}
	if err != nil {
		f.client, f.port = r.RemoteAddr, ""
	}
	if v, ok := vars[caddyhttp.ClientIPVarKey].(string); ok && v != "" {
		f.client = v
	}
	if err != nil && !trusted {
		f.omit = true
		return f
	}
	ip, _, _ = strings.Cut(ip, "%") // an IPv6 zone
	f.xff, f.proto, f.host = ip, "http", r.Host
	if r.TLS != nil {
		f.proto = "https"
	}
	if !trusted {
		return f
	}
	if prior := strings.Join(r.Header["X-Forwarded-For"], ", "); prior != "" {
		f.xff = prior
		if ip != "" {
			f.xff += ", " + ip
		}
	}
	if v := lastValue(r.Header["X-Forwarded-Proto"]); v != "" {
		f.proto = v
	}
	if v := lastValue(r.Header["X-Forwarded-Host"]); v != "" {
		f.host = v
	}
	return f
}

func lastValue(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// scheme is the URL scheme the client used: a trusted proxy's word, or
// whether this connection is TLS (what gunicorn and uvicorn derive from
// X-Forwarded-Proto behind Caddy).
func (f forwarded) scheme() string {
	if f.proto == "https" {
		return "https"
	}
	return "http"
}

// isForwardedHeader reports the request headers forwardedHeaders replaces.
func isForwardedHeader(k string) bool {
	return k == "X-Forwarded-For" || k == "X-Forwarded-Proto" || k == "X-Forwarded-Host"
}
