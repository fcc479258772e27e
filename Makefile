# caddysnake — build, run and test.
#
#   make build   ./caddy with this plugin, linked against $(PYTHON)
#   make run     build, then serve Caddyfile.example (the seed's Flask app)
#   make test    build, then every test: Go tests and pytest end-to-end
#   make bench   build, then the benchmark suite (bench/README.md)
#
# PYTHON picks the CPython to embed (default: python3 on PATH), e.g.
#   make build PYTHON=python3.12
# Everything else is derived from it: cgo flags from its python3-embed
# pkg-config file, an rpath to its libpython, and the venvs are made with it.

PYTHON  ?= python3
GO      ?= go
VENV    ?= .venv
RUN_VENV ?= build/run-venv

# Resolve the interpreter to an absolute path once (pyenv shims included).
PY      := $(shell $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null)
PY_LIBDIR := $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))' 2>/dev/null)
PY_PCDIR  := $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_config_var("LIBPC") or "")' 2>/dev/null)

export CGO_ENABLED := 1
export PKG_CONFIG_PATH := $(PY_PCDIR)$(if $(PKG_CONFIG_PATH),:$(PKG_CONFIG_PATH))
# Find libpython at run time without LD_LIBRARY_PATH (pyenv/custom prefixes).
export CGO_LDFLAGS := -Wl,-rpath,$(PY_LIBDIR) $(CGO_LDFLAGS)

GO_SOURCES := $(wildcard *.go *.c *.h caddysnake_py/*.py cmd/caddy/*.go) go.mod go.sum

.PHONY: build run test test-go test-py bench xcaddy check-python clean

build: caddy

# Installs pkg-config and the Python dev files from Debian when they are
# missing and the chosen Python is the system one (other Pythons ship theirs).
check-python:
	@test -n "$(PY)" || { echo "error: PYTHON=$(PYTHON) is not a working Python interpreter" >&2; exit 1; }
	@if ! command -v pkg-config >/dev/null || ! pkg-config --exists python3-embed; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "installing pkg-config and Python dev files with apt-get"; \
	    apt-get update -qq && apt-get install -y -qq pkg-config python3-dev python3-venv >/dev/null; \
	  fi; \
	fi
	@pkg-config --exists python3-embed || { \
	  echo "error: no python3-embed pkg-config file for $(PY) (looked in $(PY_PCDIR)); install that Python's dev files (Debian: python3-dev)" >&2; exit 1; }

caddy: check-python $(GO_SOURCES)
	$(GO) mod download
	$(GO) build -trimpath -o caddy ./cmd/caddy
	@echo "built ./caddy (Python $$(pkg-config --modversion python3-embed) from $(PY))"

# A venv for the example app, made with the same Python the binary embeds.
$(RUN_VENV)/.done: requirements-example.txt
	$(PY) -m venv $(RUN_VENV)
	$(RUN_VENV)/bin/pip install -q -r requirements-example.txt
	touch $@

run: build $(RUN_VENV)/.done
	./caddy run --config Caddyfile.example --adapter caddyfile

$(VENV)/.done: tests/requirements.txt
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r tests/requirements.txt
	touch $@

test: build $(VENV)/.done test-go test-py

test-go: check-python
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

test-py: build $(VENV)/.done
	CADDY_BIN=$(CURDIR)/caddy CADDYSNAKE_VENV=$(CURDIR)/$(VENV) \
	  $(VENV)/bin/python -m pytest tests -v -rs

# The way Caddy users build plugins: xcaddy (installed if missing) with this
# checkout as a local replacement; writes build/xcaddy/caddy.
xcaddy: check-python
	command -v xcaddy >/dev/null || $(GO) install github.com/caddyserver/xcaddy/cmd/xcaddy@latest
	mkdir -p build/xcaddy
	cd build/xcaddy && PATH="$$PATH:$$($(GO) env GOPATH)/bin" \
	  xcaddy build --with github.com/caddysnake/caddysnake@v0.0.0=$(CURDIR)
	build/xcaddy/caddy list-modules | grep -q http.handlers.python

# Load test against Caddy respond, Caddy->gunicorn/uvicorn and Granian
# (~12 min; bench/run --quick for ~3). Prints ratios, writes bench/results/.
bench: build
	CADDY_BIN=$(CURDIR)/caddy PYTHON=$(PY) bench/run

clean:
	rm -rf caddy build $(VENV)
