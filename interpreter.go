package caddysnake

// #cgo pkg-config: python3-embed
// #cgo LDFLAGS: -ldl
// #include <stdlib.h>
// #include "caddysnake.h"
import "C"

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// The Python half of the bridge ships inside the binary: the files are
// executed as modules at start-up, so nothing needs to be pip-installed.
//
//go:embed caddysnake_py/*.py
var pyFiles embed.FS

// pyModules lists the embedded modules in load order (each may import only
// the ones before it).
var pyModules = []struct {
	name, file string
	pkg        bool
}{
	{"caddysnake_py", "__init__.py", true},
	{"caddysnake_py.logs", "logs.py", false},
	{"caddysnake_py.loader", "loader.py", false},
	{"caddysnake_py.wsgi", "wsgi.py", false},
	{"caddysnake_py.asgi", "asgi.py", false},
}

var (
	interpOnce sync.Once
	interpErr  error
	// startDir is Caddy's working directory before any app changed it:
	// relative venv/working_dir paths always resolve against it, so a reload
	// resolves them the same way as the first load.
	startDir string
	// pyLogger receives everything Python logs: print(), wsgi.errors,
	// tracebacks.
	pyLogger = zap.NewNop()
)

// startInterpreter starts CPython once per process. It is never finalised:
// CPython cannot be safely re-initialised, so config reloads swap apps, not
// interpreters.
func startInterpreter() error {
	interpOnce.Do(func() {
		startDir, _ = os.Getwd()
		pyLogger = caddy.Log().Named("http.handlers.python")
		done := make(chan error)
		go func() {
			// Python's main thread state stays bound to this OS thread, which
			// is parked for good so no other goroutine ever runs on it.
			runtime.LockOSThread()
			done <- initPython()
			select {}
		}()
		interpErr = <-done
		if interpErr == nil {
			appCores.Store(int32(runtime.GOMAXPROCS(0)))
			tuneGC()
		}
	})
	return interpErr
}

// reserveInterpreterP gives Go's scheduler one more P than Caddy chose
// (GOMAXPROCS = CPUs) once the first WSGI app starts, unless the user set
// GOMAXPROCS.
//
// Why: the WSGI thread holding the GIL is CPU work the Go scheduler cannot
// see. It runs in C most of the time, so its P is taken over by HTTP
// goroutines, and each time it comes back into Go (a response callback, the
// end of a request, taking the next one) it has to wait for a P to come
// free; with GOMAXPROCS = CPUs that wait is on the request path of every
// request. One extra P covers it: only one Python thread runs at a time.
// Measured on 2 vCPUs (GOMAXPROCS 2 -> 3): raw WSGI hello +20% req/s, p99
// lower. The ASGI loop thread never enters Go while serving, so it needs no
// P, and an extra one only lets Go's threads crowd it: in an ASGI-only
// Caddy, GOMAXPROCS 2 measured raw ASGI +8–14% and FastAPI +0–7% over 3 at
// 10 connections (within noise at 100).
func reserveInterpreterP() {
	reserveOnce.Do(func() {
		if os.Getenv("GOMAXPROCS") != "" {
			return
		}
		n := runtime.GOMAXPROCS(0) + 1
		runtime.GOMAXPROCS(n)
		pyLogger.Info("GOMAXPROCS raised by one for the WSGI interpreter thread", zap.Int("gomaxprocs", n))
	})
}

var reserveOnce sync.Once

// appCores is GOMAXPROCS as Caddy set it (the CPUs it may use), before
// reserveInterpreterP added the interpreter's P; 0 until then.
var appCores atomic.Int32

func initPython() error {
	if msg := C.cs_init(); msg != nil {
		return errors.New(takeCString(msg))
	}
	build, run := C.GoString(C.cs_build_version()), C.GoString(C.cs_runtime_version())
	if minorVersion(build) != minorVersion(run) {
		return fmt.Errorf("python: built against Python %s but libpython %s was loaded; rebuild caddy for this Python", build, run)
	}
	for _, m := range pyModules {
		src, err := pyFiles.ReadFile("caddysnake_py/" + m.file)
		if err != nil {
			return err
		}
		if err := execModule(m.name, "caddysnake_py/"+m.file, src, m.pkg); err != nil {
			return err
		}
	}
	if msg := C.cs_bootstrap(); msg != nil {
		return fmt.Errorf("python: start-up failed:\n%s", takeCString(msg))
	}
	pyLogger.Info("embedded Python started", zap.String("version", run), zap.String("built_against", build))
	return nil
}

