// Command rawfloor is the benchmark's lower bound: it sends a backup's or a
// restore's admin API requests to an EdgeBase server with a fixed number
// in flight and does nothing else. Create discards every reply body;
// restore sends bodies it fetched into memory from a source server before
// the clock starts. What edgevault needs on top of this wall time is its
// own cost (decoding, validation, archive writing, staging).
//
//	rawfloor create  -url U -key K [-storage] [-instances ns:id,...] [-c 20]
//	rawfloor restore -url U -key K -source S -source-key K2 [-storage] [-instances ...] [-c 20] [-do-c 10]
//
// The requests mirror edgevault's: create reads config, list-dos and (with
// -storage) the storage list, then dumps control D1, auth D1, every data
// namespace and every DO and gets every object; restore reads config,
// touches the D1 tables, lists DOs (the orphan check), then restore-control-d1,
// restore-d1, restore-do per DO, restore-data, storage wipe and puts, and
// the users resync, phase by phase as edgevault orders them. It prints one
// line: RESULT op=... wall_s=... requests=... bytes=... retries=...
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/pkg/edgebase"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rawfloor:", err)
		os.Exit(1)
	}
}

type options struct {
	op                   string
	url, key             string
	source, sourceKey    string
	storage              bool
	instances            []string
	inFlight, doInFlight int
	namespaceParallelism int
}

func parse(args []string) (options, error) {
	var o options
	if len(args) == 0 || (args[0] != "create" && args[0] != "restore") {
		return o, errors.New("usage: rawfloor create|restore -url U -key K [flags]")
	}
	o.op = args[0]
	fs := flag.NewFlagSet("rawfloor "+o.op, flag.ContinueOnError)
	fs.StringVar(&o.url, "url", "", "EdgeBase URL (the target for restore)")
	fs.StringVar(&o.key, "key", "", "service key")
	fs.StringVar(&o.source, "source", "", "restore: server to fetch the bodies from (untimed)")
	fs.StringVar(&o.sourceKey, "source-key", "", "restore: its service key")
	fs.BoolVar(&o.storage, "storage", false, "include R2 objects")
	inst := fs.String("instances", "", "dynamic DB instances (ns:id,...)")
	fs.IntVar(&o.inFlight, "c", 20, "requests in flight (edgevault: 2 x --concurrency)")
	fs.IntVar(&o.doInFlight, "do-c", 10, "restore: restore-do calls in flight (edgevault: --concurrency)")
	fs.IntVar(&o.namespaceParallelism, "ns-c", 4, "restore: restore-data calls in flight (edgevault: --namespace-concurrency)")
	if err := fs.Parse(args[1:]); err != nil {
		return o, err
	}
	if o.url == "" || o.key == "" {
		return o, errors.New("-url and -key are required")
	}
	if o.op == "restore" && (o.source == "" || o.sourceKey == "") {
		return o, errors.New("restore needs -source and -source-key")
	}
	if *inst != "" {
		o.instances = strings.Split(*inst, ",")
	}
	if o.inFlight < 1 || o.doInFlight < 1 || o.namespaceParallelism < 1 {
		return o, errors.New("concurrency flags must be at least 1")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	tr := edgebase.DefaultTransport()
	tr.MaxConnsPerHost = o.inFlight
	// The same bound on waiting for headers as edgevault's client: a
	// request the server never answers fails the run instead of hanging it.
	tr.ResponseHeaderTimeout = 30 * time.Second
	hc := &http.Client{Transport: tr}
	// Idle keep-alive connections would hold up a server's graceful
	// shutdown (the tests run the emulator in-process).
	defer hc.CloseIdleConnections()
	target := &server{base: strings.TrimRight(o.url, "/"), key: o.key, hc: hc}
	var start time.Time
	switch o.op {
	case "create":
		start = time.Now()
		err = create(ctx, target, o)
	case "restore":
		src := &server{base: strings.TrimRight(o.source, "/"), key: o.sourceKey, hc: hc}
		var b *bundle
		if b, err = fetch(ctx, src, o); err != nil {
			return err
		}
		target.requests.Store(0)
		target.bytes.Store(0)
		start = time.Now()
		err = restore(ctx, target, b, o)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "RESULT op=%s wall_s=%.3f requests=%d bytes=%d retries=%d\n", o.op,
		time.Since(start).Seconds(), target.requests.Load(), target.bytes.Load(), target.retries.Load())
	return err
}

// server sends requests and counts them.
type server struct {
	base, key string
	hc        *http.Client
	requests  atomic.Int64
	bytes     atomic.Int64 // reply bytes read plus request bytes sent
	retries   atomic.Int64
}

// send does one request; 5xx and transport errors are retried up to 3
// times (the peer restarts its worker now and then: "Your worker restarted
// mid-request"). The reply body goes to sink (io.Discard when nil).
func (s *server) send(ctx context.Context, method, path, contentType string, body []byte, sink io.Writer) (http.Header, error) {
	if sink == nil {
		sink = io.Discard
	}
	var last error
	for attempt := 0; attempt < 4; attempt++ {
		if attempt > 0 {
			s.retries.Add(1)
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(attempt) * 250 * time.Millisecond):
			}
		}
		var r io.Reader
		if body != nil {
			r = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, s.base+path, r)
		if err != nil {
			return nil, err
		}
		req.Header.Set("X-EdgeBase-Service-Key", s.key)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		s.requests.Add(1)
		resp, err := s.hc.Do(req)
		if err != nil {
			last = err
			continue
		}
		var n int64
		if resp.StatusCode < 300 {
			n, err = io.Copy(sink, resp.Body)
		} else {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
			err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
		}
		resp.Body.Close()
		s.bytes.Add(n + int64(len(body)))
		if err == nil {
			return resp.Header, nil
		}
		last = fmt.Errorf("%s %s: %w", method, path, err)
		if resp.StatusCode >= 300 && resp.StatusCode < 500 {
			return nil, last
		}
	}
	return nil, last
}

