package middleware

import (
	"net/http"
	"reflect"
	"testing"
)

// dropUpgrade removes every ask to switch protocols (Upgrade, an h2c upgrade's
// HTTP2-Settings, and their names in Connection) and nothing else: the request goes on
// as the plain request it also is, with its other Connection options.
func TestDropUpgrade(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in, out http.Header
	}{
		{"h2c",
			http.Header{"Connection": {"Upgrade, HTTP2-Settings"}, "Upgrade": {"h2c"}, "Http2-Settings": {"AAMAAABk"}, "Accept": {"*/*"}},
			http.Header{"Accept": {"*/*"}}},
		{"HTTP2-Settings without Upgrade",
			http.Header{"Connection": {"HTTP2-Settings"}, "Http2-Settings": {"AAMAAABk"}},
			http.Header{}},
		{"other Connection options kept",
			http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}},
			http.Header{"Connection": {"keep-alive"}}},
		{"any case, empty items, several lines",
			http.Header{"Connection": {"UPGRADE, , close", "http2-settings,x-hop"}, "Upgrade": {"websocket"}},
			http.Header{"Connection": {"close, x-hop"}}},
		{"Upgrade without Connection",
			http.Header{"Upgrade": {"websocket"}},
			http.Header{}},
		{"no switch asked: left as it is",
			http.Header{"Connection": {"keep-alive, Upgrade"}, "Accept": {"*/*"}},
			http.Header{"Connection": {"keep-alive, Upgrade"}, "Accept": {"*/*"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.in.Clone()
			dropUpgrade(h)
			if !reflect.DeepEqual(h, tc.out) {
				t.Fatalf("%v became %v, want %v", tc.in, h, tc.out)
			}
		})
	}
}
