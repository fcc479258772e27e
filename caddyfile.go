package caddysnake

import (
	"fmt"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("python", parseCaddyfile)
	// Like reverse_proxy, python is a terminal handler: ordering it just
	// before reverse_proxy lets it stand directly in a site block or in
	// handle/handle_path, after rewrites and header directives, as well as
	// inside route {} where the order is the written one.
	httpcaddyfile.RegisterDirectiveOrder("python", httpcaddyfile.Before, "reverse_proxy")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	p := new(Python)
	err := p.UnmarshalCaddyfile(h.Dispenser)
	return p, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	python {
//	    module_wsgi "pkg.mod:app"   # or module_asgi
//	    lifespan    on|off|auto
//	    venv        ./venv
//	    working_dir ./app
//	    root_path   /blog            # the mount point (default: a stripped prefix)
//	    threads     8                 # WSGI
//	    max_wait    30s               # WSGI
//	    loop        auto|asyncio|uvloop  # ASGI
//	    lifespan_timeout 60s          # ASGI
//	    ws_max_message_size 16MiB     # ASGI WebSockets
//	    ws_ping_interval 20s
//	    ws_ping_timeout 20s
//	    ws_compression on|off
//	}
func (p *Python) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.Errf("python: unexpected argument %q; use a block: python { module_wsgi \"main:app\" }", d.Val())
	}
	for d.NextBlock(0) {
		name := d.Val()
		if !d.NextArg() {
			return d.Errf("python: %s needs a value", name)
		}
		val := d.Val()
		if d.NextArg() {
			return d.Errf("python: %s takes one value, got extra %q", name, d.Val())
		}
		if err := p.setOption(name, val); err != nil {
			return d.Errf("%v", err)
		}
	}
	if err := p.check(); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

// setOption applies one subdirective; errors name the subdirective.
func (p *Python) setOption(name, val string) error {
	switch name {
	case "module_wsgi":
		p.ModuleWSGI = val
	case "module_asgi":
		p.ModuleASGI = val
	case "lifespan":
		if val != "on" && val != "off" && val != "auto" {
			return caddyfileErr("lifespan must be on, off or auto, not %q", val)
		}
		p.Lifespan = val
	case "venv":
		p.Venv = val
	case "working_dir":
		p.WorkingDir = val
	case "threads":
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 {
			return caddyfileErr("threads must be a positive integer, not %q", val)
		}
		p.Threads = n
	case "max_wait":
		dur, err := caddy.ParseDuration(val)
		if err != nil || dur < 0 {
			return caddyfileErr("max_wait must be a duration such as 30s, not %q", val)
		}
		p.MaxWait = caddy.Duration(dur)
	case "loop":
		if val != "auto" && val != "asyncio" && val != "uvloop" {
			return caddyfileErr("loop must be auto, asyncio or uvloop, not %q", val)
		}
		p.Loop = val
	case "lifespan_timeout":
		dur, err := caddy.ParseDuration(val)
		if err != nil || dur <= 0 {
			return caddyfileErr("lifespan_timeout must be a duration such as 60s, not %q", val)
		}
		p.LifespanTimeout = caddy.Duration(dur)
	case "ws_max_message_size":
		n, err := humanize.ParseBytes(val)
		if err != nil || n == 0 {
			return caddyfileErr("ws_max_message_size must be a size such as 4MiB, not %q", val)
		}
		p.WSMaxMessageSize = int64(n)
	case "ws_ping_interval":
		dur, err := caddy.ParseDuration(val)
		if err != nil || dur < 0 {
			return caddyfileErr("ws_ping_interval must be a duration such as 20s (0 turns pings off), not %q", val)
		}
		d := caddy.Duration(dur)
		p.WSPingInterval = &d
	case "ws_ping_timeout":
		dur, err := caddy.ParseDuration(val)
		if err != nil || dur <= 0 {
			return caddyfileErr("ws_ping_timeout must be a duration such as 20s, not %q", val)
		}
		p.WSPingTimeout = caddy.Duration(dur)
	case "root_path":
		if err := checkRootPath(val); err != nil {
			return err
		}
		p.RootPath = val
	case "ws_compression":
		if val != "on" && val != "off" {
			return caddyfileErr("ws_compression must be on or off, not %q", val)
		}
		p.WSCompression = val
	default:
		return caddyfileErr("unrecognized subdirective %q (known: module_wsgi, module_asgi, lifespan, lifespan_timeout, loop, venv, working_dir, root_path, threads, max_wait, ws_max_message_size, ws_ping_interval, ws_ping_timeout, ws_compression)", name)
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Python)(nil)

func caddyfileErr(format string, args ...any) error {
	return fmt.Errorf("python: "+format, args...)
}
