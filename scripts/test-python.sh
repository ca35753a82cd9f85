#!/usr/bin/env bash
# Runs the Python client's tests (clients/python/tests) against a real
# server, with Debian's system python3 and Debian's grpcio, protobuf, pytest
# (and numpy). Installs those packages when they are missing and we are
# root; otherwise says what is missing and fails: CI must fail, not skip.
#
#   scripts/test-python.sh [pytest args...]
#
# The tests build the server themselves (go build ./cmd/varwatch); set
# VARWATCH_BIN to use a built binary instead. Among them, test_install.py
# is the offline install recipe of clients/python/README.md "Install": a
# venv with --system-site-packages on this python3, pip install --no-index
# of the package, an import and one watch against a real server.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

PY=/usr/bin/python3
if [ ! -x "$PY" ]; then
  echo "missing $PY: the Python client tests run on Debian's system python3 (apt-get install python3)" >&2
  exit 1
fi

# need_python_module MODULE PACKAGE: make "import MODULE" work for $PY.
need_python_module() {
  "$PY" -c "import $1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian package $2 (for python module $1)" >&2
    apt_updated_once
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >&2 || true
    "$PY" -c "import $1" >/dev/null 2>&1 && return 0
  fi
  echo "missing python module $1 for $PY: install the Debian package $2 (apt-get install $2)" >&2
  return 1
}

missing=0
need_python_module grpc python3-grpcio || missing=1
need_python_module google.protobuf python3-protobuf || missing=1
need_python_module pytest python3-pytest || missing=1
# The TLS tests make their certificates with it.
need_python_module cryptography python3-cryptography || missing=1
# numpy is optional for the package, but the tests cover both tensor paths.
need_python_module numpy python3-numpy || missing=1
# tests/test_install.py runs the README's install recipe in a fresh venv.
need_python_module ensurepip python3-venv || missing=1
if [ "$missing" = 1 ]; then
  echo "cannot run the Python client tests (see above)" >&2
  exit 1
fi

"$PY" -c 'import grpc, google.protobuf, numpy; print("python", __import__("sys").version.split()[0], "grpcio", grpc.__version__, "protobuf", google.protobuf.__version__, "numpy", numpy.__version__)'

# -p no:cacheprovider: leave no .pytest_cache in the tree.
set +e
PYTHONPATH="$PWD/clients/python${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 \
  "$PY" -m pytest -p no:cacheprovider -q -rfE clients/python/tests "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
