package sidecar

import (
	"context"
	"crypto/sha256"
	"os"
	"reflect"
	"time"
)

// watch re-reads the configuration file every ReloadEvery and applies it when its
// content changed. It reads the file by its path each time, so it sees a Kubernetes
// ConfigMap update, which swaps a symlink, as well as an edit in place. A file that
// cannot be read or is not valid is refused, logged and counted, and the running
// configuration stays.
func (s *Sidecar) watch(ctx, keyCtx context.Context) {
	t := time.NewTicker(s.opts.ReloadEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.reloadIfChanged(keyCtx)
	}
}

// reloadIfChanged applies the configuration file if its content differs from the
// running configuration's. It reports whether it tried.
func (s *Sidecar) reloadIfChanged(keyCtx context.Context) bool {
	data, err := readConfig(s.opts.ConfigPath)
	cur := s.state.Load()
	if err != nil {
		// A ConfigMap update may briefly leave no file; only a lasting problem is news.
		s.log.Debug("configuration file not readable", "path", s.opts.ConfigPath, "error", err)
		return false
	}
	sum := sha256.Sum256(data)
	if sum == cur.sum {
		return false
	}
	l, err := Load(s.opts.ConfigPath, data, ForProxy, s.opts.Overrides)
	if err != nil {
		s.refused(cur, sum, err)
		return true
	}
	if l.Listen != cur.loaded.Listen || l.Admin != cur.loaded.Admin {
		s.log.Warn("listen and admin addresses change only on restart; the rest of the configuration is applied",
			"listen", cur.loaded.Listen, "admin", cur.loaded.Admin)
	}
	if !reflect.DeepEqual(l.TLS, s.first.TLS) || !reflect.DeepEqual(l.Replay, s.first.Replay) {
		s.log.Warn("tls and replay change only on restart (certificate files are re-read as they change); the rest of the configuration is applied")
	}
	next, err := s.build(keyCtx, l, sum)
	if err != nil {
		s.refused(cur, sum, err)
		return true
	}
	s.state.Store(next)
	// Requests in flight finish with the old Gate; its key sets are shared or closed
	// once no configuration uses them. The Gate itself owns nothing else.
	s.release(cur.sets)
	s.releaseIntrospectors(cur.introspectors)
	cur.gate.Close()
	s.metrics.reloads.WithLabelValues("success").Inc()
	s.metrics.reloadOK.Set(1)
	s.log.Info("configuration reloaded", "path", s.opts.ConfigPath, "issuers", len(l.Gate.Issuers), "routes", len(l.Gate.Routes), "mode", modeOf(l))
	return true
}

// refused keeps the running configuration, and remembers the refused content so that
// it is not refused (and logged) again every few seconds.
func (s *Sidecar) refused(cur *state, sum [32]byte, err error) {
	s.metrics.reloads.WithLabelValues("error").Inc()
	s.metrics.reloadOK.Set(0)
	s.log.Error("configuration refused; the running configuration stays", "path", s.opts.ConfigPath, "error", err.Error())
	kept := *cur
	kept.sum = sum
	s.state.CompareAndSwap(cur, &kept)
}

// readConfig reads the configuration file with the cap LoadFile applies at start.
func readConfig(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readCapped(f, maxConfigBytes)
}
