// Package joined takes apart errors built with errors.Join, so that a validator can
// report, rename or count each problem of a configuration on its own.
package joined

// Flatten returns the errors that err joins, recursively, in order: each is not itself
// a join. A nil err gives none; an error that joins nothing is returned alone.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, Flatten(e)...)
	}
	return out
}
