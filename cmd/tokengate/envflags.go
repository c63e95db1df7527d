package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// flagSet is a command's flag.FlagSet that also reads TOKENGATE_* environment
// variables, and remembers which flags they set so that messages about a value name
// the place it came from.
type flagSet struct {
	*flag.FlagSet
	fromEnv map[string]bool
}

// newFlagSet returns a flag set for a command whose errors and help go to stderr.
func newFlagSet(name, synopsis string, stderr io.Writer) *flagSet {
	fs := flag.NewFlagSet("tokengate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tokengate %s [flags]\n\n%s\n\nFlags (each also read from its environment variable; the command line wins):\n", name, synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(stderr, "  --%s, $%s%s\n      %s\n", f.Name, envName(f.Name), def, f.Usage)
		})
	}
	return &flagSet{FlagSet: fs, fromEnv: map[string]bool{}}
}

// envName is the environment variable that sets a flag: TOKENGATE_ and the flag name in
// upper case with '-' as '_'.
func envName(flagName string) string {
	return "TOKENGATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// ref names a flag in a message about its value: $TOKENGATE_NAME when the environment
// set it, --name otherwise.
func (fs *flagSet) ref(name string) string {
	if fs.fromEnv[name] {
		return "$" + envName(name)
	}
	return "--" + name
}

// parseFlags parses args, then fills every flag that the command line did not set from
// its environment variable (the command line wins). It returns a usage error, naming
// the flag or variable, or flag.ErrHelp.
func parseFlags(fs *flagSet, args []string, lookup func(string) (string, bool)) error {
	return parseFlagsArgs(fs, args, lookup, 0)
}

// parseFlagsArgs is parseFlags for a command that takes up to maxArgs arguments after
// its flags.
func parseFlagsArgs(fs *flagSet, args []string, lookup func(string) (string, bool), maxArgs int) error {
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
		fs.fromEnv[f.Name] = true
		if err := fs.Set(f.Name, v); err != nil {
			shown := v
			if r, ok := f.Value.(redacter); ok {
				shown = r.Redact(v)
			}
			errs = append(errs, fmt.Errorf("$%s: invalid value %q for --%s: %w", envName(f.Name), shown, f.Name, err))
		}
	})
	return errors.Join(errs...)
}

// redacter is a flag.Value whose values hold a secret. An error about its environment
// variable shows the value as Redact returns it: the environment, unlike the command
// line, is not on show in ps, and stderr often ends up in collected logs.
type redacter interface {
	Redact(value string) string
}

// parseOrExit wraps parseFlags for a command's run function: it reports a usage error
// on stderr and says which exit code to return, if any.
func parseOrExit(fs *flagSet, args []string, stderr io.Writer) (int, bool) {
	return parseOrExitArgs(fs, args, stderr, 0)
}

// parseOrExitArgs is parseOrExit for a command that takes up to maxArgs arguments.
func parseOrExitArgs(fs *flagSet, args []string, stderr io.Writer, maxArgs int) (int, bool) {
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
