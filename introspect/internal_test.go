package introspect

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func key(i int) [32]byte { return sha256.Sum256(fmt.Appendf(nil, "token-%d", i)) }

// Over its bound the cache drops the expired entries, then those that expire first,
// down to nine tenths of the bound.
func TestCacheEviction(t *testing.T) {
	has := func(c *cache, i int) bool { _, ok := c.m.Load(key(i)); return ok }
	t.Run("soonest first", func(t *testing.T) {
		c := newCache(10)
		for i := range 10 {
			c.put(key(i), &entry{res: &Result{Active: true}, until: t0.Add(time.Duration(i+1) * time.Minute)}, t0)
		}
		if n := c.len(); n != 10 {
			t.Fatalf("%d entries at the bound of 10, want all 10", n)
		}
		c.put(key(10), &entry{until: t0.Add(time.Hour)}, t0) // 11: over the bound
		if n := c.len(); n != 9 || c.size.Load() != 9 {
			t.Fatalf("%d entries (size %d), want 9", n, c.size.Load())
		}
		if has(c, 0) || has(c, 1) || !has(c, 2) || !has(c, 10) {
			t.Fatal("not the two that expire first were dropped")
		}
	})
	t.Run("expired only", func(t *testing.T) {
		c := newCache(10)
		now := t0.Add(3*time.Minute + time.Second) // 0 to 3 have expired
		for i := range 10 {
			c.put(key(i), &entry{until: t0.Add(time.Duration(i) * time.Minute)}, now)
		}
		c.put(key(10), &entry{until: now.Add(time.Hour)}, now)
		if n := c.len(); n != 7 || c.size.Load() != 7 {
			t.Fatalf("%d entries (size %d), want 7", n, c.size.Load())
		}
		if has(c, 3) || !has(c, 4) {
			t.Fatal("not the expired ones were dropped")
		}
	})
}

func TestCacheGetDropsExpired(t *testing.T) {
	c := newCache(10)
	c.put(key(1), &entry{until: t0.Add(time.Second)}, t0)
	if _, ok := c.get(key(1), t0.Add(time.Second-1)); !ok {
		t.Fatal("a current entry was not found")
	}
	if _, ok := c.get(key(1), t0.Add(time.Second)); ok || c.len() != 0 || c.size.Load() != 0 {
		t.Fatalf("an expired entry was kept: %d entries, size %d", c.len(), c.size.Load())
	}
	c.put(key(2), &entry{until: t0.Add(time.Second)}, t0)
	c.put(key(2), &entry{until: t0.Add(2 * time.Second)}, t0) // replaced, not added
	if c.size.Load() != 1 {
		t.Fatalf("size %d", c.size.Load())
	}
}

func TestCacheConcurrent(t *testing.T) {
	c := newCache(100)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				k := key(g*10000 + i%300)
				now := t0.Add(time.Duration(i) * time.Millisecond)
				if _, ok := c.get(k, now); !ok {
					c.put(k, &entry{until: now.Add(50 * time.Millisecond)}, now)
				}
			}
		})
	}
	wg.Wait()
	if n, size := c.len(), c.size.Load(); int64(n) != size || n > 100+8 {
		t.Fatalf("%d entries, size %d, bound 100", n, size)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		body string
		want string // "active", "inactive", or a part of the error
	}{
		{`{"active":true}`, "active"},
		{` { "active" : true } `, "active"},
		{`{"active":false}`, "inactive"},
		{`{"active":false,"exp":"garbage","aud":7}`, "inactive"}, // nothing else is read
		{`{"act\u0069ve":true}`, "active"},
		{`{"active":true,"act\u0069ve":false}`, `"active" appears twice`},
		{`{"active":true,"x":1,"x":2}`, "a member appears twice"},
		{`{"active":true,"sub":null,"aud":null,"exp":null}`, "active"},
		{`{"active":true,"exp":-1}`, "exp is not a NumericDate"},
		{`{"active":true,"exp":1e12}`, "exp is not a NumericDate"},
		{`{"active":true,"iat":true}`, "iat is not a NumericDate"},
		{`{"active":true,"aud":["a",1]}`, "aud is neither"},
		{`{"active":true,"aud":{}}`, "aud is neither"},
		{`{"active":true,"sub":1,"jti":2}`, "is not a string"},
		{`{"active":1}`, "active is not a boolean"},
		{`{"active":"false"}`, "active is not a boolean"},
		{`{}`, "no active member"},
		{``, "not a JSON object"},
		{`null`, "not a JSON object"},
		{`"active"`, "not a JSON object"},
		{`{"active":true`, "not a JSON object"},
		{`{"active":true}x`, "data after"},
		{`{"active":tru}`, "not a JSON object"},
	} {
		r, err := parse([]byte(tc.body))
		switch {
		case tc.want == "active" && (err != nil || r == nil || !r.Active):
			t.Errorf("%s: %+v %v", tc.body, r, err)
		case tc.want == "inactive" && (err != nil || r != nil):
			t.Errorf("%s: %+v %v", tc.body, r, err)
		case tc.want != "active" && tc.want != "inactive" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.body, err, tc.want)
		}
	}
}

