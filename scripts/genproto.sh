#!/usr/bin/env bash
# Regenerates the code generated from proto/ (Go, and the Python client's
# stubs), with pinned generators and Debian's protoc.
#
#   scripts/genproto.sh          regenerate in place
#   scripts/genproto.sh --check  fail if the committed code is stale
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.0

. scripts/lib.sh
need_debian_tool protoc protobuf-compiler
need_debian_tool grpc_python_plugin protobuf-compiler-grpc

bin="$PWD/.cache/bin"
mkdir -p "$bin"
install_go_tool() { # name module version
  local stamp="$bin/$1.$3"
  if [ ! -x "$bin/$1" ] || [ ! -f "$stamp" ]; then
    GOBIN="$bin" go install "$2@$3"
    rm -f "$bin/$1".v* && touch "$stamp"
  fi
}
install_go_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install_go_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

out=proto
pyout=clients/python/varwatch/_proto
if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  out="$tmp/go"
  pyout="$tmp/py"
fi
mkdir -p "$out" "$pyout"

PATH="$bin:$PATH" protoc -I proto \
  --go_out="$out" --go_opt=paths=source_relative \
  --go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
  proto/varwatch/v1/*.proto

# Python stubs live inside the package as varwatch._proto.varwatch.v1.
protoc -I proto \
  --python_out="$pyout" --pyi_out="$pyout" \
  --grpc_python_out="$pyout" --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
  proto/varwatch/v1/*.proto
python_fixups "$pyout"

if [ "${1:-}" = "--check" ]; then
  stale=0
  diff -r -q "$out/varwatch" proto/varwatch -x '*.proto' || stale=1
  diff -r -q "$pyout/varwatch" clients/python/varwatch/_proto/varwatch -x '__pycache__' -x '__init__.py' || stale=1
  if [ "$stale" = 1 ]; then
    echo "generated code is stale: run scripts/genproto.sh and commit the result" >&2
    exit 1
  fi
  echo "generated code is fresh"
fi
