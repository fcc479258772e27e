// Package caddysnake is a Caddy HTTP handler that serves Python WSGI and ASGI
// apps from a CPython interpreter embedded in the Caddy process.
//
// Where a request goes:
//
//	ServeHTTP → serveWSGI (this file) → pool.submit (workers.go) → a worker goroutine locked
//	to an OS thread with its own Python thread state → cs_wsgi_handle (C, in
//	caddysnake.c) → caddysnake_py.wsgi.handle (Python) → the app; response
//	bytes come back through the cs_go_* callbacks (callbacks.go), which write
//	to the http.ResponseWriter while ServeHTTP waits.
package caddysnake

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Python{})
}

// Python serves one Python web app. Each configured handler imports its own
// instance of the app and owns a pool of interpreter threads; the interpreter
// itself is shared by the whole process and lives until it exits.
type Python struct {
	// ModuleWSGI names a WSGI callable as "package.module:attribute".
	ModuleWSGI string `json:"module_wsgi,omitempty"`
	// ModuleASGI names an ASGI application as "package.module:attribute".
	ModuleASGI string `json:"module_asgi,omitempty"`
	// Lifespan turns ASGI lifespan events "on" or "off" (default off), or
	// "auto": on, unless the app raises at startup without having answered
	// (it does not support lifespan), as uvicorn's default.
	Lifespan string `json:"lifespan,omitempty"`
	// Venv is a virtual environment whose site-packages are added to
	// sys.path (with .pth files honoured). Relative to Caddy's working dir.
	Venv string `json:"venv,omitempty"`
	// WorkingDir is put first on sys.path and becomes the process's current
	// directory when the app is imported. Defaults to Caddy's working dir.
	WorkingDir string `json:"working_dir,omitempty"`
	// Threads is the number of interpreter threads serving this app.
	Threads int `json:"threads,omitempty"`
	// MaxWait bounds how long a request waits for a free thread before
	// getting 503; zero waits as long as the client does.
	MaxWait caddy.Duration `json:"max_wait,omitempty"`
	// Loop picks the ASGI event loop: "auto" (uvloop when importable),
	// "asyncio" or "uvloop". The loop is process-wide.
	Loop string `json:"loop,omitempty"`
	// LifespanTimeout bounds lifespan startup and shutdown (default 60s).
	LifespanTimeout caddy.Duration `json:"lifespan_timeout,omitempty"`
	// WSMaxMessageSize is the largest WebSocket message accepted from a
	// client, in bytes (default 16 MiB, uvicorn's); a larger one closes with 1009.
	WSMaxMessageSize int64 `json:"ws_max_message_size,omitempty"`
	// WSPingInterval is how often idle WebSocket clients are pinged
	// (default 20s; 0 turns keep-alive pings off).
	WSPingInterval *caddy.Duration `json:"ws_ping_interval,omitempty"`
	// WSPingTimeout is how long a ping may go unanswered before the
	// connection is closed with 1011 (default 20s).
	WSPingTimeout caddy.Duration `json:"ws_ping_timeout,omitempty"`
	// WSCompression turns permessage-deflate "on" (default, when the client
	// asks for it) or "off".
	WSCompression string `json:"ws_compression,omitempty"`
	// RootPath is where the app is mounted (WSGI SCRIPT_NAME, ASGI
	// root_path), as gunicorn's SCRIPT_NAME and uvicorn's --root-path; "/"
	// for the site root. Unset, a prefix that handle_path or `uri
	// strip_prefix` removed is taken for it (requestTarget).
	RootPath string `json:"root_path,omitempty"`

	logger *zap.Logger
	pool   *pool // WSGI: the interpreter threads
	// ASGI: the Runner, the process's loop, and requests still being served.
	app      *pyApp
	loop     *eventLoop
	inflight *sync.WaitGroup
	// closing is closed by Cleanup: open WebSockets, which Caddy's graceful
	// shutdown does not track once upgraded, then close with 1001.
	closing chan struct{}
	// cut is closed by Cleanup when the process exits: HTTP requests still
	// running after Caddy's grace period end, so that lifespan shutdown runs.
	cut chan struct{}
}

// CaddyModule returns the Caddy module information.
func (Python) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.python",
		New: func() caddy.Module { return new(Python) },
	}
}

// defaultThreads sizes the pool for apps that mostly wait on I/O (databases,
// APIs) while the GIL serialises pure-Python work anyway.
func defaultThreads() int {
	cores := int(appCores.Load())
	if cores == 0 { // the interpreter is not started: nothing was added yet
		cores = runtime.GOMAXPROCS(0)
	}
	return max(4, 2*cores)
}

