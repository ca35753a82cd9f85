#!/usr/bin/env bash
# Builds every example filter plugin from source into .cache/plugins/
# (git-ignored): Go examples with the wasip1 reactor build mode, C examples
# with clang, WAT examples with wat2wasm. Installs clang/lld/wabt through apt
# when they are missing and we are root.
#
#   scripts/build-plugins.sh [OUT_DIR]
#
# The plugin tests (go test ./plugins/...) build the same examples
# themselves into the same folder, so running this first is optional; it is
# the way to get the .wasm files for `varwatch serve --filter name=path`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

out=${1:-.cache/plugins}
mkdir -p "$out"

for dir in plugins/examples/*/; do
  name=$(basename "$dir")
  if ls "$dir"*.go >/dev/null 2>&1; then
    GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$out/$name.wasm" "./$dir"
  elif ls "$dir"*.c >/dev/null 2>&1; then
    need_debian_tool clang clang
    need_debian_tool wasm-ld lld
    clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -o "$out/$name.wasm" "$dir"*.c
  elif ls "$dir"*.wat >/dev/null 2>&1; then
    need_debian_tool wat2wasm wabt
    wat2wasm "$dir"*.wat -o "$out/$name.wasm"
  else
    echo "skipping $dir: no .go, .c or .wat source" >&2
    continue
  fi
  echo "$out/$name.wasm"
done