func (s *server) getJSON(ctx context.Context, method, path string, body []byte, v any) error {
	var buf bytes.Buffer
	ct := ""
	if body != nil {
		ct = "application/json"
	}
	if _, err := s.send(ctx, method, path, ct, body, &buf); err != nil {
		return err
	}
	return json.Unmarshal(buf.Bytes(), v)
}

const api = "/admin/api/backup/"

// plan is what both directions enumerate first.
type plan struct {
	cfg        *edgebase.Config
	dos        []string
	namespaces []string
	objects    []string
}

func enumerate(ctx context.Context, s *server, o options, storage bool) (*plan, error) {
	var buf bytes.Buffer
	if _, err := s.send(ctx, http.MethodGet, api+"config", "", nil, &buf); err != nil {
		return nil, err
	}
	cfg, err := edgebase.ParseConfig(buf.Bytes())
	if err != nil {
		return nil, err
	}
	p := &plan{cfg: cfg}
	var listed struct {
		DOs []struct {
			DOName string `json:"doName"`
			Type   string `json:"type"`
		} `json:"dos"`
	}
	if err := s.getJSON(ctx, http.MethodPost, api+"list-dos", []byte("{}"), &listed); err != nil {
		return nil, err
	}
	for _, d := range listed.DOs {
		if b, ok := cfg.Block(d.DOName); d.Type != "database" || (ok && b.Dynamic()) {
			continue
		}
		p.dos = append(p.dos, d.DOName)
	}
	p.dos = append(p.dos, o.instances...)
	for _, b := range cfg.Databases {
		if b.DataNamespace() {
			p.namespaces = append(p.namespaces, b.Name)
		}
	}
	if storage {
		var list struct {
			Objects []struct {
				Key string `json:"key"`
			} `json:"objects"`
		}
		if err := s.getJSON(ctx, http.MethodPost, api+"dump-storage?action=list", nil, &list); err != nil {
			return nil, err
		}
		for _, obj := range list.Objects {
			p.objects = append(p.objects, obj.Key)
		}
	}
	return p, nil
}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// objectPath is a storage route with its action and the key encoded as
// edgevault (and the official CLI) encode it.
func objectPath(route, action, key string) string {
	return api + route + "?action=" + action + "&key=" + edgebase.EncodeURIComponent(key)
}

// create fires every dump and object get of one backup.
func create(ctx context.Context, s *server, o options) error {
	p, err := enumerate(ctx, s, o, o.storage)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.inFlight)
	post := func(path string, body []byte) {
		g.Go(func() error {
			_, err := s.send(gctx, http.MethodPost, path, "application/json", body, nil)
			return err
		})
	}
	post(api+"dump-control-d1", nil)
	post(api+"dump-d1", nil)
	for _, ns := range p.namespaces {
		post(api+"dump-data", jsonBody(map[string]string{"namespace": ns}))
	}
	for _, d := range p.dos {
		post(api+"dump-do", jsonBody(map[string]string{"doName": d, "type": "database"}))
	}
	for _, k := range p.objects {
		g.Go(func() error {
			_, err := s.send(gctx, http.MethodPost, objectPath("dump-storage", "get", k), "", nil, nil)
			return err
		})
	}
	return g.Wait()
}

// bundle holds every restore request body, built before timing starts.
type bundle struct {
	control, auth []byte
	namespaces    [][]byte
	dos           [][]byte
	objects       []objectBody
}

type objectBody struct {
	key, contentType string
	data             []byte
}

