package introspect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
	"unicode/utf8"
)

// maxNumericDate is the year 5138: a later exp, iat or nbf is not a time but a
// mistake, as the middleware says of a JWT's.
const maxNumericDate = 1e11

// registered are the members parse interprets; an error may name them, never another
// member or any value (which could echo the token).
var registered = map[string]bool{"active": true, "iss": true, "sub": true, "client_id": true, "scope": true,
	"token_type": true, "jti": true, "aud": true, "exp": true, "iat": true, "nbf": true, "username": true}

// parse reads an answer (RFC 7662 §2.2): valid UTF-8, one JSON object with unique
// member names, whose active member is true or false. It returns nil and no error
// for an inactive token, whatever else the object says. For an active one the members
// Result interprets must have their registered types (strings; aud a string or an
// array of strings; exp, iat and nbf non-negative JSON numbers, never strings); null
// counts as absent.
func parse(data []byte) (*Result, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("the body is not a JSON object")
	}
	raw := make(map[string]json.RawMessage, 16)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, errors.New("the body is not a JSON object")
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errors.New("the body is not a JSON object")
		}
		if _, dup := raw[name]; dup {
			if registered[name] {
				return nil, fmt.Errorf("member %q appears twice", name)
			}
			return nil, errors.New("a member appears twice")
		}
		raw[name] = v
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, errors.New("the body is not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("the body has data after its JSON object")
	}

	switch string(raw["active"]) {
	case "true":
	case "false":
		return nil, nil
	case "":
		return nil, errors.New("the answer has no active member")
	default:
		return nil, errors.New("active is not a boolean")
	}

	r := &Result{Active: true, Raw: raw}
	var errs []error
	for name, dst := range map[string]*string{"iss": &r.Issuer, "sub": &r.Subject, "client_id": &r.ClientID,
		"scope": &r.Scope, "token_type": &r.TokenType, "jti": &r.JTI} {
		if err := decodeString(raw[name], dst); err != nil {
			errs = append(errs, fmt.Errorf("%s is not a string", name))
		}
	}
	for name, dst := range map[string]*time.Time{"exp": &r.ExpiresAt, "iat": &r.IssuedAt, "nbf": &r.NotBefore} {
		if err := decodeTime(raw[name], dst); err != nil {
			errs = append(errs, fmt.Errorf("%s is not a NumericDate: %w", name, err))
		}
	}
	if err := decodeAudience(raw["aud"], &r.Audience); err != nil {
		errs = append(errs, errors.New("aud is neither a string nor an array of strings"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

func absent(v json.RawMessage) bool { return len(v) == 0 || string(v) == "null" }

func decodeString(v json.RawMessage, dst *string) error {
	if absent(v) {
		return nil
	}
	if v[0] != '"' {
		return errors.New("not a string")
	}
	return json.Unmarshal(v, dst)
}

func decodeAudience(v json.RawMessage, dst *[]string) error {
	switch {
	case absent(v):
		return nil
	case v[0] == '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return err
		}
		*dst = []string{s}
		return nil
	case v[0] == '[':
		var list []json.RawMessage
		if err := json.Unmarshal(v, &list); err != nil {
			return err
		}
		out := make([]string, len(list))
		for i, m := range list {
			if len(m) == 0 || m[0] != '"' {
				return errors.New("not a string")
			}
			if err := json.Unmarshal(m, &out[i]); err != nil {
				return err
			}
		}
		*dst = out
		return nil
	}
	return errors.New("not a string or an array")
}

// decodeTime reads a NumericDate: a JSON number (the decoder checked the grammar, so
// a value that starts with a digit or a minus sign is one) from 0 to maxNumericDate,
// fractions kept.
func decodeTime(v json.RawMessage, dst *time.Time) error {
	if absent(v) {
		return nil
	}
	if v[0] != '-' && (v[0] < '0' || v[0] > '9') {
		return errors.New("not a number")
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		return errors.New("out of range")
	}
	if f < 0 || f > maxNumericDate || math.IsNaN(f) {
		return errors.New("out of range")
	}
	sec, frac := math.Modf(f)
	*dst = time.Unix(int64(sec), int64(frac*1e9))
	return nil
}
