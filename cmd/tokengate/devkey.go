package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// devKey is the development issuer's signing key, with its kid: the RFC 7638
// thumbprint of the public key. A kid derived from the key names that key wherever it
// is: a restarted issuer that keeps its key (--key-file) keeps its kid, and one that
// makes a new key makes a new kid, which a resource server fetches at once (an unknown
// kid), rather than a new key under an old kid, which it would refuse as a bad
// signature until its next refresh.
func devKey(priv crypto.Signer, alg string) (*jwkstest.Key, error) {
	kid, err := jwks.Thumbprint(priv.Public())
	if err != nil {
		return nil, err
	}
	return &jwkstest.Key{KID: kid, Alg: alg, Private: priv}, nil
}

// newDevKey generates a key for alg with its thumbprint kid.
func newDevKey(alg string) (*jwkstest.Key, error) {
	k, err := jwkstest.GenerateKey("", alg)
	if err != nil {
		return nil, err
	}
	return devKey(k.Private, alg)
}

// loadDevKey reads the PKCS #8 PEM private key of path, for an alg its type fits. A
// key of another type than alg names is an error: the issuer would publish it with an
// alg it cannot sign.
func loadDevKey(path, alg string) (*jwkstest.Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PEM \"PRIVATE KEY\" (PKCS #8)", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: the key cannot sign", path)
	}
	if !fits(priv, alg) {
		return nil, fmt.Errorf("%s holds a %s key, which cannot sign %s", path, keyKind(priv), alg)
	}
	return devKey(priv, alg)
}

// fits reports whether a key's type (and curve) is the one alg signs with.
func fits(k crypto.Signer, alg string) bool {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return true
		}
	case *ecdsa.PrivateKey:
		return map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg] == k.Curve.Params().Name
	case ed25519.PrivateKey:
		return alg == "EdDSA"
	}
	return false
}

func keyKind(k crypto.Signer) string {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return fmt.Sprintf("RSA %d-bit", k.N.BitLen())
	case *ecdsa.PrivateKey:
		return "EC " + k.Curve.Params().Name
	case ed25519.PrivateKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", k)
}

// saveDevKey writes a key to path as PKCS #8 PEM, readable by its owner alone,
// replacing the file in one rename so that a reader never sees half a key.
func saveDevKey(path string, k *jwkstest.Key) error {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tokengate-key-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// loadOrCreateDevKey reads path, or, when it does not exist, generates a key for alg
// and writes it there.
func loadOrCreateDevKey(path, alg string) (k *jwkstest.Key, created bool, err error) {
	k, err = loadDevKey(path, alg)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, false, err
	}
	if k, err = newDevKey(alg); err != nil {
		return nil, false, err
	}
	return k, true, saveDevKey(path, k)
}
