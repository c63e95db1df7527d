package sidecar_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestResourceMetadataThroughTheSidecar: the sidecar serves the metadata itself on the
// traffic port, without a token and without asking the upstream, and its challenges
// point at it.
func TestResourceMetadataThroughTheSidecar(t *testing.T) {
	h := start(t, "resource: {identifier: \"https://orders.example.com/api\", name: Orders}\n")
	resp, body := h.do(t, "GET", "/.well-known/oauth-protected-resource/api", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"resource":"https://orders.example.com/api"`) || !strings.Contains(body, `"authorization_servers":["`+h.as.Issuer+`"]`) {
		t.Fatalf("metadata: %d %s", resp.StatusCode, body)
	}
	if h.up.Count() != 0 {
		t.Errorf("the upstream was asked for the metadata")
	}
	resp, _ = h.do(t, "GET", "/orders/1", "")
	if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="orders-api", resource_metadata="https://orders.example.com/.well-known/oauth-protected-resource/api", scope="orders:read"` {
		t.Errorf("challenge %q", got)
	}
	// A reload serves the new document at once.
	h.writeConfig(t, "resource: {identifier: \"https://orders.example.com/api\", name: Orders v2}\n")
	eventually(t, "the new metadata", func() bool {
		_, body := h.do(t, "GET", "/.well-known/oauth-protected-resource/api", "")
		return strings.Contains(body, `"resource_name":"Orders v2"`)
	})
}

// TestMCPStreamableHTTP: an MCP server's Streamable HTTP answers pass through as the
// server sends them: a Server-Sent Events response reaches the client event by event
// (the server sends its second event only once the client has read the first), and
// the Mcp-Session-Id header goes both ways untouched.
func TestMCPStreamableHTTP(t *testing.T) {
	release := make(chan struct{})
	var gotSession atomic.Value
	mcp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotSession.Store(r.Header.Get("Mcp-Session-Id"))
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Mcp-Session-Id", "session-7")
		fmt.Fprint(w, "event: message\ndata: {\"id\":1}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
			return // the client never read the first event: the sidecar buffered it
		}
		fmt.Fprint(w, "event: message\ndata: {\"id\":2}\n\n")
	}))
	t.Cleanup(mcp.Close)
	h := startWith(t, `
upstream: "`+mcp.URL+`"
realm: mcp
issuers:
  - issuer: %[1]q
    audiences: [%[3]q]
routes:
  - match: "POST /mcp"
    scopes: []
`, "")
	req, _ := http.NewRequest("POST", h.url+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	req.Header.Set("Authorization", "Bearer "+h.read())
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", "session-7")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Mcp-Session-Id") != "session-7" || gotSession.Load() != "session-7" {
		t.Fatalf("status %d, session header %q back, %v to the server", resp.StatusCode, resp.Header.Get("Mcp-Session-Id"), gotSession.Load())
	}
	rd := bufio.NewReader(resp.Body)
	first, err := rd.ReadString('\n')
	if err != nil || first != "event: message\n" {
		t.Fatalf("first event: %q %v", first, err)
	}
	close(release)
	rest, _ := io.ReadAll(rd)
	if !strings.Contains(string(rest), `data: {"id":2}`) {
		t.Errorf("the rest of the stream: %q", rest)
	}
}
