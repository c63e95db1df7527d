package policy

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/replay"
)

// DefaultReloadEvery is how often a watched configuration file is read again.
const DefaultReloadEvery = 2 * time.Second

// FileWatch is how tokengate watches its configuration file, for Watch and for the
// sidecar alike. It reads the file by its path at every check, so that it sees a
// Kubernetes ConfigMap update, which swaps a symlink, as well as an edit in place, and
// hands on every content whose SHA-256 differs from the last one seen. It applies
// nothing itself.
type FileWatch struct {
	// Path is the configuration file.
	Path string
	// Every is the interval between two reads. Default DefaultReloadEvery.
	Every time.Duration
	// Changed receives every content that differs from the one seen before it: at
	// first the content Run was given the hash of, then the last one Changed received,
	// whether it was applied or refused, so that a refused file is not refused (and
	// logged) again at every check. It runs on Run's goroutine.
	Changed func(data []byte, sum [sha256.Size]byte)
	// Unreadable receives the error of a read that failed: a file that is missing (a
	// ConfigMap update may briefly leave none) or over the size cap. Such a read
	// changes nothing. nil ignores these errors.
	Unreadable func(err error)

	// read reads the file; nil is readConfig. Tests count reads with it.
	read func(path string) ([]byte, error)
}

// Run reads the file every Every until ctx ends. seen is the SHA-256 of the content
// already applied (the zero value: none, so the first content read is a change).
func (f FileWatch) Run(ctx context.Context, seen [sha256.Size]byte) {
	read := f.read
	if read == nil {
		read = readConfig
	}
	t := time.NewTicker(cmp.Or(f.Every, DefaultReloadEvery))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := read(f.Path)
		if err != nil {
			if f.Unreadable != nil {
				f.Unreadable(err)
			}
			continue
		}
		if sum := sha256.Sum256(data); sum != seen {
			seen = sum
			f.Changed(data, sum)
		}
	}
}

// readConfig reads a configuration file with the cap LoadFile applies.
func readConfig(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readCapped(f, maxConfigBytes)
}

// WatchOptions are a Watcher's collaborators and settings. The zero value works.
type WatchOptions struct {
	// Registerer receives the Gates' metrics and their key sets' (docs/metrics.md),
	// and the reload counts: tokengate_config_reloads_total and
	// tokengate_config_last_reload_successful. Default: a registry of the Watcher's
	// own, which nothing serves; pass the registry your /metrics serves.
	Registerer prometheus.Registerer
	// Logger receives a line per reload, and per refused file with every problem of
	// it; it is the Gates' logger too. Default slog.Default().
	Logger *slog.Logger
	// Every is how often the file is read again. Default DefaultReloadEvery.
	Every time.Duration
	// Overrides are applied to the file at every load.
	Overrides Overrides
	// Purpose is what the file is loaded for: ForService, or ForAuthz for the
	// decision service for gateways (authz.listen required). The zero value, ForProxy,
	// counts as ForService: a Watcher runs no proxy, so upstream may be missing.
	Purpose Purpose
	// Gate holds the Gates' other collaborators: ErrorWriter, Now, ClaimsChecks,
	// RequestChecks, Replay. Its Registerer and Logger are replaced by the ones
	// above. KeySource and Introspectors, when set, serve every Gate; by default the
	// Watcher makes the issuers' key sets and Introspectors and shares them between
	// the Gates of successive files, so that a reload fetches no key again and keeps
	// the introspection caches. Replay, when nil, is one in-memory store for every
	// Gate (a reload does not forget which tokens were used); a file that says
	// replay.store: redis needs it set (replay/redisstore), since policy imports no
	// Redis client.
	Gate middleware.Options
	// OnReload, when set, is called after every attempt to apply a changed file, on
	// the Watcher's goroutine: with the configuration now in force and nil, or with
	// the one that stays in force and the error (every problem of the file, as Load
	// reports them). A health check or a test can wait on it. It must not wait for
	// Close, which waits for it.
	OnReload func(l *Loaded, err error)
}

// memoryStoreEntries bounds the in-memory replay store of a Watcher, as the sidecar's
// is bounded (13 MiB of heap when full; docs/operations.md#memory): when it is full of
// unexpired records a new use is refused (503), never let through.
const memoryStoreEntries = 100_000

// Watcher runs a configuration file in a Go service: it holds the Gate of the file's
// current content and replaces it, between two requests, when the file changes. A file
// that does not load is refused: the running Gate stays, the refusal is logged with
// every problem, counted and passed to OnReload. Nothing ever serves without a Gate.
type Watcher struct {
	path    string
	opts    WatchOptions
	log     *slog.Logger
	reg     prometheus.Registerer
	metrics *ReloadMetrics
	keys    *jwks.Metrics
	store   replay.Store
	first   *Loaded

	cur atomic.Pointer[watchState]

	ctx       context.Context // of the key sets, the Gates and the file watch
	cancel    context.CancelFunc
	done      chan struct{} // closed when the file watch has returned
	closeOnce sync.Once

	mu   sync.Mutex // guards sets and ins
	sets shared[*jwks.Set]
	ins  shared[*middleware.Introspector]
}

