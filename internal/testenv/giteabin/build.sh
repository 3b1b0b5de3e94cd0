#!/usr/bin/env bash
# internal/testenv/giteabin/build.sh — builds the Gitea server the forge
# tests run into "$BG_OUT.tmp" (scripts/lib.sh bg_build moves it to
# $BG_OUT), and its source next to it as "$BG_OUT-src" (templates and
# locales: Gitea's STATIC_ROOT_PATH; testenv.StartGitea reads it there).
# Gitea's go.mod has replace lines, so `go install` refuses it: download the
# module, copy it out of the read-only module cache and build inside it.
# ~11 CPU-minutes, a 159 MB binary. The version is go.mod's comment line.
set -euo pipefail
out=${BG_OUT:?BG_OUT: the binary to build}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
v=$(sed -n 's|^// gitea: code.gitea.io/gitea \(v[0-9.]*\)$|\1|p' "$here/go.mod")
[ -n "$v" ] || { echo "no gitea version in $here/go.mod" >&2; exit 1; }
dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "code.gitea.io/gitea@$v" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "go mod download printed no Dir" >&2; exit 1; }
tmp=$(mktemp -d "$out-src.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp -r "$dir/." "$tmp/"
chmod -R u+w "$tmp"
(cd "$tmp" && go build -trimpath -gcflags=all=-dwarf=false -ldflags "-s -w -X main.Version=${v#v}" -o gitea .)
mv "$tmp/gitea" "$out.tmp"
rm -rf "$out-src"
mv "$tmp" "$out-src"
trap - EXIT
