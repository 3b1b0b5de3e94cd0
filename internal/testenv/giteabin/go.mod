// Gitea for the forge tests (internal/testenv/gitea.go), built by build.sh
// from the Go module proxy. Not a module berth builds: it only pins the
// version, so that changing it changes the cached binary's name
// (gitea-STAMP, as scripts/lib.sh module_stamp computes it).
module berth.dev/berth/internal/testenv/giteabin

go 1.26

// gitea: code.gitea.io/gitea v1.27.3
