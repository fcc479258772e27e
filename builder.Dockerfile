# Builds a caddy binary with caddysnake for a given Python version.
#
#   docker build -f builder.Dockerfile --build-arg PY_VERSION=3.12 -t caddysnake-builder .
#   docker run --rm -v "$PWD:/output" caddysnake-builder
#
# The binary links against that image's libpython: run it on a system with the
# same Python version installed at the same prefix (the python:<ver> images use
# /usr/local), or in an image derived from python:<ver>.
ARG PY_VERSION=3.12
ARG GO_VERSION=1.25

FROM golang:${GO_VERSION}-bookworm AS go

FROM python:${PY_VERSION}-bookworm
COPY --from=go /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:/root/go/bin:$PATH
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make build PYTHON=python${PY_VERSION}
CMD ["cp", "/src/caddy", "/output/caddy"]
