package smallorder

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
)

// TestSmallOrderKeysVerifyForgedSignatures is why the list exists: for each of its
// points, crypto/ed25519 accepts R = the neutral point, S = 0 for any message (the
// first two points and their sign-bit variants at least), and no generated key is on it.
func TestSmallOrderKeysVerifyForgedSignatures(t *testing.T) {
	forged := make([]byte, ed25519.SignatureSize)
	forged[0] = 1 // R = (0, 1), the neutral point; S = 0
	accepted := 0
	for i, p := range smallOrderPoints {
		for _, sign := range []byte{0, 0x80} {
			k := p
			k[31] |= sign
			if !Ed25519(k[:]) {
				t.Errorf("point %d (sign %#x) not recognized", i, sign)
			}
			if ed25519.Verify(k[:], []byte("any message"), forged) {
				accepted++
			}
		}
	}
	if accepted == 0 {
		t.Error("no small-order key accepted the forged signature: the check guards nothing")
	}
	for range 100 {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if Ed25519(pub) {
			t.Fatalf("a generated key %x counts as small order", pub)
		}
	}
}
