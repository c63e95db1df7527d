package certfile

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Reloader serves the certificate of two files (tls.Config.GetCertificate) and re-reads them when either
// changes, checked at most once a second; a pair that does not load keeps the last good
// one (and says so in the log).
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   stamp
	checked time.Time
}

// NewReloader loads the pair once: a pair that does not load is an error at start.
func NewReloader(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	c := &Reloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Reloader) load() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("loading the serving certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert = &cert
	c.stamp = c.stamps()
	return nil
}

// stamp identifies the versions of the two files. A modification time alone misses a
// renewal written within the file system's timestamp tick of the previous one (a few
// milliseconds), and rename keeps the new file's time; the file's identity (a renamed
// or re-linked file is a new inode, as a Secret volume's update is) and size catch it.
type stamp [2]os.FileInfo

func (c *Reloader) stamps() stamp {
	var s stamp
	for i, f := range []string{c.certFile, c.keyFile} {
		if st, err := os.Stat(f); err == nil {
			s[i] = st
		}
	}
	return s
}

func (s stamp) same(o stamp) bool {
	for i := range s {
		a, b := s[i], o[i]
		if a == nil || b == nil {
			if a != b {
				return false
			}
			continue
		}
		if !os.SameFile(a, b) || !a.ModTime().Equal(b.ModTime()) || a.Size() != b.Size() {
			return false
		}
	}
	return true
}

func (c *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) > time.Second {
		c.checked = now
		if st := c.stamps(); !st.same(c.stamp) {
			if err := c.load(); err != nil {
				c.log.Error("new serving certificate not loaded; the previous one stays", "error", err)
				c.stamp = st // do not retry on every handshake
			} else {
				c.log.Info("serving certificate reloaded")
			}
		}
	}
	return c.cert, nil
}
