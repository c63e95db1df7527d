package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// newFlagSet returns a flag set for a command whose errors and help go to stderr.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("tokengate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tokengate %s [flags]\n\n%s\n\nFlags (each also read from its environment variable):\n", name, synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(stderr, "  --%s, $%s%s\n      %s\n", f.Name, envName(f.Name), def, f.Usage)
		})
	}
	return fs
}

// envName is the environment variable that sets a flag: TOKENGATE_ and the flag name in
// upper case with '-' as '_'.
func envName(flagName string) string {
	return "TOKENGATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses args, then fills every flag that the command line did not set from
// its environment variable (the command line wins). It returns a usage error, naming
// the flag or variable, or flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string, lookup func(string) (string, bool)) error {
	return parseFlagsArgs(fs, args, lookup, 0)
}

// parseFlagsArgs is parseFlags for a command that takes up to maxArgs arguments after
// its flags.
func parseFlagsArgs(fs *flag.FlagSet, args []string, lookup func(string) (string, bool), maxArgs int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		// The flag package has printed the error and the usage already.
		return reported{err}
	}
	if fs.NArg() > maxArgs {
		return fmt.Errorf("unexpected argument %q", fs.Arg(maxArgs))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		v, ok := lookup(envName(f.Name))
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("$%s: invalid value %q: %v", envName(f.Name), v, err))
		}
	})
	return errors.Join(errs...)
}

// parseOrExit wraps parseFlags for a command's run function: it reports a usage error
// on stderr and says which exit code to return, if any.
func parseOrExit(fs *flag.FlagSet, args []string, stderr io.Writer) (int, bool) {
	return parseOrExitArgs(fs, args, stderr, 0)
}

// parseOrExitArgs is parseOrExit for a command that takes up to maxArgs arguments.
func parseOrExitArgs(fs *flag.FlagSet, args []string, stderr io.Writer, maxArgs int) (int, bool) {
	err := parseFlagsArgs(fs, args, os.LookupEnv, maxArgs)
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		return exitOK, true
	default:
		if !errors.As(err, new(reported)) {
			fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		}
		return exitUsage, true
	}
}

// reported is an error that has been shown to the user already.
type reported struct{ error }

func (r reported) Unwrap() error { return r.error }