// check reports configuration errors; it runs before anything is imported so
// that a bad config never starts Python work.
func (p *Python) check() error {
	switch {
	case p.ModuleWSGI == "" && p.ModuleASGI == "":
		return errors.New("python: one of module_wsgi or module_asgi is required")
	case p.ModuleWSGI != "" && p.ModuleASGI != "":
		return errors.New("python: module_wsgi and module_asgi are mutually exclusive")
	case p.Loop != "" && p.Loop != "auto" && p.Loop != "asyncio" && p.Loop != "uvloop":
		return fmt.Errorf("python: loop must be auto, asyncio or uvloop, not %q", p.Loop)
	case p.LifespanTimeout < 0:
		return errors.New("python: lifespan_timeout must not be negative")
	case p.WSCompression != "" && p.WSCompression != "on" && p.WSCompression != "off":
		return fmt.Errorf("python: ws_compression must be on or off, not %q", p.WSCompression)
	case p.WSMaxMessageSize < 0 || p.WSPingTimeout < 0 || (p.WSPingInterval != nil && *p.WSPingInterval < 0):
		return errors.New("python: ws_max_message_size, ws_ping_interval and ws_ping_timeout must not be negative")
	case p.Lifespan != "" && p.Lifespan != "on" && p.Lifespan != "off" && p.Lifespan != "auto":
		return fmt.Errorf("python: lifespan must be on, off or auto, not %q", p.Lifespan)
	case p.Threads < 0:
		return fmt.Errorf("python: threads must be positive, not %d", p.Threads)
	case p.MaxWait < 0:
		return errors.New("python: max_wait must not be negative")
	case p.RootPath != "":
		if err := checkRootPath(p.RootPath); err != nil {
			return err
		}
	}
	return checkSpec(p.ModuleWSGI + p.ModuleASGI)
}

// checkSpec validates "module:attribute" syntax so typos fail with a clear
// message instead of an ImportError.
func checkSpec(spec string) error {
	mod, attr, _ := strings.Cut(spec, ":")
	if mod == "" || strings.ContainsAny(mod, " /\\") || strings.HasPrefix(mod, ".") ||
		strings.HasSuffix(mod, ".") || strings.Contains(spec, " ") || (strings.Contains(spec, ":") && attr == "") {
		return fmt.Errorf("python: invalid app %q: expected \"package.module:attribute\"", spec)
	}
	return nil
}

// Provision starts the interpreter (once per process) and imports the app:
// a WSGI app gets its thread pool, an ASGI app runs on the process's event
// loop (after lifespan startup, when enabled). On a config reload Caddy
// provisions the new handler while the old one still serves: the new one
// imports the app afresh.
func (p *Python) Provision(ctx caddy.Context) error {
	p.logger = ctx.Logger()
	if err := p.check(); err != nil {
		return err
	}
	if p.Threads == 0 {
		p.Threads = defaultThreads()
	}
	if err := startInterpreter(); err != nil {
		return err
	}
	workDir, err := enterWorkingDir(p.WorkingDir, p.logger)
	if err != nil {
		return err
	}
	if p.ModuleWSGI != "" {
		app, err := loadApp(p.ModuleWSGI, workDir, absFromStart(p.Venv), "wsgi", lifespanOff, configLoad(ctx))
		if err != nil {
			return err
		}
		p.pool = newPool(app, p.Threads, p.logger)
		p.pool.root = p.RootPath
		p.logger.Info("python WSGI app ready", zap.String("module_wsgi", p.ModuleWSGI), zap.Int("threads", p.Threads))
		return nil
	}
	return p.provisionASGI(workDir, configLoad(ctx))
}

func (p *Python) provisionASGI(workDir string, load uint64) error {
	app, err := loadApp(p.ModuleASGI, workDir, absFromStart(p.Venv), "asgi", p.lifespanMode(), load)
	if err != nil {
		return err
	}
	if p.Loop == "" {
		p.Loop = "auto"
	}
	if p.loop, err = startEventLoop(p.Loop); err != nil {
		app.release()
		return err
	}
	if p.lifespanMode() != lifespanOff {
		if err := app.lifespan("startup", p.lifespanTimeout()); err != nil {
			app.releaseVia(p.loop)
			return fmt.Errorf("python: lifespan startup of %q failed:\n%v", p.ModuleASGI, err)
		}
	}
	p.app, p.inflight, p.closing, p.cut = app, new(sync.WaitGroup), make(chan struct{}), make(chan struct{})
	p.logger.Info("python ASGI app ready", zap.String("module_asgi", p.ModuleASGI), zap.String("lifespan", p.Lifespan))
	return nil
}

// Lifespan modes as the driver's Runner takes them.
const (
	lifespanOff = iota
	lifespanOn
	lifespanAuto
)

func (p *Python) lifespanMode() int {
	switch p.Lifespan {
	case "on":
		return lifespanOn
	case "auto":
		return lifespanAuto
	}
	return lifespanOff
}

