package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set at release time with -ldflags "-X main.version=v1.2.3"; otherwise it
// comes from the module version in the build information.
var version = ""

// buildVersion returns the version and the commit the binary was built from.
func buildVersion() (ver, commit string) {
	ver, commit = version, "unknown"
	info, ok := debug.ReadBuildInfo()
	if ver == "" {
		ver = "v0.0.0-dev"
		if ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
			ver = info.Main.Version
		}
	}
	if !ok {
		return ver, commit
	}
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && commit != "unknown" {
		commit += "-dirty"
	}
	return ver, commit
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "Prints the version, the commit and the Go version tokengate was built with.", stderr)
	if code, exit := parseOrExit(fs, args, stderr); exit {
		return code
	}
	ver, commit := buildVersion()
	fmt.Fprintf(stdout, "tokengate %s\ncommit: %s\ngo: %s\n", ver, commit, runtime.Version())
	return exitOK
}
