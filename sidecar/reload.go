package sidecar

import (
	"context"
	"crypto/sha256"
	"reflect"

	"github.com/tokengate/tokengate/policy"
)

// watch applies the configuration file whenever its content changes: policy.FileWatch
// reads it by its path every ReloadEvery, so it sees a Kubernetes ConfigMap update,
// which swaps a symlink, as well as an edit in place. A file that cannot be read or is
// not valid is refused, logged and counted, and the running configuration stays. seen
// is the hash of the content running.
func (s *Sidecar) watch(ctx, keyCtx context.Context, seen [sha256.Size]byte) {
	policy.FileWatch{
		Path:    s.opts.ConfigPath,
		Every:   s.opts.ReloadEvery,
		Changed: func(data []byte, _ [sha256.Size]byte) { s.reload(keyCtx, data) },
		Unreadable: func(err error) {
			// A ConfigMap update may briefly leave no file; only a lasting problem is news.
			s.log.Debug("configuration file not readable", "path", s.opts.ConfigPath, "error", err)
		},
	}.Run(ctx, seen)
}

// reload applies a changed configuration file, or refuses it. The watch does not hand
// a refused content over again until it changes.
func (s *Sidecar) reload(keyCtx context.Context, data []byte) {
	cur := s.state.Load()
	l, err := policy.Load(s.opts.ConfigPath, data, policy.ForProxy, s.opts.Overrides)
	if err != nil {
		s.refused(err)
		return
	}
	if l.Listen != cur.loaded.Listen || l.Admin != cur.loaded.Admin {
		s.log.Warn("listen and admin addresses change only on restart; the rest of the configuration is applied",
			"listen", cur.loaded.Listen, "admin", cur.loaded.Admin)
	}
	if !reflect.DeepEqual(l.TLS, s.first.TLS) || !reflect.DeepEqual(l.Replay, s.first.Replay) {
		s.log.Warn("tls and replay change only on restart (certificate files are re-read as they change); the rest of the configuration is applied")
	}
	next, err := s.build(keyCtx, l)
	if err != nil {
		s.refused(err)
		return
	}
	s.state.Store(next)
	// Requests in flight finish with the old Gate; its key sets are shared or closed
	// once no configuration uses them. The Gate itself owns nothing else.
	s.release(cur.sets)
	s.releaseIntrospectors(cur.introspectors)
	cur.gate.Close()
	s.metrics.reloads.Observe(nil)
	s.log.Info("configuration reloaded", "path", s.opts.ConfigPath, "issuers", len(l.Gate.Issuers), "routes", len(l.Gate.Routes), "mode", modeOf(l))
}

// refused counts and logs a refused file; the running configuration stays.
func (s *Sidecar) refused(err error) {
	s.metrics.reloads.Observe(err)
	s.log.Error("configuration refused; the running configuration stays", "path", s.opts.ConfigPath, "error", err.Error())
}