// tablesOf extracts a dump's "tables" object, without Miniflare's own
// __miniflare_do_name table (it is no user data).
func tablesOf(dump []byte) (json.RawMessage, error) {
	var d struct {
		Tables map[string]json.RawMessage `json:"tables"`
	}
	if err := json.Unmarshal(dump, &d); err != nil {
		return nil, err
	}
	delete(d.Tables, "__miniflare_do_name")
	return json.Marshal(d.Tables)
}

func fetch(ctx context.Context, src *server, o options) (*bundle, error) {
	p, err := enumerate(ctx, src, o, o.storage)
	if err != nil {
		return nil, err
	}
	b := &bundle{namespaces: make([][]byte, len(p.namespaces)), dos: make([][]byte, len(p.dos)), objects: make([]objectBody, len(p.objects))}
	dump := func(path string, body []byte) (json.RawMessage, error) {
		var buf bytes.Buffer
		if _, err := src.send(ctx, http.MethodPost, path, "application/json", body, &buf); err != nil {
			return nil, err
		}
		return tablesOf(buf.Bytes())
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.inFlight)
	g.Go(func() error {
		t, err := dump(api+"dump-control-d1", nil)
		b.control = jsonBody(map[string]any{"tables": t})
		return err
	})
	g.Go(func() error {
		t, err := dump(api+"dump-d1", nil)
		b.auth = jsonBody(map[string]any{"tables": t})
		return err
	})
	for i, ns := range p.namespaces {
		g.Go(func() error {
			t, err := dump(api+"dump-data", jsonBody(map[string]string{"namespace": ns}))
			b.namespaces[i] = jsonBody(map[string]any{"namespace": ns, "tables": t})
			return err
		})
	}
	for i, d := range p.dos {
		g.Go(func() error {
			t, err := dump(api+"dump-do", jsonBody(map[string]string{"doName": d, "type": "database"}))
			b.dos[i] = jsonBody(map[string]any{"doName": d, "type": "database", "tables": t})
			return err
		})
	}
	for i, k := range p.objects {
		g.Go(func() error {
			var buf bytes.Buffer
			h, err := src.send(gctx, http.MethodPost, objectPath("dump-storage", "get", k), "", nil, &buf)
			if err != nil {
				return err
			}
			mu.Lock()
			b.objects[i] = objectBody{key: k, contentType: h.Get("Content-Type"), data: buf.Bytes()}
			mu.Unlock()
			return nil
		})
	}
	return b, g.Wait()
}

// restore sends the bundle to the target in edgevault's phase order.
func restore(ctx context.Context, s *server, b *bundle, o options) error {
	p, err := enumerate(ctx, s, o, false)
	if err != nil {
		return err
	}
	// Prime: one read of each D1 table (a never-used local target creates
	// them on first touch).
	for _, blk := range p.cfg.Databases {
		if !blk.DataNamespace() || blk.Postgres() {
			continue
		}
		for _, t := range blk.Tables {
			if _, err := s.send(ctx, http.MethodGet, "/api/db/"+url.PathEscape(blk.Name)+"/tables/"+url.PathEscape(t.Name)+"?limit=1", "", nil, nil); err != nil {
				return err
			}
		}
	}
	if _, err := s.send(ctx, http.MethodPost, api+"restore-control-d1", "application/json", b.control, nil); err != nil {
		return err
	}
	if _, err := s.send(ctx, http.MethodPost, api+"restore-d1", "application/json", b.auth, nil); err != nil {
		return err
	}
	phase := func(limit int, n int, fn func(ctx context.Context, i int) error) error {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(limit)
		for i := 0; i < n; i++ {
			g.Go(func() error { return fn(gctx, i) })
		}
		return g.Wait()
	}
	if err := phase(o.doInFlight, len(b.dos), func(ctx context.Context, i int) error {
		_, err := s.send(ctx, http.MethodPost, api+"restore-do", "application/json", b.dos[i], nil)
		return err
	}); err != nil {
		return err
	}
	if err := phase(o.namespaceParallelism, len(b.namespaces), func(ctx context.Context, i int) error {
		_, err := s.send(ctx, http.MethodPost, api+"restore-data", "application/json", b.namespaces[i], nil)
		return err
	}); err != nil {
		return err
	}
	if o.storage {
		if _, err := s.send(ctx, http.MethodPost, api+"restore-storage?action=wipe", "", nil, nil); err != nil {
			return err
		}
		if err := phase(o.inFlight, len(b.objects), func(ctx context.Context, i int) error {
			ob := b.objects[i]
			_, err := s.send(ctx, http.MethodPost, objectPath("restore-storage", "put", ob.key), ob.contentType, ob.data, nil)
			return err
		}); err != nil {
			return err
		}
	}
	_, err = s.send(ctx, http.MethodPost, api+"resync-users-public", "", nil, nil)
	return err
}
