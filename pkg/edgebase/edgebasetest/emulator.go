package edgebasetest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// DefaultServiceKey is the root service key when Options.ServiceKey is empty.
const DefaultServiceKey = "edgebase-emulator-key"

// DefaultEvictAfter is how long workerd keeps an idle Durable Object in
// memory (measured on the peer: warm after 9 s idle, cold after 11 s).
const DefaultEvictAfter = 10 * time.Second

// Options configure an Emulator. The zero value is usable.
type Options struct {
	// ServiceKey is the root service key (the SERVICE_KEY secret).
	ServiceKey string
	// Config is the EdgeBase config; nil means DefaultConfig().
	Config *Config
	// StateDir holds all data (Miniflare layout under StateDir/v3). Empty:
	// a temporary directory removed by Close. An existing directory is
	// reused, so a state survives a new Emulator on the same dir.
	StateDir string
	// Worker is the worker (script) name; it names the DO directory
	// (<Worker>-DatabaseDO) and determines the DO hex ids. Default
	// "edgebase".
	Worker string
	// Now is the clock for timestamps, generated ids and DO eviction.
	Now func() time.Time
	// Addr is the listen address; default 127.0.0.1:0.
	Addr string
	// EvictAfter is the idle time after which a DO is cold (forgets the
	// name it was addressed by); 0 means DefaultEvictAfter, < 0 never.
	EvictAfter time.Duration
	// Env holds worker variables: secrets named by serviceKeys secretRef
	// (SERVICE_KEY defaults to ServiceKey) and ENVIRONMENT for key
	// constraints.
	Env map[string]string
	// SeparateD1 gives every D1 binding its own database, as on Cloudflare.
	// The peer (wrangler dev) shares one database between AUTH_DB,
	// CONTROL_DB and every DB_D1_<NS>, which is what the restore-data
	// "no such table" quirk depends on.
	SeparateD1 bool
	// Quirks switches on nondeterministic peer behaviour.
	Quirks Quirks
	// Profile selects the server generation to behave like: the zero
	// value is 0.2.8 (the peer), Profile05 the 0.4.x-0.5.x changes of
	// Appendix B.
	Profile Profile
}

// Quirks are peer behaviours that depend on timing on the real server and
// are therefore off unless asked for.
type Quirks struct {
	// ColdRestoreLocked makes that many restore-do calls fail with the
	// peer's 500 ("Database request failed while handling
	// '/internal/backup/restore'") after an instance DO that already has
	// data was woken from cold by a request. On the peer the gate's
	// unfinished "SELECT 1 FROM _meta" cursor makes DROP TABLE fail with
	// SQLITE_LOCKED until the isolate collects it (seconds to minutes).
	ColdRestoreLocked int
}

// Emulator is an in-process EdgeBase server speaking the peer's admin backup
// API and a public REST subset, on real SQLite files.
type Emulator struct {
	opts     Options
	cfg      Config
	key      string
	worker   string
	stateDir string
	ownDir   bool
	now      func() time.Time

	d1  *d1Store
	dos *doStore
	r2  *r2Store

	ln  net.Listener
	srv *http.Server
	url string
	// fresh holds connections that have not sent a request yet (a client
	// transport may dial one and then use another): Close drops them
	// instead of waiting for them as http.Server.Shutdown does.
	freshMu sync.Mutex
	fresh   map[net.Conn]bool

	idSeq    atomic.Uint64
	idMu     sync.Mutex
	idLastMs uint64
	idRand   [10]byte
	faults   faultSet
	reqlog   requestLog
	closeMu  sync.Mutex
	closed   bool
}

// New starts an emulator listening on Options.Addr.
func New(opts Options) (*Emulator, error) {
	e := &Emulator{opts: opts}
	e.cfg = DefaultConfig()
	if opts.Config != nil {
		e.cfg = *opts.Config
	}
	e.key = opts.ServiceKey
	if e.key == "" {
		e.key = DefaultServiceKey
	}
	e.worker = opts.Worker
	if e.worker == "" {
		e.worker = "edgebase"
	}
	e.now = opts.Now
	if e.now == nil {
		e.now = time.Now
	}
	evict := opts.EvictAfter
	if evict == 0 {
		evict = DefaultEvictAfter
	}
	e.stateDir = opts.StateDir
	if e.stateDir == "" {
		d, err := os.MkdirTemp("", "edgebase-emulator-")
		if err != nil {
			return nil, fmt.Errorf("edgebasetest: state dir: %w", err)
		}
		e.stateDir, e.ownDir = d, true
	} else if err := os.MkdirAll(e.stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("edgebasetest: state dir: %w", err)
	}
	e.d1 = newD1Store(e.stateDir, e.worker, opts.SeparateD1)
	e.dos = newDOStore(e.stateDir, e.worker, &e.cfg, e.now, evict, opts.Quirks.ColdRestoreLocked)
	r2, err := newR2Store(e.stateDir, e.worker)
	if err != nil {
		e.cleanupDir()
		return nil, err
	}
	e.r2 = r2
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = e.r2.close()
		e.cleanupDir()
		return nil, fmt.Errorf("edgebasetest: listen %s: %w", addr, err)
	}
	e.ln = ln
	e.url = "http://" + ln.Addr().String()
	e.fresh = map[net.Conn]bool{}
	e.srv = &http.Server{Handler: e, ReadHeaderTimeout: 30 * time.Second, ConnState: e.connState}
	e.srv.RegisterOnShutdown(e.closeFresh)
	go func() { _ = e.srv.Serve(ln) }()
	return e, nil
}

