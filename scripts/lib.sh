# Shared helpers for the scripts in this folder. Source it; it defines
# functions only.

# need_debian_tool COMMAND PACKAGE: make COMMAND available, installing the
# Debian PACKAGE when we are root and it is missing; otherwise say what to do.
need_debian_tool() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian package $2 (for $1)" >&2
    apt_updated_once
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >&2
    command -v "$1" >/dev/null 2>&1 && return 0
  fi
  echo "missing $1: install the Debian package $2 (apt-get install $2)" >&2
  return 1
}

apt_updated_once() {
  [ -n "${_APT_UPDATED:-}" ] && return 0
  apt-get update -qq >&2 || true
  _APT_UPDATED=1
}

# python_fixups DIR: grpc_python_plugin writes absolute imports
# ("from varwatch.v1 import bridge_pb2"); inside our package the stubs live
# under varwatch._proto, so make them relative to their folder.
python_fixups() {
  local f
  for f in "$1"/varwatch/v1/*_grpc.py; do
    [ -f "$f" ] || continue
    sed -i 's/^from varwatch\.v1 import bridge_pb2 as/from . import bridge_pb2 as/' "$f"
  done
}

# GRPCURL_VERSION is the grpcurl the README's commands are tested with.
GRPCURL_VERSION=v1.9.3

# need_grpcurl: make grpcurl available in $(go env GOPATH)/bin (from the Go
# module proxy), where internal/cli's TestReadmeGrpcurl looks for it.
need_grpcurl() {
  local bin
  bin="$(go env GOPATH)/bin/grpcurl"
  if [ -x "$bin" ] && "$bin" --version 2>&1 | grep -q "${GRPCURL_VERSION#v}"; then
    return 0
  fi
  echo "installing grpcurl $GRPCURL_VERSION (for the README's grpcurl commands)" >&2
  GOFLAGS=-mod=mod go install -ldflags "-X main.version=${GRPCURL_VERSION}" \
    "github.com/fullstorydev/grpcurl/cmd/grpcurl@${GRPCURL_VERSION}" >&2
}
