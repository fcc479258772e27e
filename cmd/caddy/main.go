// Command caddy is Caddy's standard distribution plus the caddysnake plugin:
// what `xcaddy build --with github.com/caddysnake/caddysnake` produces, built
// from this checkout with plain `go build` so `make build` needs no xcaddy.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/caddysnake/caddysnake"
)

func main() {
	caddycmd.Main()
}
