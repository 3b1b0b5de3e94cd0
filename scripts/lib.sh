# shellcheck shell=bash
# Shared by scripts/test, scripts/demo and scripts/bench-*: packages, caches
# and a private Docker engine. Source it; it defines functions only.

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ensure_go puts Go on PATH and checks its version (berth needs Go 1.26).
ensure_go() {
	if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
		export PATH="/usr/local/go/bin:$PATH"
	fi
	command -v go >/dev/null 2>&1 || die "Go 1.26 is required (https://go.dev/dl/); none on PATH"
	local v
	v=$(go env GOVERSION)
	case "$v" in
	go1.2[6-9]* | go1.[3-9][0-9]*) ;;
	*) die "Go 1.26 or newer is required, found $v" ;;
	esac
}

# ensure_packages installs, quietly and only when missing, the Debian
# packages that provide the given commands. Arguments: command=package ...
ensure_packages() {
	local need=() pair
	for pair in "$@"; do
		command -v "${pair%%=*}" >/dev/null 2>&1 || need+=("${pair#*=}")
	done
	[ ${#need[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "missing ${need[*]}: run as root (or install them) first"
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# cache_dir prints (and creates) the directory built binaries are kept in
# between runs; internal/testenv reads the same BERTH_CACHE_DIR.
cache_dir() {
	local d=${BERTH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}
	mkdir -p "$d"
	printf '%s\n' "$d"
}

# module_stamp prints a short hash of a wrapper module's go.mod and go.sum,
# so a cached binary is rebuilt exactly when its pins change.
module_stamp() {
	cat "$1/go.mod" "$1/go.sum" $([ -f "$1/build.sh" ] && echo "$1/build.sh") | sha256sum | cut -c1-12
}

# docker_reachable succeeds when DOCKER_HOST (or the default socket) answers.
docker_reachable() {
	timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# start_private_dockerd DIR starts dockerd with all its state under DIR and
# exports DOCKER_HOST. Stop it with stop_private_dockerd DIR.
start_private_dockerd() {
	local dir=$1
	mkdir -p "$dir"
	[ "$(id -u)" -eq 0 ] || die "no Docker engine reachable, and starting a private one needs root"
	log "starting a private Docker engine in $dir"
	dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/docker.pid" \
		--host "unix://$dir/docker.sock" >"$dir/dockerd.log" 2>&1 &
	export DOCKER_HOST="unix://$dir/docker.sock"
	local i
	for i in $(seq 1 150); do
		docker_reachable && return 0
		if ! kill -0 "$!" 2>/dev/null; then
			tail -n 30 "$dir/dockerd.log" >&2
			die "dockerd exited during startup (log above)"
		fi
		sleep 0.2
	done
	tail -n 30 "$dir/dockerd.log" >&2
	die "dockerd not ready after 30 s (log above)"
}

stop_private_dockerd() {
	local dir=$1 pid i
	[ -f "$dir/docker.pid" ] || return 0
	pid=$(cat "$dir/docker.pid")
	kill "$pid" 2>/dev/null || return 0
	for i in $(seq 1 150); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	kill -9 "$pid" 2>/dev/null || true
	# dockerd unmounts its layers on a clean stop; anything left is unmounted
	# before the state is removed.
	grep -o " $dir/[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	rm -rf "$dir"
}

# setup_registry_testapp_docker RUN builds (or reuses) the test registry
# binary, builds the test app, and starts a private Docker engine under RUN
# when none is reachable (then BERTH_OWN_DOCKER=1: stop it with
# stop_private_dockerd "$RUN/docker"). Exports what internal/testenv reads.
setup_registry_testapp_docker() {
	local run=$1 cache mod
	cache=$(cache_dir)
	export BERTH_CACHE_DIR=$cache
	mod=internal/testenv/registrybin
	export BERTH_REGISTRY_BIN="$cache/registry-$(module_stamp $mod)"
	if [ ! -x "$BERTH_REGISTRY_BIN" ]; then
		log "building the test registry (cold cache: ~3 min)"
		(cd "$mod" && go build -trimpath -gcflags=all=-dwarf=false -ldflags "-s -w" -o "$BERTH_REGISTRY_BIN.tmp" \
			github.com/distribution/distribution/v3/cmd/registry)
		mv "$BERTH_REGISTRY_BIN.tmp" "$BERTH_REGISTRY_BIN"
	fi
	# The test images' program: static, packed FROM scratch by internal/testenv.
	log "building the test app"
	export BERTH_TESTAPP_BIN="$run/testapp"
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BERTH_TESTAPP_BIN" ./internal/testenv/testapp
	if ! docker_reachable; then
		start_private_dockerd "$run/docker"
		export BERTH_OWN_DOCKER=1
	fi
}

# Services built from the Go module proxy in the background (Vault, Gitea,
# the cosign and sops CLIs …). A cold machine spends most of its first test
# run building them, so they build one after another in one background queue
# while the tests that need none of them run; the tests that do need one
# carry its name in their own (TestVault_…, TestE2E_…Gitea…) and, on a cold
# run, scripts/test runs them once it is built.
#
# bg_build NAME OUT CMD... queues CMD, which must write the binary to
# "$OUT.tmp" (CMD sees it as $BG_OUT), unless OUT exists already. It exports
# BERTH_<NAME>_BIN=OUT and, when queued, BERTH_<NAME>_BUILD_STATUS, a file
# that will hold "ok" or why the build failed: internal/testenv's WaitBuilt
# reads both. bg_build_start RUN starts the queue (logs in RUN); BG_QUEUED
# lists the names queued, bg_build_pid the queue's process group.
BG_QUEUED=()
BG_CMDS=()
bg_build() {
	local name=$1 out=$2 var
	shift 2
	var=$(printf '%s' "$name" | tr '[:lower:]-' '[:upper:]_')
	export "BERTH_${var}_BIN=$out"
	[ -x "$out" ] && return 0
	BG_QUEUED+=("$name")
	BG_CMDS+=("$(printf '%q ' "$name" "$out" "$@")")
}

bg_build_start() {
	local run=$1 name var
	bg_build_pid=""
	[ ${#BG_QUEUED[@]} -eq 0 ] && return 0
	for name in "${BG_QUEUED[@]}"; do
		var=$(printf '%s' "$name" | tr '[:lower:]-' '[:upper:]_')
		export "BERTH_${var}_BUILD_STATUS=$run/$name-build.status"
	done
	log "building in the background, one after another: ${BG_QUEUED[*]} (tests needing one run once it is built)"
	printf '%s\n' "${BG_CMDS[@]}" >"$run/bg-queue"
	setsid bash -c '
		run=$1
		while read -r line; do
			eval "set -- $line"
			name=$1 out=$2; shift 2
			status="$run/$name-build.status"
			start=$(date +%s)
			echo "$(date +%T) $name: building" >>"$run/bg-progress"
			if BG_OUT="$out" "$@" >"$run/$name-build.log" 2>&1 && [ -x "$out.tmp" ] && mv "$out.tmp" "$out"; then
				echo ok >"$status"
				echo "$(date +%T) $name: built in $(( $(date +%s) - start )) s" >>"$run/bg-progress"
			else
				{ echo "building $name failed:"; tail -n 20 "$run/$name-build.log"; } >"$status"
				echo "$(date +%T) $name: FAILED after $(( $(date +%s) - start )) s" >>"$run/bg-progress"
			fi
		done <"$run/bg-queue"' _ "$run" &
	bg_build_pid=$!
}

# bg_build_wait RUN [NAME] waits for NAME's build (or the whole queue),
# printing the queue's progress.
bg_build_wait() {
	local run=$1 name=${2:-}
	[ -n "${bg_build_pid:-}" ] || return 0
	while kill -0 "$bg_build_pid" 2>/dev/null && ! [ -n "$name" -a -s "$run/$name-build.status" ]; do
		bg_build_progress "$run"
		sleep 5
	done
	bg_build_progress "$run"
	if [ -n "$name" ] && ! [ -s "$run/$name-build.status" ]; then
		# The queue died before it got to NAME: its tests fail at once
		# (testenv.WaitBuilt) instead of waiting out their deadline.
		echo "the background build queue exited before it built $name" >"$run/$name-build.status"
	fi
	kill -0 "$bg_build_pid" 2>/dev/null || bg_build_pid=""
}

# bg_build_progress RUN logs the queue's progress lines not logged yet.
bg_build_progress() {
	local n
	n=$(wc -l <"$1/bg-progress" 2>/dev/null || echo 0)
	if [ "$n" -gt "${bg_shown:-0}" ]; then
		sed -n "$((${bg_shown:-0} + 1)),${n}p" "$1/bg-progress" | while read -r l; do log "background build: $l"; done
		bg_shown=$n
	fi
}
