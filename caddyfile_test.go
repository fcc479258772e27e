package caddysnake

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`python {
		module_wsgi "main:app"
		venv ./venv
		working_dir /srv/app
		threads 8
		max_wait 2s
		lifespan off
	}`)
	var p Python
	if err := p.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := Python{ModuleWSGI: "main:app", Venv: "./venv", WorkingDir: "/srv/app", Threads: 8,
		MaxWait: caddy.Duration(2 * time.Second), Lifespan: "off"}
	if p.ModuleWSGI != want.ModuleWSGI || p.Venv != want.Venv || p.WorkingDir != want.WorkingDir ||
		p.Threads != want.Threads || p.MaxWait != want.MaxWait || p.Lifespan != want.Lifespan {
		t.Fatalf("got %+v, want %+v", p, want)
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ input, wantErr string }{
		{`python { module_wsgi main:app
			frobnicate 1
		}`, `unrecognized subdirective "frobnicate"`},
		{`python { venv ./v
		}`, "one of module_wsgi or module_asgi is required"},
		{`python {
			module_wsgi a:app
			module_asgi b:app
		}`, "mutually exclusive"},
		{`python { module_wsgi main:app
			threads abc
		}`, "threads must be a positive integer"},
		{`python { module_wsgi main:app
			threads 0
		}`, "threads must be a positive integer"},
		{`python { module_wsgi
		}`, "module_wsgi needs a value"},
		{`python { module_wsgi a:app b:app
		}`, "module_wsgi takes one value"},
		{`python main:app`, "unexpected argument"},
		{`python { module_wsgi "main:app"
			lifespan maybe
		}`, "lifespan must be on, off or auto"},
		{`python { module_wsgi "main:app"
			max_wait soon
		}`, "max_wait must be a duration"},
		{`python { module_wsgi "bad module:app"
		}`, "invalid app"},
		{`python { module_wsgi "main:"
		}`, "invalid app"},
		{`python { module_wsgi "main:app"
			root_path blog
		}`, "root_path must be a clean absolute path"},
		{`python { module_wsgi "main:app"
			root_path /blog/
		}`, "root_path must be a clean absolute path"},
	} {
		var p Python
		err := p.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%q: got error %v, want one containing %q", tc.input, err, tc.wantErr)
		}
	}
}

func TestJSONConfig(t *testing.T) {
	var p Python
	raw := `{"handler":"python","module_wsgi":"main:app","working_dir":"/srv","venv":"/v","threads":3,"max_wait":"1s"}`
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		t.Fatal(err)
	}
	if p.ModuleWSGI != "main:app" || p.WorkingDir != "/srv" || p.Venv != "/v" || p.Threads != 3 ||
		time.Duration(p.MaxWait) != time.Second {
		t.Fatalf("got %+v", p)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestCheckSpec(t *testing.T) {
	for spec, ok := range map[string]bool{
		"main:app": true, "pkg.mod:app": true, "main": true, "pkg.mod:create_app()": true,
		"main:app.wsgi": true, "": false, ":app": false, "main:": false, ".main:app": false,
		"a b:app": false, "dir/main:app": false,
	} {
		if err := checkSpec(spec); (err == nil) != ok {
			t.Errorf("checkSpec(%q) = %v, want ok=%v", spec, err, ok)
		}
	}
}

func TestUnmarshalCaddyfileASGI(t *testing.T) {
	d := caddyfile.NewTestDispenser(`python {
		module_asgi "main:app"
		lifespan on
		lifespan_timeout 5s
		loop asyncio
	}`)
	var p Python
	if err := p.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if p.ModuleASGI != "main:app" || p.Lifespan != "on" || p.Loop != "asyncio" ||
		time.Duration(p.LifespanTimeout) != 5*time.Second {
		t.Fatalf("got %+v", p)
	}
	for _, bad := range []string{"loop tokio", "lifespan_timeout forever", "lifespan_timeout 0s"} {
		d := caddyfile.NewTestDispenser("python {\nmodule_asgi main:app\n" + bad + "\n}")
		var p Python
		if err := p.UnmarshalCaddyfile(d); err == nil {
			t.Errorf("%q: expected an error", bad)
		}
	}
}
