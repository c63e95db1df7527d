package certfile

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStampSeesARenewalWithinOneTimestampTick(t *testing.T) {
	dir := t.TempDir()
	c := &Reloader{certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key")}
	tick := time.Now().Truncate(time.Second)
	write := func(name, body string) {
		t.Helper()
		tmp := filepath.Join(dir, name+".tmp")
		if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		// Every version carries the same time, as writes within one tick of the file
		// system's clock do.
		if err := os.Chtimes(tmp, tick, tick); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	write("tls.crt", "first")
	write("tls.key", "first")
	first := c.stamps()
	if !first.same(c.stamps()) {
		t.Fatal("unchanged files compare as changed")
	}
	write("tls.crt", "second") // same size, same time, a new file
	if first.same(c.stamps()) {
		t.Fatal("a certificate replaced within one timestamp tick went unnoticed")
	}
	second := c.stamps()
	if err := os.Remove(c.keyFile); err != nil {
		t.Fatal(err)
	}
	if second.same(c.stamps()) {
		t.Fatal("a key file that disappeared went unnoticed")
	}
	if !c.stamps().same(c.stamps()) {
		t.Fatal("a missing file compares as changed with itself")
	}
}
