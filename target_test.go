package caddysnake

import (
	"bufio"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
)

// served parses a raw request target as Go's server does and prepares the
// request as Caddy's server does (which records the original request), then
// applies handle_path's prefix strip when prefix is set.
func served(t *testing.T, rawTarget, prefix string) *http.Request {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + rawTarget + " HTTP/1.1\r\nHost: example.com\r\n\r\n")))
	if err != nil {
		t.Fatalf("%q: %v", rawTarget, err)
	}
	repl := caddy.NewReplacer()
	r = caddyhttp.PrepareRequest(r, repl, nil, nil)
	if prefix != "" {
		rewrite.Rewrite{StripPathPrefix: prefix}.Rewrite(r, repl)
	}
	return r
}

func TestRequestTarget(t *testing.T) {
	for _, tc := range []struct{ raw, prefix, script, path, query, rawPath string }{
		{"/plain?a=1", "", "", "/plain", "a=1", "/plain"},
		{"/api/users?x", "/api", "/api", "/users", "x", "/api/users"},
		{"/api/", "/api", "/api", "/", "", "/api/"},
		{"/a/b/c", "/a/b", "/a/b", "/c", "", "/a/b/c"},
		{"/x/caf%C3%A9", "/x", "/x", "/caf\xc3\xa9", "", "/x/caf%C3%A9"},
		// A fragment is dropped, as gunicorn and uvicorn do; %23 is not one.
		{"/f#frag", "", "", "/f", "", "/f"},
		{"/f?a=1#frag", "", "", "/f", "a=1", "/f"},
		{"/f#a?b", "", "", "/f", "", "/f"},
		{"/a%20b#c%20d", "", "", "/a b", "", "/a%20b"},
		{"/f%23x", "", "", "/f#x", "", "/f%23x"},
		{"/f%23x#y", "", "", "/f#x", "", "/f%23x"},
		{"/api/f#frag", "/api", "/api", "/f", "", "/api/f"},
		// Paths Caddy cleans before handle_path strips its prefix: SCRIPT_NAME
		// is the mount point, without dot segments or a trailing slash.
		{"/app/a/%2e%2e/b", "/app", "/app", "/b", "", "/app/a/%2e%2e/b"},
		{"/app//x", "/app", "/app", "/x", "", "/app//x"},
		{"/app/./x", "/app", "/app", "/x", "", "/app/./x"},
		{"/app/x/a/%2e%2e/b", "/app", "/app", "/x/b", "", "/app/x/a/%2e%2e/b"},
		{"/app/.well-known/x", "/app/.well-known", "/app/.well-known", "/x", "", "/app/.well-known/x"},
		// No path in an absolute-form target: "/", and no SCRIPT_NAME ".".
		{"http://example.com", "", "", "/", "", "/"},
		{"http://example.com?x=1", "", "", "/", "x=1", "/"},
		{"http://example.com/a?x=1", "", "", "/a", "x=1", "/a"},
		// Raw non-ASCII bytes in the query are percent-encoded, the rest kept.
		{"/q?b=\xc3\xa9&c=\xff&d=%C3%A9+x", "", "", "/q", "b=%C3%A9&c=%FF&d=%C3%A9+x", "/q"},
	} {
		r := served(t, tc.raw, tc.prefix)
		tg := requestTarget(r, "")
		if tg.script != tc.script || tg.path != tc.path || tg.query != tc.query || tg.uri != tc.raw {
			t.Errorf("%q (strip %q): got script %q path %q query %q uri %q; want %q %q %q %q",
				tc.raw, tc.prefix, tg.script, tg.path, tg.query, tg.uri, tc.script, tc.path, tc.query, tc.raw)
		}
		if p := tg.rawPath(r); p != tc.rawPath {
			t.Errorf("%q: raw path %q, want %q", tc.raw, p, tc.rawPath)
		}
	}
	// A CONNECT's authority-form target has no path either.
	r0, err := http.ReadRequest(bufio.NewReader(strings.NewReader("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	r0 = caddyhttp.PrepareRequest(r0, caddy.NewReplacer(), nil, nil)
	if tg := requestTarget(r0, ""); tg.script != "" || tg.path != "/" || tg.uri != "example.com:443" || tg.rawPath(r0) != "/" {
		t.Errorf("CONNECT: got script %q path %q uri %q raw path %q", tg.script, tg.path, tg.uri, tg.rawPath(r0))
	}
	// A rewrite that is not a prefix strip leaves SCRIPT_NAME empty.
	r := served(t, "/old", "")
	rewrite.Rewrite{URI: "/new"}.Rewrite(r, caddy.NewReplacer())
	if tg := requestTarget(r, ""); tg.script != "" || tg.path != "/new" {
		t.Errorf("rewrite: got (%q, %q)", tg.script, tg.path)
	}
}

// TestRootPath: the root_path option replaces the guess from a stripped
// prefix: a rewrite to "/" under root_path "/" keeps SCRIPT_NAME empty, a
// path nothing stripped loses the mount point, a stripped one keeps what is
// left (even when it starts with the mount point again).
func TestRootPath(t *testing.T) {
	for _, tc := range []struct{ raw, prefix, rewriteTo, root, script, path string }{
		{"/blog/", "", "/", "/", "", "/"},
		{"/a/b/", "", "/", "/", "", "/"},
		{"/blog/", "", "/", "", "/blog", "/"}, // the guess this option is for
		{"/api/users", "/api", "", "/", "", "/users"},
		{"/api/users", "", "", "/api", "/api", "/users"},
		{"/api", "", "", "/api", "/api", ""},
		{"/apix/users", "", "", "/api", "/api", "/apix/users"},
		{"/api/api/x", "/api", "", "/api", "/api", "/api/x"},
		{"/x/y", "/x", "", "/mnt/app", "/mnt/app", "/y"},
	} {
		r := served(t, tc.raw, tc.prefix)
		if tc.rewriteTo != "" {
			rewrite.Rewrite{URI: tc.rewriteTo}.Rewrite(r, caddy.NewReplacer())
		}
		if tg := requestTarget(r, tc.root); tg.script != tc.script || tg.path != tc.path {
			t.Errorf("%q (strip %q, rewrite %q, root_path %q): got (%q, %q), want (%q, %q)",
				tc.raw, tc.prefix, tc.rewriteTo, tc.root, tg.script, tg.path, tc.script, tc.path)
		}
	}
	for _, bad := range []string{"", "blog", "/blog/", "/a/../b", "/a//b", "/a?b"} {
		if checkRootPath(bad) == nil {
			t.Errorf("root_path %q accepted", bad)
		}
	}
}
