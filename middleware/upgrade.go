package middleware

import (
	"net/http"
	"strings"
)

// webSocketAllowed reports whether r is a WebSocket handshake (RFC 6455 §4.1: GET over
// HTTP/1.1, Connection naming upgrade, Upgrade exactly "websocket") and every route it
// matched allows WebSocket.
func (g *Gate) webSocketAllowed(r *http.Request, m *matched) bool {
	up := r.Header["Upgrade"]
	if len(up) != 1 || !strings.EqualFold(strings.TrimSpace(up[0]), "websocket") ||
		r.Method != http.MethodGet || r.ProtoMajor != 1 || r.ProtoMinor != 1 ||
		!hasToken(r.Header["Connection"], "upgrade") {
		return false
	}
	for rt := range m.routesSeq() {
		if !rt.WebSocket {
			return false
		}
	}
	return true
}

// dropUpgrade removes a request's ask to switch protocols: Upgrade, HTTP2-Settings (an
// h2c upgrade's) and their names in Connection. The request goes on as the plain
// request it also is, which RFC 9110 §7.8 lets a server do with an Upgrade it ignores.
func dropUpgrade(h http.Header) {
	if h["Upgrade"] == nil && h["Http2-Settings"] == nil {
		return
	}
	delete(h, "Upgrade")
	delete(h, "Http2-Settings")
	conn := h["Connection"]
	if conn == nil {
		return
	}
	var keep []string
	for _, v := range conn {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			if tok == "" || strings.EqualFold(tok, "upgrade") || strings.EqualFold(tok, "http2-settings") {
				continue
			}
			keep = append(keep, tok)
		}
	}
	if len(keep) == 0 {
		delete(h, "Connection")
		return
	}
	h["Connection"] = []string{strings.Join(keep, ", ")}
}

// hasToken reports whether a comma-separated header names token, in any case.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
