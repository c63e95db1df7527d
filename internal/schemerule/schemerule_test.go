package schemerule

import (
	"net/url"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for raw, want := range map[string]string{
		"https://as.example.com": "",
		"http://127.0.0.1:8080":  "",
		"http://127.9.9.9":       "",
		"http://[::1]:80":        "",
		"http://LocalHost:1":     "",
		"http://as.example.com":  "plain http to a host that is not loopback",
		"http://128.0.0.1":       "plain http to a host that is not loopback",
		"ftp://as.example.com":   "scheme must be https",
		"HTTPS://as.example.com": "", // url.Parse lowers the scheme
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		err = Check(raw, u, false)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("Check(%q) = %v, want %q", raw, err, want)
		}
	}
	u, _ := url.Parse("http://as.example.com")
	if err := Check("http://as.example.com", u, true); err != nil {
		t.Errorf("with insecureHTTP: %v", err)
	}
}
