package jwks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/wellknown"

	"github.com/tokengate/tokengate/internal/clip"
)

// maxRedirects bounds a redirect chain; every hop must stay on the same origin.
const maxRedirects = 3

// newTransport builds the transport of one issuer: its own (never
// http.DefaultTransport, which other code may change), certificate verification always,
// TLS 1.2 at least, and every phase bounded.
func newTransport(timeout time.Duration, roots *x509.CertPool) *http.Transport {
	dialer := &net.Dialer{Timeout: min(timeout, 5*time.Second), KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
		TLSHandshakeTimeout:    min(timeout, 5*time.Second),
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: 64 << 10,
		MaxIdleConns:           4,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      true,
	}
}

// newHTTPClient builds the client of one issuer over its transport: every request
// bounded by timeout, and redirects only within the origin of the first request, so a
// JWKS endpoint cannot send us to another host or down to http.
func newHTTPClient(timeout time.Duration, transport http.RoundTripper) *http.Client {
	return &http.Client{
		Transport: transport,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("more than %d redirects", maxRedirects)
			}
			first := via[0].URL
			if req.URL.Scheme != first.Scheme || !strings.EqualFold(req.URL.Host, first.Host) {
				return fmt.Errorf("redirect to another origin refused: %s://%s", req.URL.Scheme, req.URL.Host)
			}
			return nil
		},
	}
}

// response is what a GET brought back.
type response struct {
	body        []byte
	etag        string
	maxAge      time.Duration
	hasMaxAge   bool
	notModified bool
}

// get fetches url with the body capped at limit bytes. etag, when set, is sent as
// If-None-Match; a 304 comes back as notModified.
func get(ctx context.Context, client *http.Client, rawURL, etag string, limit int64) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return response{}, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	req.Header.Set("User-Agent", "tokengate")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%w: GET %s: %w", ErrFetch, rawURL, err)
	}
	defer resp.Body.Close()

	r := response{etag: resp.Header.Get("ETag")}
	r.maxAge, r.hasMaxAge = maxAge(resp.Header.Values("Cache-Control"))
	switch {
	case resp.StatusCode == http.StatusNotModified && etag != "":
		r.notModified = true
		if r.etag == "" {
			r.etag = etag
		}
		return r, nil
	case resp.StatusCode != http.StatusOK:
		// Drain a little so the connection can be reused, never the whole body.
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		return r, &StatusError{URL: rawURL, Code: resp.StatusCode}
	}
	if resp.ContentLength > limit {
		return r, fmt.Errorf("%w: GET %s: body of %d bytes is over the cap of %d", ErrFetch, rawURL, resp.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return r, fmt.Errorf("%w: GET %s: reading body: %w", ErrFetch, rawURL, err)
	}
	if int64(len(body)) > limit {
		return r, fmt.Errorf("%w: GET %s: body is over the cap of %d bytes", ErrFetch, rawURL, limit)
	}
	r.body = body
	return r, nil
}

// StatusError is an HTTP answer other than 200 (or 304 to a conditional request).
type StatusError struct {
	URL  string
	Code int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("jwks: fetching keys failed: GET %s: status %d", e.URL, e.Code)
}

// Is makes a StatusError match ErrFetch.
func (e *StatusError) Is(target error) bool { return target == ErrFetch }

// maxAge reads max-age from Cache-Control. no-store and no-cache count as max-age=0
// (the caller clamps it to its minimum interval).
func maxAge(values []string) (time.Duration, bool) {
	for _, v := range values {
		for _, d := range strings.Split(v, ",") {
			d = strings.TrimSpace(d)
			name, val, _ := strings.Cut(d, "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return 0, true
			case "max-age", "s-maxage":
				n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64)
				if err != nil || n < 0 {
					continue
				}
				return time.Duration(min(n, int64(365*24*3600))) * time.Second, true
			}
		}
	}
	return 0, false
}

// discover finds the issuer's jwks_uri. A document is used only when its issuer equals
// the configured one byte for byte (RFC 8414 §3.3, OpenID Connect Discovery §4.3); the
// jwks_uri it names must pass the same scheme rule as the issuer.
func discover(ctx context.Context, client *http.Client, issuer string, insecureHTTP bool, limit int64) (string, error) {
	var errs []error
	for _, u := range wellknown.MetadataURLs(issuer) {
		r, err := get(ctx, client, u, "", limit)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		var meta struct {
			Issuer  *string `json:"issuer"`
			JWKSURI *string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(r.body, &meta); err != nil {
			errs = append(errs, fmt.Errorf("%w: %s is not a metadata document: %v", ErrFetch, u, err))
			continue
		}
		switch {
		case meta.Issuer == nil || *meta.Issuer != issuer:
			got := "none"
			if meta.Issuer != nil {
				got = strconv.Quote(clip.String(*meta.Issuer, 200))
			}
			hint := ""
			if meta.Issuer != nil && strings.TrimSuffix(*meta.Issuer, "/") == strings.TrimSuffix(issuer, "/") {
				hint = " (they differ by a trailing slash, which counts: a token's iss must be the configured issuer byte for byte)"
			}
			errs = append(errs, fmt.Errorf("%w: %s names issuer %s, not the configured %q%s; the document is not used", ErrFetch, u, got, issuer, hint))
			continue
		case meta.JWKSURI == nil || *meta.JWKSURI == "":
			errs = append(errs, fmt.Errorf("%w: %s has no jwks_uri", ErrFetch, u))
			continue
		}
		if err := checkURL(*meta.JWKSURI, insecureHTTP); err != nil {
			errs = append(errs, fmt.Errorf("%w: %s: jwks_uri %v", ErrFetch, u, err))
			continue
		}
		return *meta.JWKSURI, nil
	}
	return "", fmt.Errorf("discovery for %q: %w", issuer, errors.Join(errs...))
}
