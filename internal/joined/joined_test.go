package joined_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/tokengate/tokengate/internal/joined"
)

func TestFlatten(t *testing.T) {
	a, b, c := errors.New("a"), errors.New("b"), errors.New("c")
	wrapped := fmt.Errorf("context: %w", c)
	for _, tc := range []struct {
		name string
		err  error
		want []error
	}{
		{"nil", nil, nil},
		{"one error", a, []error{a}},
		{"a wrapped error stays whole", wrapped, []error{wrapped}},
		{"a join", errors.Join(a, b), []error{a, b}},
		{"joins inside joins, in order", errors.Join(a, errors.Join(b, errors.Join(wrapped))), []error{a, b, wrapped}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := joined.Flatten(tc.err); !slices.Equal(got, tc.want) {
				t.Fatalf("Flatten = %v, want %v", got, tc.want)
			}
		})
	}
}
