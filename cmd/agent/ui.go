package main

import (
	"context"
	"io"
	"strings"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/fleet"
	"berth.dev/berth/internal/cliflags"
	"berth.dev/berth/ui"
)

// defaultUIListen is where berth ui listens unless told.
const defaultUIListen = "127.0.0.1:7480"

// runUI is `berth ui`: the fleet's read-only status page, from etcd, for
// every env under the prefix (package ui).
func runUI(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cliflags.New("ui", "[--config FILE] [--listen ADDR] [--tls-cert FILE --tls-key FILE] [--basic-auth-file FILE] [--insecure-listen] [--env ENV]...", stderr)
	path := fs.String("config", agentconfig.DefaultPath, "an agent config, or a file with only a fleet: block")
	var o ui.ListenOptions
	fs.StringVar(&o.Addr, "listen", defaultUIListen, "address to listen on; beyond loopback it needs TLS, a basic-auth file or --insecure-listen")
	fs.StringVar(&o.TLSCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	fs.StringVar(&o.TLSKey, "tls-key", "", "and this key (PEM)")
	fs.StringVar(&o.BasicAuthFile, "basic-auth-file", "", "ask for a login: user:bcrypt-hash lines (htpasswd -nbB)")
	fs.BoolVar(&o.InsecureListen, "insecure-listen", false, "allow a plain, open listener beyond loopback")
	var only cliflags.List
	fs.Var(&only, "env", "only this env (repeat for several; default: every env under the prefix)")
	level := logLevel{hclog.Info}
	fs.Var(&level, "log-level", "trace, debug, info, warn or error")
	if code, ok := cliflags.ParseArgs(fs, args, 0, 0, ""); !ok {
		return code
	}
	if err := o.Check(); err != nil {
		return cliflags.UsageError(fs, "%v", err)
	}
	fc, err := agentconfig.LoadFleet(*path)
	if err != nil {
		return failed(stderr, "ui", err, exitConfig)
	}
	log := newLogger(stderr, level.Level)
	c, err := fleet.New(*fc, fleet.Options{Log: log})
	if err != nil {
		return failed(stderr, "ui", err, exitConfig)
	}
	defer c.Close()
	s := &ui.Server{Fleet: &ui.Fleet{Reader: &fleet.Overviews{Client: c}, Envs: only, Only: len(only) > 0}, Log: log.Named("ui")}
	err = ui.ServeFleet(ctx, s, o, log, func(addr string) {
		scheme := "http"
		if o.TLSCert != "" {
			scheme = "https"
		}
		log.Info("berth ui listening", "url", scheme+"://"+addr+"/", "etcd", strings.Join(fc.Etcd.Endpoints, ","), "prefix", fc.Prefix)
	})
	if err != nil {
		log.Error("berth ui", "error", err)
		return exitFailure
	}
	return exitOK
}
