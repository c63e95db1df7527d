package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/tokengate/tokengate/policy"
	"github.com/tokengate/tokengate/sidecar"
	"github.com/tokengate/tokengate/sidecar/inject"
)

// logFlags are the logging flags every long-running command shares.
type logFlags struct{ level, format string }

// register adds the flags to fs, with level as the default log level.
func (l *logFlags) register(fs interface {
	StringVar(p *string, name, value, usage string)
}, level string) {
	fs.StringVar(&l.level, "log-level", level, "debug, info, warn or error")
	fs.StringVar(&l.format, "log-format", "auto", "json, text, or auto (text on a terminal, JSON otherwise)")
}

// logger builds the logger, or says which flag is wrong.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	format := l.format
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use json, text or auto", l.format)
}

func runSidecar(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("sidecar", "The reverse proxy: forwards only authorized requests to the upstream API, serves\n/metrics, /healthz and /readyz on the admin address, and reloads the configuration file\nwhen it changes. SIGTERM and SIGINT drain requests in flight, then exit 0.", stderr)
	config := fs.String("config", "", "the configuration file (required)")
	var o policy.Overrides
	fs.StringVar(&o.Listen, "listen", "", "override the file's listen address")
	fs.StringVar(&o.Admin, "admin", "", "override the file's admin address")
	fs.StringVar(&o.Upstream, "upstream", "", "override the file's upstream URL")
	checkOnly := fs.Bool("check-config", false, "validate the configuration file, load every issuer's keys, and exit (0 valid, 2 not)")
	offline := fs.Bool("offline", false, "with --check-config: validate the file only, without reaching the issuers")
	drain := fs.Duration("drain-timeout", sidecar.DefaultDrainTimeout, "how long requests in flight may finish after SIGTERM")
	profiling := fs.Bool("pprof", false, "serve Go's profiler under /debug/pprof/ on the admin address")
	upstreamTimeout := fs.Duration("upstream-timeout", sidecar.DefaultUpstreamTimeout, "how long to wait for the upstream's response headers before answering 504")
	var lf logFlags
	lf.register(fs, inject.DefaultSidecarLogLevel)
	if code, exit := parseOrExit(fs, args, stderr); exit {
		return code
	}
	if *config == "" {
		fmt.Fprintln(stderr, "tokengate sidecar: --config (or $TOKENGATE_CONFIG) is required")
		return exitUsage
	}
	log, err := lf.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tokengate sidecar: %v\n", err)
		return exitUsage
	}
	loaded, err := policy.LoadFile(*config, policy.ForProxy, o)
	if err != nil {
		fmt.Fprintf(stderr, "tokengate sidecar: the configuration is not valid:\n%s\n", indent(err.Error()))
		return exitUsage
	}
	if *checkOnly {
		if !*offline {
			// A file can be valid and still not work: an issuer with a trailing slash
			// that its discovery document does not have, a JWKS that cannot be
			// fetched. The sidecar would log it; --check-config says it.
			problems, err := configWorks(ctx, loaded.Gate)
			if err != nil {
				fmt.Fprintf(stderr, "tokengate sidecar: %v\n", err)
				return exitUsage
			}
			if len(problems) > 0 {
				fmt.Fprintf(stderr, "tokengate sidecar: the configuration is valid, but it does not work:\n%s\n(--offline checks the file alone)\n", indent(strings.Join(problems, "\n")))
				return exitUsage
			}
		}
		fmt.Fprintf(stdout, "%s: valid (%d issuers, %d routes, upstream %s)\n", *config, len(loaded.Gate.Issuers), len(loaded.Gate.Routes), loaded.Upstream)
		return exitOK
	}
	ver, _ := buildVersion()
	sc, err := sidecar.New(loaded, sidecar.Options{Logger: log, Version: ver, ConfigPath: *config, Overrides: o, DrainTimeout: *drain, Profiling: *profiling, UpstreamTimeout: *upstreamTimeout})
	if err != nil {
		log.Error("cannot start", "error", err)
		return exitFail
	}
	if err := sc.Run(ctx); err != nil {
		log.Error("sidecar failed", "error", err)
		return exitFail
	}
	return exitOK
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