func execModule(name, file string, src []byte, pkg bool) error {
	cname, cfile, csrc := C.CString(name), C.CString(file), C.CString(string(src))
	defer C.free(unsafe.Pointer(cname))
	defer C.free(unsafe.Pointer(cfile))
	defer C.free(unsafe.Pointer(csrc))
	isPkg := C.int(0)
	if pkg {
		isPkg = 1
	}
	if msg := C.cs_exec_module(cname, cfile, csrc, C.size_t(len(src)), isPkg); msg != nil {
		return fmt.Errorf("python: loading embedded %s failed:\n%s", name, takeCString(msg))
	}
	return nil
}

// BuildPythonVersion is the Python version this binary was compiled against.
func BuildPythonVersion() string { return C.GoString(C.cs_build_version()) }

// minorVersion turns "3.11.7" into "3.11".
func minorVersion(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

// configLoads numbers Caddy's config loads for the app loader, which lets
// handlers of one config that share a working directory share its modules,
// and re-imports them all on a reload. Caddy provisions every module of one
// load with the same context, so a new Done channel means a new load.
var configLoads struct {
	sync.Mutex
	done <-chan struct{}
	n    uint64
}

func configLoad(ctx context.Context) uint64 {
	configLoads.Lock()
	defer configLoads.Unlock()
	if d := ctx.Done(); d == nil || d != configLoads.done {
		configLoads.done = d
		configLoads.n++
	}
	return configLoads.n
}

// pyApp is a reference to an imported app object, owned by Go and released
// exactly once with cs_release.
type pyApp struct{ obj C.cs_obj }

// loadApp imports spec with workingDir first on sys.path; kind "asgi" wraps
// the app in a caddysnake_py.asgi.Runner. Errors carry the Python traceback
// so `caddy run`/`caddy validate` show it.
func loadApp(spec, workingDir, venv, kind string, lifespan int, configLoad uint64) (*pyApp, error) {
	cspec, cwd, cvenv, ckind := C.CString(spec), C.CString(workingDir), C.CString(venv), C.CString(kind)
	defer C.free(unsafe.Pointer(cspec))
	defer C.free(unsafe.Pointer(cwd))
	defer C.free(unsafe.Pointer(cvenv))
	defer C.free(unsafe.Pointer(ckind))
	var cerr *C.char
	obj := C.cs_load_app(cspec, cwd, cvenv, ckind, C.int(lifespan), C.ulonglong(configLoad), &cerr)
	if obj == nil {
		return nil, fmt.Errorf("python: cannot load app %q:\n%s", spec, takeCString(cerr))
	}
	return &pyApp{obj: obj}, nil
}

// lifespan runs the Runner's "startup" or "shutdown", blocking until the app
// completes it or timeout passes.
func (a *pyApp) lifespan(phase string, timeout time.Duration) error {
	cphase := C.CString(phase)
	defer C.free(unsafe.Pointer(cphase))
	if msg := C.cs_asgi_lifespan(a.obj, cphase, C.double(timeout.Seconds())); msg != nil {
		return errors.New(takeCString(msg))
	}
	return nil
}

// releaseVia hands the reference to the event loop, which drops it after
// every event queued before (those borrow it).
func (a *pyApp) releaseVia(l *eventLoop) {
	l.release(a.obj)
	a.obj = nil
}

func (a *pyApp) release() {
	C.cs_release(a.obj)
	a.obj = nil
}

// absFromStart resolves a configured path against Caddy's start-up
// directory; "" stays "" (meaning: not set).
func absFromStart(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(startDir, p)
}

var chdirMu sync.Mutex

// enterWorkingDir returns the directory to put first on sys.path. An explicit
// working_dir also becomes the process's current directory (as gunicorn's
// --chdir does), so the app's relative paths work; it is process-wide, so two
// apps asking for different ones get a warning.
func enterWorkingDir(configured string, logger *zap.Logger) (string, error) {
	if configured == "" {
		return startDir, nil
	}
	dir := absFromStart(configured)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("python: working_dir %q is not a directory", configured)
	}
	chdirMu.Lock()
	defer chdirMu.Unlock()
	if cwd, _ := os.Getwd(); cwd != dir {
		if cwd != startDir {
			logger.Warn("working_dir changes the process-wide current directory that another app set",
				zap.String("from", cwd), zap.String("to", dir))
		}
		if err := os.Chdir(dir); err != nil {
			return "", fmt.Errorf("python: working_dir: %w", err)
		}
	}
	return dir, nil
}

// takeCString copies and frees a malloc'd C string handed over by the shim.
func takeCString(s *C.char) string {
	if s == nil {
		return ""
	}
	defer C.free(unsafe.Pointer(s))
	return C.GoString(s)
}
