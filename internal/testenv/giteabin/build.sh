#!/usr/bin/env bash
# internal/testenv/giteabin/build.sh CACHE_DIR — builds the Gitea server the
# forge tests run (internal/testenv/gitea.go) into CACHE_DIR/gitea-VERSION,
# its source (templates, locales: STATIC_ROOT_PATH) into
# CACHE_DIR/gitea-src-VERSION. Gitea's go.mod has replace lines, so
# `go install` refuses it: download the module, copy it out of the
# read-only module cache and build inside it. ~11 CPU-minutes, 159 MB.
set -euo pipefail
cache=${1:?cache dir}
v=v1.27.3 # keep in step with testenv.GiteaVersion
bin=$cache/gitea-$v
src=$cache/gitea-src-$v
[ -x "$bin" ] && [ -d "$src/templates" ] && exit 0
mkdir -p "$cache"
dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "code.gitea.io/gitea@$v" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "go mod download printed no Dir" >&2; exit 1; }
tmp=$(mktemp -d "$cache/gitea-src-$v.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp -r "$dir/." "$tmp/"
chmod -R u+w "$tmp"
(cd "$tmp" && go build -trimpath -ldflags "-s -w -X main.Version=${v#v}" -o gitea .)
mv "$tmp/gitea" "$bin.tmp"
rm -rf "$src"
mv "$tmp" "$src"
trap - EXIT
mv "$bin.tmp" "$bin"
