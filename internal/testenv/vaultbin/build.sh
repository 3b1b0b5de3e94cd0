#!/usr/bin/env bash
# internal/testenv/vaultbin/build.sh — builds the Vault server the tests run
# into "$BG_OUT.tmp" (scripts/lib.sh bg_build moves it to $BG_OUT), and the
# two plugins the tests use beyond its minimal build into "$BG_OUT-plugins".
#
# Vault's `minimal` build tag leaves out the storage backends but raft and
# inmem, the cloud auth methods and the database plugins, and keeps kv,
# transit, approle and the database secrets engine: what berth's tests use,
# but for the AWS auth method and the Redis database plugin. Those two are
# built as Vault's external plugins (their own mains, as Vault ships them),
# named as the tests mount them ("aws", "redis-database-plugin");
# testenv.StartVault passes the directory as -dev-plugin-dir, which
# registers each file under its name. DWARF is neither made nor linked:
# nothing debugs these binaries. Less than half the full build's CPU time
# (docs/testing.md).
set -euo pipefail
out=${BG_OUT:?BG_OUT: the binary to build}
cd "$(dirname "${BASH_SOURCE[0]}")"
flags=(-trimpath -gcflags=all=-dwarf=false -ldflags "-s -w")
tmp=$(mktemp -d "$out-plugins.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
go build "${flags[@]}" -o "$tmp/aws" github.com/hashicorp/vault/builtin/credential/aws/cmd/aws
go build "${flags[@]}" -o "$tmp/redis-database-plugin" github.com/hashicorp/vault-plugin-database-redis/cmd/vault-plugin-database-redis
go build "${flags[@]}" -tags minimal -o "$out.tmp" github.com/hashicorp/vault
rm -rf "$out-plugins"
mv -T "$tmp" "$out-plugins"
trap - EXIT