func TestParseFractionalTimes(t *testing.T) {
	r, err := parse([]byte(`{"active":true,"exp":1700000000.25,"iat":0}`))
	if err != nil {
		t.Fatal(err)
	}
	if !r.ExpiresAt.Equal(time.Unix(1700000000, 250_000_000)) || !r.IssuedAt.Equal(time.Unix(0, 0)) {
		t.Fatalf("%s %s", r.ExpiresAt, r.IssuedAt)
	}
}

// FuzzParse: whatever the endpoint sends, parse returns exactly one of a result, an
// inactive answer, or an error, and never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{"active":true,"aud":["a"],"exp":1.5,"scope":"a b"}`, `{"active":false}`, `{"active":true,"active":true}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := parse(body)
		if err != nil && r != nil {
			t.Fatal("a result and an error")
		}
		if r != nil && (!r.Active || string(r.Raw["active"]) != "true") {
			t.Fatalf("an active result from %q", body)
		}
		var e *Error
		if errors.As(err, &e) {
			t.Fatal("parse's errors are causes, not *Error")
		}
	})
}

// hashToken hashes without a heap allocation up to 512 bytes, and hashes every length.
func TestHashToken(t *testing.T) {
	for _, n := range []int{0, 1, 511, 512, 513, 4096} {
		tok := strings.Repeat("t", n)
		if hashToken(tok) != sha256.Sum256([]byte(tok)) {
			t.Errorf("hashToken of %d bytes is not its SHA-256", n)
		}
	}
	tok := strings.Repeat("t", 512)
	if n := testing.AllocsPerRun(100, func() { _ = hashToken(tok) }); n != 0 {
		t.Errorf("%v allocations hashing a 512-byte token, want 0", n)
	}
}

// A Config prints whether it has a secret, never the secret.
func TestConfigString(t *testing.T) {
	if s := (Config{}).String(); !strings.Contains(s, "ClientSecret:none") {
		t.Errorf("without a secret: %s", s)
	}
	if s := (Config{ClientSecret: []byte("x")}).String(); !strings.Contains(s, "ClientSecret:[redacted]") || strings.Contains(s, "ClientSecret:x") {
		t.Errorf("with a secret: %s", s)
	}
}

// NumericDates: 0 is one (the boundary), a negative number is not.
func TestDecodeTimeBounds(t *testing.T) {
	var d time.Time
	if err := decodeTime(json.RawMessage("0"), &d); err != nil || !d.Equal(time.Unix(0, 0)) {
		t.Errorf("0: %v %v", d, err)
	}
	if err := decodeTime(json.RawMessage("9"), &d); err != nil || !d.Equal(time.Unix(9, 0)) {
		t.Errorf("9: %v %v", d, err)
	}
	if err := decodeTime(json.RawMessage(strconv.FormatFloat(maxNumericDate, 'f', -1, 64)), &d); err != nil {
		t.Errorf("the largest NumericDate: %v", err)
	}
	for _, v := range []string{"-1", "-0.5", `"1"`, "true"} {
		if err := decodeTime(json.RawMessage(v), &d); err == nil {
			t.Errorf("%s accepted as a NumericDate", v)
		}
	}
}

// padTo pads a JSON object with spaces before its closing brace to exactly n bytes.
func padTo(obj string, n int) string {
	return obj[:len(obj)-1] + strings.Repeat(" ", n-len(obj)) + "}"
}

// The caps on answers and metadata take a body of exactly the cap, and not one byte
// more, with and without a Content-Length.
func TestBodyCapsAreInclusive(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		var body string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !chunked {
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			}
			_, _ = io.WriteString(w, body)
		}))
		c, err := New(Config{Endpoint: srv.URL, ClientID: "a", ClientSecret: []byte("b"), MaxResponseBytes: 200, CacheTTL: -1}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		body = padTo(`{"active":true,"sub":"x"}`, 200)
		if _, err := c.Introspect(context.Background(), "tok"); err != nil {
			t.Errorf("chunked %v: an answer of exactly the cap: %v", chunked, err)
		}
		body = padTo(`{"active":true,"sub":"x"}`, 201)
		if _, err := c.Introspect(context.Background(), "tok"); !errors.Is(err, ErrUnavailable) {
			t.Errorf("chunked %v: an answer one byte over the cap: %v", chunked, err)
		}
		issuer := srv.URL
		body = padTo(`{"issuer":"`+issuer+`","introspection_endpoint":"`+issuer+`/introspect"}`, MaxMetadataBytes)
		if ep, err := Discover(context.Background(), nil, issuer); err != nil || ep != issuer+"/introspect" {
			t.Errorf("chunked %v: metadata of exactly the cap: %q %v", chunked, ep, err)
		}
		body += " "
		if _, err := Discover(context.Background(), nil, issuer); !errors.Is(err, ErrUnavailable) {
			t.Errorf("chunked %v: metadata one byte over the cap: %v", chunked, err)
		}
		c.Close()
		srv.Close()
	}
}
