package introspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/wellknown"

	"github.com/tokengate/tokengate/internal/clip"
)

// Limits of Discover, those of jwks's discovery.
const (
	// MaxMetadataBytes caps a metadata document (jwks.DefaultMaxResponseBytes).
	MaxMetadataBytes = 1 << 20
	// DiscoveryTimeout bounds each request of Discover when its client is nil
	// (jwks.DefaultHTTPTimeout).
	DiscoveryTimeout = 10 * time.Second
	maxRedirects     = 3
)

// Discover reads issuer's metadata for its introspection_endpoint, as package jwks
// finds a jwks_uri: OpenID Connect Discovery ({issuer}/.well-known/openid-configuration)
// first, then RFC 8414 (the well-known segment between host and path). A document is
// used only when its issuer equals issuer byte for byte (RFC 8414 §3.3), and the
// endpoint it names must be https, or http when issuer itself is, or http to a
// loopback host; bodies over MaxMetadataBytes are refused.
//
// A nil client is one of Discover's own: a DiscoveryTimeout per request, redirects
// only within the origin of the first request, at most three. ctx bounds the whole.
//
// The error joins each document's problem: those that wrap ErrNoEndpoint were read
// and give no usable endpoint (configure one); the others wrap ErrUnavailable.
func Discover(ctx context.Context, client *http.Client, issuer string) (endpoint string, err error) {
	if client == nil {
		client = newHTTPClient(DiscoveryTimeout, nil)
		client.CheckRedirect = sameOrigin
		defer client.CloseIdleConnections()
	}
	insecure := strings.HasPrefix(issuer, "http:")
	var errs []error
	for _, u := range wellknown.MetadataURLs(issuer) {
		body, err := getMetadata(ctx, client, u)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		var meta struct {
			Issuer   *string `json:"issuer"`
			Endpoint *string `json:"introspection_endpoint"`
		}
		if err := json.Unmarshal(body, &meta); err != nil {
			errs = append(errs, unavailable("%s is not a metadata document: %w", u, err))
			continue
		}
		switch {
		case meta.Issuer == nil || *meta.Issuer != issuer:
			got := "none"
			if meta.Issuer != nil {
				got = strconv.Quote(clip.String(*meta.Issuer, 200))
			}
			errs = append(errs, fmt.Errorf("%w: %s names issuer %s, not %q; the document is not used", ErrNoEndpoint, u, got, issuer))
			continue
		case meta.Endpoint == nil || *meta.Endpoint == "":
			errs = append(errs, fmt.Errorf("%w: %s has no introspection_endpoint", ErrNoEndpoint, u))
			continue
		}
		if err := checkURL(*meta.Endpoint, insecure); err != nil {
			errs = append(errs, fmt.Errorf("%w: %s: introspection_endpoint %v", ErrNoEndpoint, u, err))
			continue
		}
		return *meta.Endpoint, nil
	}
	return "", fmt.Errorf("introspect: discovery for %q: %w", issuer, errors.Join(errs...))
}

func getMetadata(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, unavailable("%w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "tokengate")
	resp, err := client.Do(req)
	if err != nil {
		return nil, unavailable("%w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		return nil, unavailable("GET %s: status %d", u, resp.StatusCode)
	}
	if resp.ContentLength > MaxMetadataBytes {
		return nil, unavailable("GET %s: a body of %d bytes is over the cap of %d", u, resp.ContentLength, MaxMetadataBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxMetadataBytes+1))
	if err != nil {
		return nil, unavailable("GET %s: reading the body: %w", u, err)
	}
	if len(body) > MaxMetadataBytes {
		return nil, unavailable("GET %s: the body is over the cap of %d bytes", u, MaxMetadataBytes)
	}
	return body, nil
}

// sameOrigin follows at most maxRedirects redirects, each within the origin of the
// first request, as jwks does for discovery.
func sameOrigin(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("more than %d redirects", maxRedirects)
	}
	first := via[0].URL
	if req.URL.Scheme != first.Scheme || !strings.EqualFold(req.URL.Host, first.Host) {
		return fmt.Errorf("redirect to another origin refused: %s://%s", req.URL.Scheme, req.URL.Host)
	}
	return nil
}