// NewTest starts an emulator that is closed when tb ends; it fails tb on
// error.
func NewTest(tb testing.TB, opts Options) *Emulator {
	tb.Helper()
	e, err := New(opts)
	if err != nil {
		tb.Fatalf("edgebasetest: %v", err)
	}
	tb.Cleanup(func() {
		if err := e.Close(); err != nil {
			tb.Errorf("edgebasetest: close: %v", err)
		}
	})
	return e
}

// URL is the base URL, e.g. http://127.0.0.1:PORT (no trailing slash).
func (e *Emulator) URL() string { return e.url }

// ServiceKey is the root service key.
func (e *Emulator) ServiceKey() string { return e.key }

// StateDir is the data directory (Miniflare layout under v3/).
func (e *Emulator) StateDir() string { return e.stateDir }

// Worker is the worker (script) name used for DO ids.
func (e *Emulator) Worker() string { return e.worker }

// Profile is the server generation the emulator behaves like.
func (e *Emulator) Profile() Profile { return e.opts.Profile }

// Config returns a copy of the config in use.
func (e *Emulator) Config() Config { return e.cfg }

// DOID returns the hex id of the DatabaseDO named name.
func (e *Emulator) DOID(name string) string { return e.dos.ids.fromName(name) }

// DOInstances lists every DatabaseDO instance with storage (a file), like
// list-do-names.sh does on the peer's state. Instances touched only through
// a rejected request (400 INVALID_DB_INSTANCE_ID, needsCreate) exist as
// files holding just __miniflare_do_name, exactly as on the peer; HasData
// tells them apart.
func (e *Emulator) DOInstances(ctx context.Context) ([]DOInstance, error) {
	return e.dos.list(ctx)
}

// Restart simulates a dev-server restart: every DO becomes cold (forgets
// its name until addressed by name again, and list-dos hex mode drops it)
// and the Worker's per-process schema caches are cleared.
func (e *Emulator) Restart() {
	e.d1.restart()
	e.dos.restart()
}

