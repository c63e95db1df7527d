package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFileWatch drives FileWatch one read at a time (the test lets each read start),
// so that it can say what a read saw without waiting for time to pass: a content is
// handed on once, when it differs from the last one seen; a file that is missing for a
// while, or too large, changes nothing; a symlink swap is seen.
func TestFileWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokengate.yaml")
	write := func(content string) {
		t.Helper()
		// As kubectl and editors that keep a backup do: a new file renamed over the old.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("a: 1\n")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := make(chan struct{})
	changed := make(chan string, 16)
	unreadable := make(chan error, 16)
	f := FileWatch{
		Path:  path,
		Every: time.Millisecond,
		Changed: func(data []byte, sum [sha256.Size]byte) {
			if sum != sha256.Sum256(data) {
				t.Errorf("sum %x is not the content's", sum)
			}
			changed <- string(data)
		},
		Unreadable: func(err error) {
			select {
			case unreadable <- err:
			default:
			}
		},
		read: func(p string) ([]byte, error) {
			select {
			case <-start:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return readConfig(p)
		},
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx, sha256.Sum256([]byte("a: 1\n")))
	}()

	// settle lets a read start after what the test did, and waits until its callbacks
	// have run (the next read may start only then).
	settle := func() { start <- struct{}{}; start <- struct{}{} }
	expect := func(step string, want ...string) {
		t.Helper()
		settle()
		var got []string
		for len(changed) > 0 {
			got = append(got, <-changed)
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("%s: changed %q, want %q", step, got, want)
		}
	}

	expect("the content already applied")
	write("a: 1\n")
	expect("the same content, written again")
	write("b: 2\n")
	expect("a new content", "b: 2\n")

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	expect("no file")
	if err := <-unreadable; !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("unreadable: %v", err)
	}
	write("b: 2\n")
	expect("the file back as it was")

	// A Kubernetes ConfigMap volume: the file is a symlink through ..data, which an
	// update points at a new directory.
	for _, d := range []string{"..v1", "..v2"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "..v1", "tokengate.yaml"), []byte("c: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "..v2", "tokengate.yaml"), []byte("d: 4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/tokengate.yaml", filepath.Join(dir, "tmp-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "tmp-link"), path); err != nil {
		t.Fatal(err)
	}
	expect("the file made a ConfigMap's", "c: 3\n")
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	expect("the ConfigMap updated", "d: 4\n")

	for len(unreadable) > 0 {
		<-unreadable
	}
	write("e: " + strings.Repeat("x", maxConfigBytes) + "\n")
	expect("a file over the cap")
	if err := <-unreadable; err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("unreadable: %v", err)
	}

	cancel()
	<-done
}
