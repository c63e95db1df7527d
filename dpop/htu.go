package dpop

import (
	"errors"
	"net"
	"net/url"
	"strings"
)

// normalizeURI brings an absolute http(s) URI to the form RFC 9449 §4.3 compares:
// syntax-based and scheme-based normalization (RFC 3986 §6.2.2, §6.2.3) of the scheme,
// authority and path, without query or fragment. Scheme and host are lower-cased, a
// default port dropped, an empty path is "/", percent-encodings are upper-cased and
// those of unreserved characters decoded, and dot segments removed.
func normalizeURI(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", errors.New("not an http or https URI")
	}
	if u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", errors.New("not an absolute URI with a host and no user information")
	}
	host, port := u.Hostname(), u.Port()
	host = strings.ToLower(host)
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" && !(scheme == "https" && port == "443" || scheme == "http" && port == "80") {
		host = net.JoinHostPort(strings.Trim(host, "[]"), port)
	}
	p, err := normalizePath(u.EscapedPath())
	if err != nil {
		return "", err
	}
	return scheme + "://" + host + p, nil
}

// normalizePath normalizes percent-encodings and removes dot segments of an escaped
// path; the empty path is "/".
func normalizePath(p string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return "", errors.New("a malformed percent-encoding in the path")
		}
		d := unhex(p[i+1])<<4 | unhex(p[i+2])
		if unreserved(d) {
			b.WriteByte(d)
		} else {
			b.WriteString("%" + strings.ToUpper(p[i+1:i+3]))
		}
		i += 2
	}
	return removeDotSegments(b.String()), nil
}

// removeDotSegments is RFC 3986 §5.2.4, on a path that is empty or starts with "/".
func removeDotSegments(in string) string {
	var out []string
	segs := strings.Split(in, "/")
	for i, s := range segs {
		if i == 0 {
			continue // the empty segment before the leading "/"
		}
		switch s {
		case ".":
			if i == len(segs)-1 {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if i == len(segs)-1 {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// unreserved is RFC 3986 §2.3.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}
