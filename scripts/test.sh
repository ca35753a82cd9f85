#!/usr/bin/env bash
# Runs every check and test varwatch has. This is the README's test command
# and what CI runs (.ci/run). It installs what it needs that a fresh clone
# lacks (Debian protoc and friends, chromium, pinned Go generators) and builds what the
# tests use (example Wasm plugins).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

step() { printf '\n==> %s\n' "$*"; }

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'; git ls-files --others --exclude-standard '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet ./...

step "generated code is fresh"
scripts/genproto.sh --check

if [ -x scripts/build-plugins.sh ]; then
  step "build example plugins"
  scripts/build-plugins.sh
fi

step "tools the tests use"
need_grpcurl

# The web console's tests drive a real headless browser (httpapi,
# chromedp); without one they skip, saying so.
step "chromium for the console's browser tests"
need_debian_tool chromium chromium || echo "no chromium: the browser tests will skip" >&2

step "go test -race"
go test -race -count=1 ./...

# The harness is its own module (etcd stays out of the main go.mod; NATS
# is in both, since cluster/ runs on it): vet it, unit-test its verifier,
# and run every scenario once in a tiny mode, peers included, so it cannot
# rot. The first run downloads and compiles etcd.
step "benchmarks module: vet and smoke test"
(cd benchmarks && go vet ./... && go test -count=1 ./...)

if [ -x scripts/test-python.sh ]; then
  step "python client tests"
  scripts/test-python.sh
fi

step "all tests passed"
