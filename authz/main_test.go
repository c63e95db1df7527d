package authz_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts (servers, key refreshes, gRPC connections) has ended
// by the time the package's tests are done.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