// Close stops the server and releases files; a temporary state dir is
// removed.
func (e *Emulator) Close() error {
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Shutdown closes the listener, then the fresh connections (see
	// e.fresh), and waits for requests in flight: one left at Close is a
	// client that did not finish its request, reported as an error.
	errs := []error{e.srv.Shutdown(ctx)}
	e.dos.close()
	errs = append(errs, e.d1.close(), e.r2.close())
	e.cleanupDir()
	return errors.Join(errs...)
}

func (e *Emulator) connState(c net.Conn, s http.ConnState) {
	e.freshMu.Lock()
	defer e.freshMu.Unlock()
	if s == http.StateNew {
		e.fresh[c] = true
	} else {
		delete(e.fresh, c)
	}
}

// closeFresh runs when Shutdown has closed the listener.
func (e *Emulator) closeFresh() {
	e.freshMu.Lock()
	defer e.freshMu.Unlock()
	for c := range e.fresh {
		_ = c.Close()
	}
}

func (e *Emulator) cleanupDir() {
	if e.ownDir {
		_ = os.RemoveAll(e.stateDir)
	}
}

// timestamp is new Date().toISOString().
func (e *Emulator) timestamp() string { return isoTime(e.now()) }

func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// newID returns a UUIDv7 from the clock. Like the peer's generator it is
// monotonic: within one millisecond (or if the clock goes back) the
// previous id's random part is incremented. Fresh random parts are derived
// from a counter, so runs with a fixed clock produce the same ids.
func (e *Emulator) newID() string {
	e.idMu.Lock()
	defer e.idMu.Unlock()
	ms := uint64(e.now().UnixMilli())
	if ms <= e.idLastMs && e.idLastMs != 0 {
		ms = e.idLastMs
		for i := len(e.idRand) - 1; i >= 0; i-- {
			e.idRand[i]++
			if e.idRand[i] != 0 {
				break
			}
		}
	} else {
		var seed [8]byte
		binary.BigEndian.PutUint64(seed[:], e.idSeq.Add(1))
		r := sha256.Sum256(append([]byte(e.worker+"/"), seed[:]...))
		copy(e.idRand[:], r[:10])
		e.idRand[2] &= 0x3f // leave headroom so increments rarely carry into the variant bits
	}
	e.idLastMs = ms
	var b [16]byte
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	// rand_a (12 bits) from idRand[0:2], rand_b (62 bits) from idRand[2:10].
	b[6] = 0x70 | (e.idRand[0] & 0x0f)
	b[7] = e.idRand[1]
	b[8] = 0x80 | (e.idRand[2] & 0x3f)
	copy(b[9:], e.idRand[3:10])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// secret resolves a dashboard secret by its env name.
func (e *Emulator) secret(ref string) string {
	if v, ok := e.opts.Env[ref]; ok {
		return v
	}
	if ref == "SERVICE_KEY" {
		return e.key
	}
	return ""
}

// keyResult is validateKey's answer.
type keyResult int

const (
	keyValid keyResult = iota
	keyInvalid
	keyMissing
)

type resolvedKey struct {
	ServiceKey
	secret string
}

func (e *Emulator) keymap() []resolvedKey {
	var out []resolvedKey
	for _, k := range e.cfg.ServiceKeys {
		if k.Enabled != nil && !*k.Enabled {
			continue
		}
		var s string
		if k.SecretSource == "inline" {
			s = k.InlineSecret
		} else if k.SecretRef != "" {
			s = e.secret(k.SecretRef)
		}
		if s == "" {
			continue
		}
		out = append(out, resolvedKey{k, s})
	}
	return out
}

// validateKey is the peer's validateKey/validateScopedKey for one scope.
func (e *Emulator) validateKey(r *http.Request, scope string) keyResult {
	vals, present := r.Header[http.CanonicalHeaderKey("X-EdgeBase-Service-Key")]
	km := e.keymap()
	if !present {
		return keyMissing
	}
	provided := ""
	if len(vals) > 0 {
		provided = vals[0]
	}
	if provided == "" {
		return keyInvalid
	}
	if len(km) == 0 {
		return keyMissing
	}
	if strings.HasPrefix(provided, "jb_") {
		if i := strings.IndexByte(provided[3:], '_'); i > 0 {
			kid := provided[3 : 3+i]
			for _, k := range km {
				if k.Kid != kid {
					continue
				}
				if provided != k.secret || !e.constraintsOK(r, k.ServiceKey) || !matchesScope(scope, k.ServiceKey) {
					return keyInvalid
				}
				return keyValid
			}
			return keyInvalid
		}
	}
	foundRoot := false
	for _, k := range km {
		if k.Tier != "root" {
			continue
		}
		foundRoot = true
		if provided == k.secret {
			if !e.constraintsOK(r, k.ServiceKey) {
				return keyInvalid
			}
			return keyValid
		}
	}
	if foundRoot {
		return keyInvalid
	}
	return keyMissing
}

func matchesScope(required string, k ServiceKey) bool {
	if k.Tier == "root" {
		return true
	}
	req := strings.Split(required, ":")
	for _, s := range k.Scopes {
		if s == "*" {
			return true
		}
		parts := strings.Split(s, ":")
		if len(parts) != len(req) {
			continue
		}
		ok := true
		for i := range parts {
			if parts[i] != "*" && parts[i] != req[i] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (e *Emulator) constraintsOK(r *http.Request, k ServiceKey) bool {
	if k.ExpiresAt != "" {
		if t, err := time.Parse(time.RFC3339Nano, k.ExpiresAt); err == nil && !e.now().Before(t) {
			return false
		}
	}
	if len(k.Env) > 0 {
		env := e.opts.Env["ENVIRONMENT"]
		found := false
		for _, v := range k.Env {
			if v == env && env != "" {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	if len(k.IPCidr) > 0 {
		ipStr := r.Header.Get("CF-Connecting-IP")
		if ipStr == "" {
			ipStr, _, _ = net.SplitHostPort(r.RemoteAddr)
		}
		ip := net.ParseIP(strings.TrimSpace(ipStr))
		found := false
		for _, c := range k.IPCidr {
			if _, n, err := net.ParseCIDR(c); err == nil && ip != nil && n.Contains(ip) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
