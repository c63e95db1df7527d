package realupstream

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// maxBody bounds what RawRequest and H2CSmuggle read of one response body.
const maxBody = 1 << 20

// RawRequest writes raw, byte for byte, on a fresh TCP connection to addr (host:port
// on a loopback address) and reads one HTTP/1.x response, all within timeout. It sends
// what net/http's client would refuse or rewrite: HTTP/1.0 without Host, ";" and
// unnormalized paths, odd header forms. The body is read up to 1 MiB.
func RawRequest(t testing.TB, addr, raw string, timeout time.Duration) (status int, headers http.Header, body []byte, err error) {
	t.Helper()
	if err := checkLoopback(addr); err != nil {
		return 0, nil, nil, err
	}
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, nil, nil, err
	}
	if _, err := io.WriteString(conn, raw); err != nil {
		return 0, nil, nil, fmt.Errorf("writing request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: requestMethod(raw)})
	if err != nil {
		return 0, nil, nil, fmt.Errorf("reading response: %w", err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.StatusCode, resp.Header, body, fmt.Errorf("reading body: %w", err)
	}
	return resp.StatusCode, resp.Header, body, nil
}

// requestMethod is the first word of a raw request: the response to HEAD has no body.
func requestMethod(raw string) string {
	m, _, _ := strings.Cut(raw, " ")
	return m
}

// checkLoopback refuses any address but a loopback one: these helpers are for the
// servers a test runs on this machine.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q is not host:port: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("address %q is not a loopback address", addr)
	}
	return nil
}

// InnerRequest is an HTTP/2 request that H2CSmuggle sends inside the upgraded
// connection.
type InnerRequest struct {
	Method    string // :method
	Path      string // :path
	Authority string // :authority; omitted when empty
	// Header holds extra header fields (x-auth-subject: admin, ...); names are sent
	// lower-cased, as HTTP/2 requires.
	Header http.Header
	Body   []byte
}

// InnerResponse is the server's answer on one HTTP/2 stream.
type InnerResponse struct {
	StreamID uint32
	Status   int // :status; 0 when no response headers arrived
	Header   http.Header
	Body     []byte
	// Reset is the RST_STREAM error code when the server reset the stream, else "".
	Reset string
}

// SmuggleResult is what H2CSmuggle saw.
type SmuggleResult struct {
	// UpgradeStatus is the HTTP/1.1 status answering the upgrade request: 101 when the
	// server switched to HTTP/2.
	UpgradeStatus int
	UpgradeHeader http.Header
	// UpgradeBody is the body of a non-101 answer.
	UpgradeBody []byte
	// Upgrade is the HTTP/2 answer to the upgrade request itself, on stream 1, after
	// a 101.
	Upgrade InnerResponse
	// Inner are the answers to the inner requests, in their order (streams 3, 5, ...),
	// after a 101; nil otherwise.
	Inner []InnerResponse
	// GoAway is the GOAWAY the server sent ("CODE: debug data"), or "".
	GoAway string
}

// h2cSettings is the HTTP2-Settings value of the upgrade request: base64url of a
// SETTINGS payload that disables server push (identifier 2, value 0), as a client
// that wants no pushes sends it.
var h2cSettings = base64.RawURLEncoding.EncodeToString([]byte{0, 2, 0, 0, 0, 0})

// smuggleTimeout bounds all of H2CSmuggle's I/O.
const smuggleTimeout = 15 * time.Second