func (p *Python) lifespanTimeout() time.Duration {
	if p.LifespanTimeout > 0 {
		return time.Duration(p.LifespanTimeout)
	}
	return 60 * time.Second
}

// Validate checks the configuration (Caddy calls it after Provision).
func (p *Python) Validate() error {
	return p.check()
}

// Cleanup retires the app after Caddy stopped routing requests to this
// handler (on reload: the old config's handler). WSGI threads finish their
// current requests, then exit; an ASGI app gets lifespan shutdown once its
// requests are over, then is released.
//
// Caddy calls Cleanup synchronously, holding the reload (and the admin API)
// until it returns, and on a reload it does not wait for in-flight requests
// first: so on a reload the ASGI app retires in the background (an SSE
// stream may never end). When the process exits, Caddy has already waited
// for its grace period; requests still running are cut off, and lifespan
// shutdown runs before Cleanup returns.
func (p *Python) Cleanup() error {
	if p.pool != nil {
		p.pool.stop()
	}
	if p.app != nil && !isClosed(p.closing) {
		// p.app stays set: a request that entered ServeHTTP just before
		// still reads it (and is waited for).
		close(p.closing) // WebSockets say goodbye
		if caddy.Exiting() {
			close(p.cut)
			p.retire()
		} else {
			go p.retire()
		}
	}
	return nil
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// retire waits for the app's requests, runs lifespan shutdown and releases it.
func (p *Python) retire() {
	p.inflight.Wait()
	if p.lifespanMode() != lifespanOff { // the driver skips it if startup found none
		if err := p.app.lifespan("shutdown", p.lifespanTimeout()); err != nil {
			p.logger.Error("lifespan shutdown failed", zap.String("module_asgi", p.ModuleASGI), zap.Error(err))
		}
	}
	p.app.releaseVia(p.loop)
}

var errTwoContentTypes = errors.New("python: more than one Content-Type header in the request")

// ServeHTTP serves the request with the app; it returns once the response
// is complete.
func (p *Python) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	var err error
	if p.pool == nil {
		err = p.serveASGI(w, r)
	} else {
		err = p.serveWSGI(w, r)
	}
	if fullDuplex(r) {
		// Under enable_full_duplex Go's HTTP/1 server drains a body the
		// handler left unread only after the handler returned, past the
		// point where it stops its background read of the connection:
		// the wait for the next request then panics "invalid concurrent
		// Body.Read call" and the keep-alive connection is dropped
		// (golang/go#68560). Drained here (up to 256 KiB, as Go drains
		// it without full duplex), the read that starts is stopped as
		// usual. Not after a panic (the connection is dropped anyway).
		r.Body.Close()
	}
	return err
}

// fullDuplex says whether r is an HTTP/1 request with a body on a server
// with enable_full_duplex. Not one behind "Expect: 100-continue": its
// client may never send the body, and Go closes the connection then.
func fullDuplex(r *http.Request) bool {
	if r.ProtoMajor != 1 || !hasBody(r) || len(r.Header["Expect"]) > 0 {
		return false
	}
	srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return srv != nil && srv.EnableFullDuplex
}

// serveWSGI runs one request on a thread of the app's pool and returns
// once the response is written.
func (p *Python) serveWSGI(w http.ResponseWriter, r *http.Request) error {
	if len(r.Header["Content-Type"]) > 1 {
		// The environ has one CONTENT_TYPE, and which one the client meant
		// is a guess (RFC 9110 allows one; gunicorn answers 400). ASGI
		// apps get the headers as sent, as under uvicorn.
		return caddyhttp.Error(http.StatusBadRequest, errTwoContentTypes)
	}
	rq := newRequest(w, r)
	defer rq.release()
	rq.readAhead()
	switch err := p.pool.submit(rq, time.Duration(p.MaxWait)); {
	case err == errClientGone:
		// Go cancelled the request while it waited for a thread: its client
		// left, or half-closed after sending it. Logged as reverse_proxy
		// logs it; and a client that still reads gets that 499, not an
		// empty 200 that looks whole.
		w.WriteHeader(499)
		return nil
	case err != nil:
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	// The worker is free: what is left of the response is written here.
	rq.finishWrites()
	rq.cutShort()
	if rq.refused != nil {
		// The app's answer to a cut-off body was refused (start).
		return rq.refused
	}
	if rq.aborted {
		// The response had begun when the app failed: make the client see
		// truncation (connection closed / stream reset), not a short success.
		panic(http.ErrAbortHandler)
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Python)(nil)
	_ caddy.Validator             = (*Python)(nil)
	_ caddy.CleanerUpper          = (*Python)(nil)
	_ caddyhttp.MiddlewareHandler = (*Python)(nil)
)