// watchState is one configuration in force: its Gate, and the keys of what it
// borrows from the Watcher's shared key sets and Introspectors.
type watchState struct {
	loaded *Loaded
	gate   *middleware.Gate
	sets   []string
	ins    []string
}

// Watch loads the configuration file at path for a Go service (ForService: upstream
// may be missing), builds its Gate and watches the file: every Every it is read again,
// and a changed content that loads replaces the Gate. The first load's problems come
// back as Load's do, every one at once; then Watch starts nothing.
//
// The Watcher's goroutines (the file watch, the key sets' refreshes) stop when ctx
// ends or Close is called; Close also waits for them.
func Watch(ctx context.Context, path string, opts WatchOptions) (*Watcher, error) {
	data, err := readConfig(path)
	if err != nil {
		return nil, &Problem{Path: path, Message: err.Error()}
	}
	if opts.Purpose == ForProxy {
		opts.Purpose = ForService
	}
	l, err := Load(path, data, opts.Purpose, opts.Overrides)
	if err != nil {
		return nil, err
	}
	w := &Watcher{path: path, opts: opts, log: opts.Logger, reg: opts.Registerer, first: l, store: opts.Gate.Replay,
		sets: shared[*jwks.Set]{}, ins: shared[*middleware.Introspector]{}}
	if w.log == nil {
		w.log = slog.Default()
	}
	if w.reg == nil {
		w.reg = prometheus.NewRegistry()
	}
	if w.store == nil {
		if l.Replay.Store == StoreRedis {
			return nil, fmt.Errorf("policy: %s: replay.store is redis: give Watch the store (WatchOptions.Gate.Replay, from replay/redisstore)", path)
		}
		w.store = replay.NewMemory(memoryStoreEntries, opts.Gate.Now)
	}
	if w.metrics, err = NewReloadMetrics(w.reg); err != nil {
		return nil, err
	}
	if w.keys, err = jwks.NewMetrics(w.reg); err != nil {
		return nil, err
	}
	w.ctx, w.cancel = context.WithCancel(ctx)
	st, err := w.build(l)
	if err != nil {
		w.cancel()
		return nil, err
	}
	w.cur.Store(st)
	w.done = make(chan struct{})
	watch := FileWatch{Path: path, Every: opts.Every,
		Changed: func(data []byte, _ [sha256.Size]byte) { w.reload(data) },
		Unreadable: func(err error) {
			// A ConfigMap update may briefly leave no file; only a lasting problem is news.
			w.log.Debug("configuration file not readable", "path", path, "error", err)
		},
	}
	go func() {
		defer close(w.done)
		watch.Run(w.ctx, sha256.Sum256(data))
	}()
	return w, nil
}

// Gate returns the Gate in force. A reload replaces it, and closes the one it
// replaced: use it for one request, or use Handler.
func (w *Watcher) Gate() *middleware.Gate { return w.cur.Load().gate }

// Loaded returns the configuration in force. It is the caller's to read, not to change.
func (w *Watcher) Loaded() *Loaded { return w.cur.Load().loaded }

// Current returns the configuration in force and its Gate, read together: the two
// never belong to different files, as separate calls of Loaded and Gate across a
// reload could.
func (w *Watcher) Current() (*Loaded, *middleware.Gate) {
	st := w.cur.Load()
	return st.loaded, st.gate
}

// Handler enforces the route table of the configuration in force in front of next, as
// middleware.Gate.Handler does: each request is decided by the Gate in force when it
// arrives, from start to end, while a reload may give the next request another.
func (w *Watcher) Handler(next http.Handler) http.Handler {
	type bound struct {
		gate *middleware.Gate
		h    http.Handler
	}
	var last atomic.Pointer[bound]
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		g := w.Gate()
		b := last.Load()
		if b == nil || b.gate != g {
			// The first request after a reload wraps next anew; two at once both do,
			// and either result serves.
			b = &bound{gate: g, h: g.Handler(next)}
			last.Store(b)
		}
		b.h.ServeHTTP(rw, r)
	})
}

// Ready reports whether the Gate in force has every issuer's keys: a readiness
// probe's answer.
func (w *Watcher) Ready() bool { return w.Gate().Ready() }

// Close stops watching the file and the key sets' refreshes, and waits for their
// goroutines. Close it once the server that uses it has stopped: the Gate in force
// still decides, but refreshes no key.
func (w *Watcher) Close() {
	w.closeOnce.Do(func() {
		w.cancel()
		<-w.done
		st := w.cur.Load()
		st.gate.Close()
		w.mu.Lock()
		defer w.mu.Unlock()
		w.releaseLocked(st)
	})
}