// H2CSmuggle attempts an h2c upgrade (RFC 7540 §3.2) on a fresh connection to addr (a
// loopback host:port) and, when the answer is 101, speaks HTTP/2 on that connection: a
// proxy that passes the upgrade through turns into a tunnel whose requests it never
// sees.
//
// upgradeRequest is the head of the HTTP/1.1 request up to the upgrade headers: its
// request line and header lines (Host, Authorization, ...), each ending in CRLF, e.g.
// "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n". H2CSmuggle appends
// `Connection: Upgrade, HTTP2-Settings`, `Upgrade: h2c`, `HTTP2-Settings` and the
// empty line. After a 101 it sends the client preface and SETTINGS, then each inner
// request on streams 3, 5, ..., and reads until every stream (1 included) has ended or
// was reset, or the server sent GOAWAY and closed. All I/O is bounded by 15 s.
func H2CSmuggle(t testing.TB, addr, upgradeRequest string, inner []InnerRequest) (SmuggleResult, error) {
	t.Helper()
	var res SmuggleResult
	if err := checkLoopback(addr); err != nil {
		return res, err
	}
	conn, err := net.DialTimeout("tcp", addr, smuggleTimeout)
	if err != nil {
		return res, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(smuggleTimeout)); err != nil {
		return res, err
	}
	head := upgradeRequest
	if !strings.HasSuffix(head, "\r\n") {
		head += "\r\n"
	}
	head += "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: " + h2cSettings + "\r\n\r\n"
	if _, err := io.WriteString(conn, head); err != nil {
		return res, fmt.Errorf("writing upgrade request: %w", err)
	}
	// One reader for the HTTP/1.1 answer and the frames after it: the server's
	// SETTINGS may come in the same segment as the 101.
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: requestMethod(upgradeRequest)})
	if err != nil {
		return res, fmt.Errorf("reading upgrade answer: %w", err)
	}
	res.UpgradeStatus, res.UpgradeHeader = resp.StatusCode, resp.Header
	if resp.StatusCode != http.StatusSwitchingProtocols {
		res.UpgradeBody, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		if err != nil {
			return res, fmt.Errorf("reading upgrade answer body: %w", err)
		}
		return res, nil
	}

	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		return res, fmt.Errorf("writing client preface: %w", err)
	}
	fr := http2.NewFramer(conn, br)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0}); err != nil {
		return res, fmt.Errorf("writing SETTINGS: %w", err)
	}
	// streams maps each stream to its answer: 1 is the upgrade request's.
	res.Upgrade.StreamID = 1
	streams := map[uint32]*InnerResponse{1: &res.Upgrade}
	res.Inner = make([]InnerResponse, len(inner))
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	for i, req := range inner {
		id := uint32(3 + 2*i)
		res.Inner[i].StreamID = id
		streams[id] = &res.Inner[i]
		hbuf.Reset()
		fields := []hpack.HeaderField{{Name: ":method", Value: req.Method}, {Name: ":scheme", Value: "http"}}
		if req.Authority != "" {
			fields = append(fields, hpack.HeaderField{Name: ":authority", Value: req.Authority})
		}
		fields = append(fields, hpack.HeaderField{Name: ":path", Value: req.Path})
		for name, values := range req.Header {
			for _, v := range values {
				fields = append(fields, hpack.HeaderField{Name: strings.ToLower(name), Value: v})
			}
		}
		for _, f := range fields {
			if err := enc.WriteField(f); err != nil {
				return res, fmt.Errorf("encoding %s: %w", f.Name, err)
			}
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{
			StreamID:      id,
			BlockFragment: hbuf.Bytes(),
			EndStream:     len(req.Body) == 0,
			EndHeaders:    true,
		}); err != nil {
			return res, fmt.Errorf("writing HEADERS of stream %d: %w", id, err)
		}
		if len(req.Body) > 0 {
			if err := fr.WriteData(id, true, req.Body); err != nil {
				return res, fmt.Errorf("writing DATA of stream %d: %w", id, err)
			}
		}
	}
	return res, readStreams(fr, streams, &res)
}

// readStreams reads frames until every stream in open has ended or was reset, answering
// what the protocol requires (SETTINGS and PING acks, flow-control credit).
func readStreams(fr *http2.Framer, open map[uint32]*InnerResponse, res *SmuggleResult) error {
	for len(open) > 0 {
		f, err := fr.ReadFrame()
		if err != nil {
			if res.GoAway != "" {
				return nil // the server said it was done; what is unanswered stays so
			}
			return fmt.Errorf("reading HTTP/2 frames (%d streams unanswered): %w", len(open), err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					return fmt.Errorf("writing SETTINGS ack: %w", err)
				}
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				if err := fr.WritePing(true, f.Data); err != nil {
					return fmt.Errorf("writing PING ack: %w", err)
				}
			}
		case *http2.GoAwayFrame:
			res.GoAway = fmt.Sprintf("%v: %q", f.ErrCode, f.DebugData())
		case *http2.MetaHeadersFrame:
			r := open[f.StreamID]
			if r == nil {
				continue
			}
			if r.Status == 0 { // not a trailer
				r.Status, _ = strconv.Atoi(f.PseudoValue("status"))
			}
			if r.Header == nil {
				r.Header = http.Header{}
			}
			for _, hf := range f.RegularFields() {
				r.Header.Add(hf.Name, hf.Value)
			}
			if f.StreamEnded() {
				delete(open, f.StreamID)
			}
		case *http2.DataFrame:
			if n := uint32(len(f.Data())); n > 0 {
				// Credit the connection and a stream that goes on, so that a long
				// answer is not stalled by flow control.
				if err := fr.WriteWindowUpdate(0, n); err != nil {
					return fmt.Errorf("writing WINDOW_UPDATE: %w", err)
				}
				if !f.StreamEnded() {
					if err := fr.WriteWindowUpdate(f.StreamID, n); err != nil {
						return fmt.Errorf("writing WINDOW_UPDATE: %w", err)
					}
				}
			}
			r := open[f.StreamID]
			if r == nil {
				continue
			}
			if len(r.Body)+len(f.Data()) <= maxBody {
				r.Body = append(r.Body, f.Data()...)
			}
			if f.StreamEnded() {
				delete(open, f.StreamID)
			}
		case *http2.RSTStreamFrame:
			if r := open[f.StreamID]; r != nil {
				r.Reset = f.ErrCode.String()
				delete(open, f.StreamID)
			}
		}
	}
	return nil
}
