package caddysnake

import (
	"fmt"
	"net/http"
	"net/url"
	pathpkg "path"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// target is the request target as the app sees it, in both protocols: WSGI
// SCRIPT_NAME / PATH_INFO / QUERY_STRING / REQUEST_URI and ASGI root_path /
// path / query_string / raw_path.
type target struct {
	script string // the prefix handle_path or `uri strip_prefix` removed (decoded)
	path   string // the rest of the path (decoded)
	query  string // raw, without "?"
	uri    string // the request target as the client sent it
	orig   *url.URL
}

// requestTarget reads the target once per request (one context lookup:
// Caddy's rewrites change r.URL and r.RequestURI, and keep the original in
// the context). root is the handler's root_path: "" to take a prefix that
// handle_path stripped for the mount point (splitScriptName), else the
// mount point itself (mountedAt).
func requestTarget(r *http.Request, root string) target {
	t := target{path: r.URL.Path, query: r.URL.RawQuery, uri: r.RequestURI}
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		t.orig = orig.URL
		if orig.RequestURI != "" {
			t.uri = orig.RequestURI
		}
		if root == "" {
			t.script, t.path = splitScriptName(orig.URL.Path, t.path)
		}
	}
	if root != "" {
		t.script, t.path = mountedAt(root, t.path, t.orig == nil || t.orig.Path == t.path)
	}
	if strings.IndexByte(t.uri, '#') >= 0 {
		t.dropFragment()
	}
	if t.path == "" && t.script == "" {
		// A target with no path (absolute-form "http://host", a CONNECT's
		// authority) means "/" (RFC 9110 §4.2.3), as reverse_proxy sends
		// it on; an app told "" would redirect to add the slash.
		t.path = "/"
	}
	t.query = escapeNonASCII(t.query)
	return t
}

// escapeNonASCII percent-encodes the bytes of a query string that are not
// ASCII. Go accepts them raw in the request target, where RFC 9112 allows
// none (behind Caddy, gunicorn and uvicorn answer 400); an app decoding the
// query as UTF-8 (Werkzeug, Starlette) would fail on an invalid byte with a
// 500. Encoded, the query means what it meant (the ASGI spec has query_string
// percent-encoded), as Go encodes such bytes in the path it hands on.
func escapeNonASCII(q string) string {
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] >= 0x80 {
			n++
		}
	}
	if n == 0 {
		return q
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(q)+2*n)
	for i := 0; i < len(q); i++ {
		if c := q[i]; c >= 0x80 {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

// splitScriptName returns (SCRIPT_NAME, PATH_INFO) from the original and the
// current path. When handle_path or `uri strip_prefix` removed a prefix, the
// original path ends with the current one and the removed prefix is
// SCRIPT_NAME, so url_for() and friends keep generating prefixed URLs.
// Caddy strips the prefix from a cleaned path: for "/app/a/%2e%2e/b",
// "/app//x" or "/app/./x" handle_path leaves "/b", "/x", "/x", and what
// precedes them in the original path ("/app/a/..", "/app/", "/app/.") is
// not where the app is mounted (url_for would build "/app/a/../static" or
// "/app//static"); the cleaned original path says "/app". CGI's
// SCRIPT_NAME has no dot segments and no trailing "/".
func splitScriptName(orig, path string) (string, string) {
	script, ok := prefixOf(orig, path)
	if ok && isCleanScript(script) {
		return script, path // the usual case
	}
	if s, ok := prefixOf(cleanPath(orig), path); ok && isCleanScript(s) {
		return s, path
	}
	return "", path
}

// mountedAt returns (SCRIPT_NAME, PATH_INFO) for an app mounted at root
// (the root_path option: "/" for none, else a clean path without a trailing
// "/"). A path that no handler rewrote (unstripped) and that lies under root
// loses that prefix, as gunicorn strips its SCRIPT_NAME; a rewritten one is
// taken as stripped already (handle_path), as uvicorn takes its --root-path:
// so "/blog/blog/x" under `handle_path /blog/*` is "/blog" + "/blog/x".
func mountedAt(root, path string, unstripped bool) (string, string) {
	if root == "/" {
		return "", path
	}
	if unstripped && strings.HasPrefix(path, root) && (len(path) == len(root) || path[len(root)] == '/') {
		return root, path[len(root):]
	}
	return root, path
}

// checkRootPath validates the root_path option.
func checkRootPath(root string) error {
	if root == "" || root[0] != '/' || (root != "/" && pathpkg.Clean(root) != root) || strings.ContainsAny(root, "?#") {
		return fmt.Errorf("python: root_path must be a clean absolute path such as /blog (no trailing slash; / for none), not %q", root)
	}
	return nil
}

// prefixOf returns what precedes path in orig, if orig ends with it.
func prefixOf(orig, path string) (string, bool) {
	if len(orig) > len(path) && strings.HasSuffix(orig, path) && (path == "" || path[0] == '/') {
		return orig[:len(orig)-len(path)], true
	}
	return "", false
}

// isCleanScript: absolute, no dot segments, no "//", no trailing "/"
// (path.Clean returns a clean path as it is, without allocating). Not ".",
// which is what cleaning an empty path gives.
func isCleanScript(s string) bool {
	return len(s) > 1 && s[0] == '/' && pathpkg.Clean(s) == s
}

// cleanPath is path.Clean keeping a trailing slash.
func cleanPath(p string) string {
	c := pathpkg.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// dropFragment removes a "#fragment" the client sent in the target. RFC 9112
// allows none there, but gunicorn and uvicorn accept one and drop it, while
// Go leaves it in the path ("/f#x" is the path "/f#x") or in the query
// ("?a#x"). Only a literal '#' starts one: an encoded %23 is part of the path.
func (t *target) dropFragment() {
	i := strings.IndexByte(t.uri, '#')
	q := strings.IndexByte(t.uri, '?')
	if q >= 0 && q < i { // the fragment follows the query
		t.query, _, _ = strings.Cut(t.query, "#")
		return
	}
	// The fragment follows the path; Go put what follows a '?' in it into
	// the query (unless a rewrite set another), and the rest, decoded, at
	// the end of the path.
	raw := t.uri[i:]
	if q >= 0 {
		raw = t.uri[i:q]
		if t.query == t.uri[q+1:] {
			t.query = ""
		}
	}
	if frag, err := url.PathUnescape(raw); err == nil && strings.HasSuffix(t.path, frag) {
		t.path = t.path[:len(t.path)-len(frag)]
	}
}

// rawPath is the path as the client sent it (still percent-encoded, prefix
// included), without the query string or a fragment.
func (t *target) rawPath(r *http.Request) string {
	if strings.HasPrefix(t.uri, "/") {
		if i := strings.IndexAny(t.uri, "?#"); i >= 0 {
			return t.uri[:i]
		}
		return t.uri
	}
	u := r.URL
	if t.orig != nil {
		u = t.orig
	}
	if p := u.EscapedPath(); p != "" {
		return p
	}
	return "/" // no path in the target: see requestTarget
}