// reload applies a changed file, or refuses it and keeps the running configuration.
func (w *Watcher) reload(data []byte) {
	cur := w.cur.Load()
	l, err := Load(w.path, data, w.opts.Purpose, w.opts.Overrides)
	var next *watchState
	if err == nil {
		next, err = w.build(l)
	}
	w.metrics.Observe(err)
	if err != nil {
		w.log.Error("configuration refused; the running configuration stays", "path", w.path, "error", err.Error())
		if w.opts.OnReload != nil {
			w.opts.OnReload(cur.loaded, err)
		}
		return
	}
	if !reflect.DeepEqual(l.Replay, w.first.Replay) {
		w.log.Warn("replay changes only on restart; the rest of the configuration is applied")
	}
	w.cur.Store(next)
	// Requests in flight finish with the old Gate: it owns nothing that they need
	// (key sets and Introspectors are the Watcher's, closed once no Gate uses them).
	cur.gate.Close()
	w.mu.Lock()
	w.releaseLocked(cur)
	w.mu.Unlock()
	w.log.Info("configuration reloaded", "path", w.path, "issuers", len(l.Gate.Issuers), "routes", len(l.Gate.Routes))
	if w.opts.OnReload != nil {
		w.opts.OnReload(l, nil)
	}
}

// build makes the Gate of a configuration, with the key sets and Introspectors of the
// running one where the issuer's settings are the same.
func (w *Watcher) build(l *Loaded) (*watchState, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := &watchState{loaded: l}
	o := w.opts.Gate
	o.Registerer, o.Logger, o.Replay = w.reg, w.log, w.store
	if o.KeySource == nil {
		var sets []*jwks.Set
		for _, iss := range l.Gate.Issuers {
			k := jsonKey(iss.Config)
			set, err := w.sets.acquire(k, func() (*jwks.Set, error) {
				return jwks.New(w.ctx, iss.Config, jwks.Options{Logger: w.log, Metrics: w.keys, Now: o.Now})
			})
			if err != nil {
				w.releaseLocked(st)
				return nil, err
			}
			st.sets = append(st.sets, k)
			sets = append(sets, set)
		}
		group, err := jwks.GroupOf(sets...)
		if err != nil {
			w.releaseLocked(st)
			return nil, err
		}
		o.KeySource = group
	}
	if o.Introspectors == nil {
		o.Introspectors = map[string]*middleware.Introspector{}
		for _, iss := range l.Gate.Issuers {
			in := iss.Introspection
			if !in.OpaqueTokens && !in.Always {
				continue
			}
			// The secret counts by its hash: a rotated secret is a new Introspector.
			secret := sha256.Sum256(in.ClientSecret)
			in.ClientSecret = secret[:]
			k := jsonKey(struct {
				Issuer       string
				InsecureHTTP bool
				In           middleware.Introspection
			}{iss.Issuer, iss.InsecureHTTP, in})
			made, err := w.ins.acquire(k, func() (*middleware.Introspector, error) { return middleware.NewIntrospector(iss, w.reg) })
			if err != nil {
				w.releaseLocked(st)
				return nil, err
			}
			st.ins = append(st.ins, k)
			o.Introspectors[iss.Issuer] = made
		}
	}
	gate, err := middleware.New(w.ctx, l.Gate, o)
	if err != nil {
		w.releaseLocked(st)
		return nil, err
	}
	st.gate = gate
	return st, nil
}

// releaseLocked drops a configuration's hold on its key sets and Introspectors, and
// closes those no configuration uses any more.
func (w *Watcher) releaseLocked(st *watchState) {
	for _, k := range st.sets {
		w.sets.release(k, func(s *jwks.Set) {
			s.Close()
			if !w.issuerInUse(s.Issuer()) {
				w.keys.Forget(s.Issuer())
			}
		})
	}
	for _, k := range st.ins {
		w.ins.release(k, (*middleware.Introspector).Close)
	}
	st.sets, st.ins = nil, nil
}

func (w *Watcher) issuerInUse(issuer string) bool {
	for _, it := range w.sets {
		if it.v.Issuer() == issuer {
			return true
		}
	}
	return false
}

// jsonKey is the identity of a setting: two configurations with the same one share
// what it makes.
func jsonKey(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// shared holds what the configurations of successive files share, by key, counting
// the configurations that use each.
type shared[T any] map[string]*sharedItem[T]

type sharedItem[T any] struct {
	v    T
	refs int
}

// acquire returns the value of key, made by newValue when no configuration holds it.
func (s shared[T]) acquire(key string, newValue func() (T, error)) (T, error) {
	if it, ok := s[key]; ok {
		it.refs++
		return it.v, nil
	}
	v, err := newValue()
	if err != nil {
		return v, err
	}
	s[key] = &sharedItem[T]{v: v, refs: 1}
	return v, nil
}

// release drops one hold on key, and closes its value when it was the last.
func (s shared[T]) release(key string, closeValue func(T)) {
	it, ok := s[key]
	if !ok {
		return
	}
	if it.refs--; it.refs == 0 {
		delete(s, key)
		closeValue(it.v)
	}
}
