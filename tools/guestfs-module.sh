#!/usr/bin/env bash
# Provides libguestfs's Go binding as a Go module. Debian ships it (golang-guestfs-dev) as a bare
# GOPATH folder without go.mod, and it is not on the module proxy, so go.mod replaces
# libguestfs.org/guestfs with ./.deps/guestfs, which this script fills from the installed package.
# Idempotent; rerun after a libguestfs upgrade.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
src=/usr/share/gocode/src/libguestfs.org/guestfs
dst=$top/.deps/guestfs
if [ ! -f "$src/guestfs.go" ]; then
  echo "guestfs-module: $src/guestfs.go missing: run tools/install-deps.sh (package golang-guestfs-dev)" >&2
  exit 1
fi
mkdir -p "$dst"
if ! cmp -s "$src/guestfs.go" "$dst/guestfs.go"; then
  cp "$src"/*.go "$dst"/
fi
printf 'module libguestfs.org/guestfs\n\ngo 1.18\n' > "$dst/go.mod.tmp"
if ! cmp -s "$dst/go.mod.tmp" "$dst/go.mod" 2>/dev/null; then mv "$dst/go.mod.tmp" "$dst/go.mod"; else rm "$dst/go.mod.tmp"; fi
