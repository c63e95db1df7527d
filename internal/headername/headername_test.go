package headername

import "testing"

func TestKey(t *testing.T) {
	for _, name := range []string{"X-Auth-Subject", "x-auth-subject", "X_Auth_Subject", "X-AUTH_SUBJECT", "x_auth_subject"} {
		if got := Key(name); got != "x-auth-subject" {
			t.Errorf("Key(%q) = %q", name, got)
		}
	}
	if Key("X-Auth-Subjects") == Key("X-Auth-Subject") {
		t.Error("different names compare equal")
	}
}
