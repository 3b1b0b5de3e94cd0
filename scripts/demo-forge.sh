# scripts/demo-forge.sh — sourced by scripts/demo when BERTH_DEMO_FORGE=gitea:
# the config repo lives on a local Gitea (built from the Go module proxy
# into the cache the first time, ~11 CPU-minutes, as the tests build it),
# and the agent puts each deploy's result on the commit as a status, which
# the demo prints after each release.

# forge_start RUN: starts Gitea on loopback with SQLite, an admin, a token
# and a public repo "berth/config"; sets FORGE_URL, FORGE_TOKEN_FILE,
# FORGE_REPO_URL (anonymous clone) and FORGE_PUSH_URL, and gitea_pid.
forge_start() {
	local run=$1 bin port dir ini
	ensure_packages jq=jq
	bin="$(cache_dir)/gitea-$(module_stamp internal/testenv/giteabin)"
	if [ ! -x "$bin" ]; then
		log "building Gitea into $bin (first time only, ~11 CPU-minutes)"
		BG_OUT=$bin internal/testenv/giteabin/build.sh && mv "$bin.tmp" "$bin"
	fi
	port=$(free_port)
	dir=$run/gitea
	mkdir -p "$dir"
	ini=$dir/app.ini
	cat >"$ini" <<EOF
RUN_USER = $(id -un)
WORK_PATH = $dir
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true
[server]
HTTP_ADDR = 127.0.0.1
HTTP_PORT = $port
ROOT_URL = http://127.0.0.1:$port/
DISABLE_SSH = true
OFFLINE_MODE = true
LFS_START_SERVER = false
STATIC_ROOT_PATH = $bin-src
APP_DATA_PATH = $dir/data
[database]
DB_TYPE = sqlite3
PATH = $dir/gitea.db
[repository]
ROOT = $dir/repos
DEFAULT_BRANCH = main
[security]
INSTALL_LOCK = true
[service]
DISABLE_REGISTRATION = true
[session]
PROVIDER = memory
[cache]
ADAPTER = memory
[mailer]
ENABLED = false
[actions]
ENABLED = false
[log]
MODE = file
ROOT_PATH = $dir/log
EOF
	# A clean environment: Gitea runs `git config --global` in its HOME,
	# and an inherited GIT_CONFIG_GLOBAL would make git write there.
	local g=(env -i PATH="$PATH" HOME="$dir" GITEA_WORK_DIR="$dir" GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT=true "$bin" --config "$ini")
	"${g[@]}" migrate >/dev/null 2>&1
	"${g[@]}" admin user create --admin --username berth --password "demo-$RANDOM$RANDOM" --email berth@example.org --must-change-password=false >/dev/null 2>&1
	# The demo's own token (it makes the repo and pushes), and the agent's:
	# commit statuses only.
	local admin
	admin=$("${g[@]}" admin user generate-access-token --username berth --token-name setup --scopes all --raw)
	FORGE_TOKEN_FILE=$run/forge-token
	(umask 077 && "${g[@]}" admin user generate-access-token --username berth --token-name berth-status --scopes write:repository --raw >"$FORGE_TOKEN_FILE")
	"${g[@]}" web >"$dir/web.log" 2>&1 &
	gitea_pid=$!
	FORGE_URL=http://127.0.0.1:$port
	wait_for "Gitea" 60 curl -sf "$FORGE_URL/api/v1/version"
	curl -sf -H "Authorization: token $admin" -H 'Content-Type: application/json' \
		-d '{"name":"config","default_branch":"main"}' "$FORGE_URL/api/v1/user/repos" >/dev/null
	FORGE_REPO_URL=$FORGE_URL/berth/config.git
	FORGE_PUSH_URL=http://berth:$admin@127.0.0.1:$port/berth/config.git
	echo "Gitea: $FORGE_URL/berth/config (the config repo; its commits carry berth's statuses)"
}

# forge_status COMMIT: prints the commit's statuses as Gitea's API has them.
forge_status() {
	echo "statuses of ${1:0:12} on Gitea:"
	curl -sf "$FORGE_URL/api/v1/repos/berth/config/commits/$1/statuses" |
		jq -r '.[] | "  \(.context)  \(.status)  \(.description)"'
}

# forge_wait_status COMMIT STATE: waits for the demo env's status to be STATE.
forge_wait_status() {
	wait_for "the status $2 on ${1:0:12}" 60 sh -c \
		"curl -sf '$FORGE_URL/api/v1/repos/berth/config/commits/$1/statuses' | jq -e '.[0].status == \"$2\"' >/dev/null"
}
