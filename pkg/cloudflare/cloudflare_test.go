package cloudflare_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/cloudflare"
	"github.com/edgevault/edgevault/pkg/cloudflare/cloudflaretest"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// fakeClock is the injected time source: Sleep records the duration and
// moves the clock, so minutes of waiting cost nothing. It starts at the real
// time so it can be compared with context deadlines.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.t = c.t.Add(d)
	return nil
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sleeps)
}

type env struct {
	srv      *cloudflaretest.Server
	retryClk *fakeClock // client's retry sleeps
	limitClk *fakeClock // limiter's waits
	limiter  *cloudflare.Limiter
}

func newEnv(t *testing.T, cfg cloudflaretest.Config) *env {
	t.Helper()
	srv := cloudflaretest.NewServer(cfg)
	t.Cleanup(srv.Close)
	e := &env{srv: srv, retryClk: newFakeClock(), limitClk: newFakeClock()}
	var err error
	e.limiter, err = cloudflare.NewLimiter(cloudflare.LimiterConfig{Now: e.limitClk.Now, Sleep: e.limitClk.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// client builds a client against the emulator; edit adjusts the options.
func (e *env) client(t *testing.T, edit func(*cloudflare.Options)) *cloudflare.Client {
	t.Helper()
	o := cloudflare.Options{
		BaseURL:   e.srv.URL(),
		AccountID: e.srv.AccountID(),
		Token:     sensitive.String(cloudflaretest.DefaultToken),
		Limiter:   e.limiter,
		Retry:     cloudflare.RetryPolicy{MaxAttempts: 4, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second},
		Now:       e.retryClk.Now,
		Sleep:     e.retryClk.Sleep,
	}
	if edit != nil {
		edit(&o)
	}
	c, err := cloudflare.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) addObjects(t *testing.T, nsID string, objs []cloudflaretest.Object) {
	t.Helper()
	if err := e.srv.AddObjects(nsID, objs...); err != nil {
		t.Fatal(err)
	}
}

// objects returns n objects; every third one has no stored data.
func objects(from, n int) (all []cloudflaretest.Object, stored []string, noData int) {
	for i := from; i < from+n; i++ {
		o := cloudflaretest.Object{ID: cloudflaretest.ObjectID(i), HasStoredData: i%3 != 0}
		all = append(all, o)
		if o.HasStoredData {
			stored = append(stored, o.ID)
		} else {
			noData++
		}
	}
	return all, stored, noData
}

func TestNamespacesPagination(t *testing.T) {
	for _, tc := range []struct {
		name      string
		serverCap int // server returns fewer than asked
		perPage   int
	}{
		{"client page size", 0, 2},
		{"server caps page size", 2, 100},
		{"exact multiple", 0, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, cloudflaretest.Config{MaxNamespacesPerPage: tc.serverCap})
			var want []cloudflare.Namespace
			for i := range 5 {
				ns := e.srv.AddNamespace(cloudflaretest.Namespace{
					Name: fmt.Sprintf("ns%d", i), Script: "edgebase", Class: cloudflare.ClassDatabaseDO, UseSQLite: i%2 == 0,
				})
				want = append(want, cloudflare.Namespace(ns))
			}
			c := e.client(t, func(o *cloudflare.Options) { o.NamespacesPerPage = tc.perPage })
			got, err := c.Namespaces(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("namespaces:\n got %+v\nwant %+v", got, want)
			}
			pageSize := tc.perPage
			if tc.serverCap > 0 {
				pageSize = tc.serverCap
			}
			if wantReq := (5 + pageSize - 1) / pageSize; e.srv.Requests() != wantReq {
				t.Fatalf("requests = %d, want %d", e.srv.Requests(), wantReq)
			}
		})
	}
}

func TestNamespacesEmptyAccount(t *testing.T) {
	e := newEnv(t, cloudflaretest.Config{})
	got, err := e.client(t, nil).Namespaces(context.Background())
	if err != nil || len(got) != 0 || e.srv.Requests() != 1 {
		t.Fatalf("got %v, %v after %d requests", got, err, e.srv.Requests())
	}
}

func TestNamespaceFilter(t *testing.T) {
	nss := []cloudflare.Namespace{
		{ID: "1", Script: "edgebase", Class: "DatabaseDO"},
		{ID: "2", Script: "edgebase", Class: "AuthDO"},
		{ID: "3", Script: "edgebase", Class: "RoomsDO"},
		{ID: "4", Script: "other-app", Class: "DatabaseDO"},
		{ID: "5", Script: "edgebase-staging", Class: "AuthDO"},
	}
	ids := func(nss []cloudflare.Namespace) (s []string) {
		for _, ns := range nss {
			s = append(s, ns.ID)
		}
		return s
	}
	for _, tc := range []struct {
		f    cloudflare.NamespaceFilter
		want []string
	}{
		{cloudflare.NamespaceFilter{}, []string{"1", "2", "4", "5"}},
		{cloudflare.NamespaceFilter{Script: "edgebase"}, []string{"1", "2"}},
		{cloudflare.NamespaceFilter{Script: "edgebase", Classes: []string{"DatabaseDO"}}, []string{"1"}},
		{cloudflare.NamespaceFilter{Classes: []string{"RoomsDO", "AuthDO"}}, []string{"2", "3", "5"}},
		{cloudflare.NamespaceFilter{Script: "nope"}, nil},
	} {
		if got := ids(tc.f.Filter(nss)); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: got %v, want %v", tc.f, got, tc.want)
		}
	}
}

func TestListObjectsPagination(t *testing.T) {
	// The server caps pages at 10 while the client asks for 10000, so the
	// client must follow the cursor rather than guess from the page size.
	e := newEnv(t, cloudflaretest.Config{MaxObjectsPerPage: 10})
	ns := e.srv.AddNamespace(cloudflaretest.Namespace{Script: "edgebase", Class: "DatabaseDO"})
	all, stored, noData := objects(0, 25)
	e.addObjects(t, ns.ID, all)

	var got []string
	var pageSizes []int
	counts, err := e.client(t, nil).ListObjects(context.Background(), ns.ID, func(ids []string) error {
		pageSizes = append(pageSizes, len(ids))
		got = append(got, ids...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, stored) {
		t.Fatalf("ids:\n got %v\nwant %v", got, stored)
	}
	want := cloudflare.ObjectCounts{Pages: 3, Stored: len(stored), NoData: noData}
	if counts != want {
		t.Fatalf("counts = %+v, want %+v", counts, want)
	}
	for _, n := range pageSizes {
		if n == 0 || n > 10 {
			t.Fatalf("callback got a page of %d ids", n)
		}
	}
	if e.srv.Requests() != 3 {
		t.Fatalf("requests = %d, want 3", e.srv.Requests())
	}
}

func TestListObjectsClientPageSize(t *testing.T) {
	e := newEnv(t, cloudflaretest.Config{})
	ns := e.srv.AddNamespace(cloudflaretest.Namespace{Class: "DatabaseDO"})
	all, stored, _ := objects(0, 30) // exactly 3 pages of 10
	e.addObjects(t, ns.ID, all)
	var n int
	counts, err := e.client(t, func(o *cloudflare.Options) { o.ObjectsPerPage = 10 }).
		ListObjects(context.Background(), ns.ID, func(ids []string) error { n += len(ids); return nil })
	if err != nil || n != len(stored) || counts.Pages != 3 {
		t.Fatalf("n=%d counts=%+v err=%v", n, counts, err)
	}
}

func TestListObjectsEmptyNamespace(t *testing.T) {
	e := newEnv(t, cloudflaretest.Config{})
	ns := e.srv.AddNamespace(cloudflaretest.Namespace{Class: "DatabaseDO"})
	called := false
	counts, err := e.client(t, nil).ListObjects(context.Background(), ns.ID, func([]string) error { called = true; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if called || counts != (cloudflare.ObjectCounts{Pages: 1}) {
		t.Fatalf("called=%v counts=%+v", called, counts)
	}
}

func TestListObjectsOnlyNoData(t *testing.T) {
	e := newEnv(t, cloudflaretest.Config{})
	ns := e.srv.AddNamespace(cloudflaretest.Namespace{Class: "DatabaseDO"})
	e.addObjects(t, ns.ID, []cloudflaretest.Object{{ID: cloudflaretest.ObjectID(1)}, {ID: cloudflaretest.ObjectID(2)}})
	counts, err := e.client(t, nil).ListObjects(context.Background(), ns.ID, func([]string) error {
		t.Fatal("callback called for a page without stored data")
		return nil
	})
	if err != nil || counts != (cloudflare.ObjectCounts{Pages: 1, NoData: 2}) {
		t.Fatalf("counts=%+v err=%v", counts, err)
	}
}

func TestListObjectsCallbackErrorStops(t *testing.T) {
	e := newEnv(t, cloudflaretest.Config{MaxObjectsPerPage: 10})
	ns := e.srv.AddNamespace(cloudflaretest.Namespace{Class: "DatabaseDO"})
	all, _, _ := objects(1, 50)
	e.addObjects(t, ns.ID, all)
	stop := errors.New("stop")
	_, err := e.client(t, nil).ListObjects(context.Background(), ns.ID, func([]string) error { return stop })
	if !errors.Is(err, stop) || e.srv.Requests() != 1 {
		t.Fatalf("err=%v after %d requests", err, e.srv.Requests())
	}
}

func TestEnumerate(t *testing.T) {
	e := newEnv(t, cloudflaretest.Config{MaxNamespacesPerPage: 2, MaxObjectsPerPage: 10})
	db := e.srv.AddNamespace(cloudflaretest.Namespace{Name: "edgebase_DatabaseDO", Script: "edgebase", Class: "DatabaseDO"})
	auth := e.srv.AddNamespace(cloudflaretest.Namespace{Name: "edgebase_AuthDO", Script: "edgebase", Class: "AuthDO"})
	other := e.srv.AddNamespace(cloudflaretest.Namespace{Name: "shop_DatabaseDO", Script: "shop", Class: "DatabaseDO"})
	rooms := e.srv.AddNamespace(cloudflaretest.Namespace{Name: "edgebase_RoomsDO", Script: "edgebase", Class: "RoomsDO"})
	empty := e.srv.AddNamespace(cloudflaretest.Namespace{Name: "edgebase_DatabaseDO2", Script: "edgebase", Class: "DatabaseDO"})
	dbObjs, dbStored, dbNoData := objects(0, 23)
	authObjs, authStored, authNoData := objects(100, 4)
	otherObjs, _, _ := objects(200, 5)
	roomObjs, _, _ := objects(300, 5)
	e.addObjects(t, db.ID, dbObjs)
	e.addObjects(t, auth.ID, authObjs)
	e.addObjects(t, other.ID, otherObjs)
	e.addObjects(t, rooms.ID, roomObjs)

	got := map[string][]string{}
	res, err := e.client(t, nil).Enumerate(context.Background(), cloudflare.NamespaceFilter{Script: "edgebase"},
		func(ns cloudflare.Namespace, ids []string) error {
			got[ns.ID] = append(got[ns.ID], ids...)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got[db.ID], dbStored) || !slices.Equal(got[auth.ID], authStored) || len(got) != 2 {
		t.Fatalf("ids by namespace: %v", got)
	}
	var scanned []string
	for _, ns := range res.Scanned {
		scanned = append(scanned, ns.ID)
	}
	if !slices.Equal(scanned, []string{db.ID, auth.ID, empty.ID}) || res.Skipped != 2 {
		t.Fatalf("scanned %v, skipped %d", scanned, res.Skipped)
	}
	want := cloudflare.ObjectCounts{Pages: 3 + 1 + 1, Stored: len(dbStored) + len(authStored), NoData: dbNoData + authNoData}
	if res.ObjectCounts != want {
		t.Fatalf("counts = %+v, want %+v", res.ObjectCounts, want)
	}
	// 3 namespace pages + 5 object pages; the foreign and RoomsDO
	// namespaces were never listed.
	if e.srv.Requests() != 8 {
		t.Fatalf("requests = %d, want 8", e.srv.Requests())
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	e := newEnv(t, cloudflaretest.Config{})
	e.srv.AddNamespace(cloudflaretest.Namespace{Class: "DatabaseDO"})
	e.srv.Throttle(2, 7*time.Second)
	got, err := e.client(t, nil).Namespaces(context.Background())
	if err != nil || len(got) != 1 {
		t.Fatalf("got %v, %v", got, err)
	}
	if e.srv.Requests() != 3 {
		t.Fatalf("requests = %d, want 3", e.srv.Requests())
	}
	sleeps := e.retryClk.Sleeps()
	if len(sleeps) != 2 {
		t.Fatalf("sleeps = %v, want 2", sleeps)
	}
	for _, d := range sleeps {
		if d < 7*time.Second {
			t.Fatalf("slept %v, less than Retry-After 7s", d)
		}
	}
}

func TestRateLimitBlocksSharedLimiter(t *testing.T) {
	// A 429 seen by one client pauses every client sharing the limiter.
	e := newEnv(t, cloudflaretest.Config{})
	clk := e.limitClk
	c := e.client(t, func(o *cloudflare.Options) {
		o.Retry.MaxAttempts = 1
		o.Now = clk.Now
	})
	e.srv.Throttle(1, 30*time.Second)
	if _, err := c.Namespaces(context.Background()); !errors.Is(err, cloudflare.ErrRateLimited) {
		t.Fatalf("err = %v, want ErrRateLimited", err)
	}
	other := e.client(t, nil)
	if _, err := other.Namespaces(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := clk.Sleeps(); len(s) != 1 || s[0] != 30*time.Second {
		t.Fatalf("limiter sleeps = %v, want [30s]", s)
	}
}

func TestRetryAfterTooLong(t *testing.T) {
	e := newEnv(t, cloudflaretest.Config{})
	e.srv.Throttle(1, 10*time.Minute)
	_, err := e.client(t, nil).Namespaces(context.Background())
	var apiErr *cloudflare.APIError
	if !errors.Is(err, cloudflare.ErrRateLimited) || !errors.As(err, &apiErr) || apiErr.RetryAfter != 10*time.Minute {
		t.Fatalf("err = %v", err)
	}
	if e.srv.Requests() != 1 || len(e.retryClk.Sleeps()) != 0 {
		t.Fatalf("requests=%d sleeps=%v", e.srv.Requests(), e.retryClk.Sleeps())
	}
}

func TestRetryStopsBeforeDeadline(t *testing.T) {
	e := newEnv(t, cloudflaretest.Config{})
	e.srv.Throttle(1, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := e.client(t, nil).Namespaces(ctx)
	if !errors.Is(err, cloudflare.ErrRateLimited) || len(e.retryClk.Sleeps()) != 0 {
		t.Fatalf("err=%v sleeps=%v", err, e.retryClk.Sleeps())
	}
}

func TestServerErrorsExhausted(t *testing.T) {
	e := newEnv(t, cloudflaretest.Config{})
	e.srv.FailNext(100, http.StatusServiceUnavailable)
	_, err := e.client(t, nil).Namespaces(context.Background())
	var apiErr *cloudflare.APIError
	if !errors.Is(err, cloudflare.ErrServer) || !errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want ErrServer", err)
	}
	if apiErr.Attempts != 4 || apiErr.Status != 503 || len(apiErr.Errors) != 1 || apiErr.Errors[0].Code != 10013 {
		t.Fatalf("api error = %+v", apiErr)
	}
	if e.srv.Requests() != 4 {
		t.Fatalf("requests = %d, want 4", e.srv.Requests())
	}
	// Exponential backoff with jitter: retry n waits within [b/2, b],
	// b = 100ms * 2^(n-1).
	sleeps := e.retryClk.Sleeps()
	if len(sleeps) != 3 {
		t.Fatalf("sleeps = %v", sleeps)
	}
	for i, d := range sleeps {
		b := 100 * time.Millisecond << i
		if d < b/2 || d > b {
			t.Fatalf("sleep %d = %v, want within [%v, %v]", i+1, d, b/2, b)
		}
	}
	if !strings.Contains(err.Error(), "An unknown error has occurred") || !strings.Contains(err.Error(), "after 4 attempts") {
		t.Fatalf("message lacks Cloudflare's text or attempts: %v", err)
	}
}

func TestServerErrorMidListingRecovers(t *testing.T) {
	e := newEnv(t, cloudflaretest.Config{MaxObjectsPerPage: 10})
	ns := e.srv.AddNamespace(cloudflaretest.Namespace{Class: "DatabaseDO"})
	all, stored, _ := objects(0, 30)
	e.addObjects(t, ns.ID, all)
	e.srv.FailAt(2, http.StatusBadGateway)
	var got []string
	_, err := e.client(t, nil).ListObjects(context.Background(), ns.ID, func(ids []string) error {
		got = append(got, ids...)
		return nil
	})
	if err != nil || !slices.Equal(got, stored) || e.srv.Requests() != 4 {
		t.Fatalf("err=%v got %d ids (want %d) in %d requests", err, len(got), len(stored), e.srv.Requests())
	}
}

func TestAuthErrors(t *testing.T) {
	e := newEnv(t, cloudflaretest.Config{})
	ns := e.srv.AddNamespace(cloudflaretest.Namespace{Class: "DatabaseDO"})
	e.srv.AddToken("no-workers-read", false)
	for _, tc := range []struct {
		name  string
		edit  func(*cloudflare.Options)
		nsID  string
		want  error
		wantS string
	}{
		{"unknown token", func(o *cloudflare.Options) { o.Token = "wrong-token" }, "", cloudflare.ErrUnauthorized, "Invalid access token"},
		{"token without permission", func(o *cloudflare.Options) { o.Token = "no-workers-read" }, "", cloudflare.ErrForbidden, "Workers Scripts Read"},
		{"other account", func(o *cloudflare.Options) { o.AccountID = "ffffffffffffffffffffffffffffffff" }, "", cloudflare.ErrForbidden, "Authentication error"},
		{"unknown namespace", nil, "00000000000000000000000000000bad", cloudflare.ErrNotFound, "namespace not found"},
		{"known namespace, bad token", func(o *cloudflare.Options) { o.Token = "wrong-token" }, ns.ID, cloudflare.ErrUnauthorized, "Invalid access token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.srv.Requests()
			c := e.client(t, tc.edit)
			var err error
			if tc.nsID == "" {
				_, err = c.Namespaces(context.Background())
			} else {
				_, err = c.ListObjects(context.Background(), tc.nsID, func([]string) error { return nil })
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantS) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.want, tc.wantS)
			}
			if strings.Contains(err.Error(), "wrong-token") || strings.Contains(err.Error(), "no-workers-read") {
				t.Fatalf("error leaks the token: %v", err)
			}
			if n := e.srv.Requests() - before; n != 1 {
				t.Fatalf("%d requests; 4xx must not be retried", n)
			}
		})
	}
}

func TestLimiterDefaults(t *testing.T) {
	for _, tc := range []struct {
		cfg  cloudflare.LimiterConfig
		want int
	}{
		{cloudflare.LimiterConfig{}, 1000},
		{cloudflare.LimiterConfig{Margin: -1}, 1200},
		{cloudflare.LimiterConfig{Margin: 600}, 600},
		{cloudflare.LimiterConfig{Requests: 10, Margin: -1, Window: time.Second}, 10},
	} {
		l, err := cloudflare.NewLimiter(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		n, w := l.Budget()
		wantW := tc.cfg.Window
		if wantW == 0 {
			wantW = 5 * time.Minute
		}
		if n != tc.want || w != wantW {
			t.Errorf("%+v: budget %d/%v, want %d/%v", tc.cfg, n, w, tc.want, wantW)
		}
	}
	for _, bad := range []cloudflare.LimiterConfig{{Requests: 100}, {Requests: 5, Margin: 5}, {Window: -time.Second}} {
		if _, err := cloudflare.NewLimiter(bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestLimiterSlidingWindow(t *testing.T) {
	clk := newFakeClock()
	l, err := cloudflare.NewLimiter(cloudflare.LimiterConfig{Requests: 3, Margin: -1, Window: time.Minute, Now: clk.Now, Sleep: clk.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := clk.Now()
	for range 3 { // at 0s, 10s, 20s
		if err := l.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		clk.Advance(10 * time.Second)
	}
	if s := clk.Sleeps(); len(s) != 0 {
		t.Fatalf("waited within budget: %v", s)
	}
	// At 30s the window [−30s, 30s] is full; the 4th waits until the first
	// grant leaves it (60s), the 5th until the second does (70s).
	for i, want := range []time.Duration{60 * time.Second, 70 * time.Second} {
		if err := l.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if got := clk.Now().Sub(start); got != want {
			t.Fatalf("request %d granted at %v, want %v", 4+i, got, want)
		}
	}
	// Never more than 3 grants in any minute.
	clk.Advance(5 * time.Minute)
	l.Block(clk.Now().Add(10 * time.Second))
	before := clk.Now()
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if got := clk.Now().Sub(before); got != 10*time.Second {
		t.Fatalf("blocked limiter waited %v, want 10s", got)
	}
}

func TestLimiterLimitsClient(t *testing.T) {
	e := newEnv(t, cloudflaretest.Config{})
	clk := newFakeClock()
	l, err := cloudflare.NewLimiter(cloudflare.LimiterConfig{Requests: 3, Margin: -1, Window: time.Minute, Now: clk.Now, Sleep: clk.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	// Two clients share the limiter, as two pipelines sharing a token would.
	a := e.client(t, func(o *cloudflare.Options) { o.Limiter = l })
	b := e.client(t, func(o *cloudflare.Options) { o.Limiter = l })
	start := clk.Now()
	for i, c := range []*cloudflare.Client{a, b, a, b} {
		if _, err := c.Namespaces(context.Background()); err != nil {
			t.Fatal(err)
		}
		wantSleeps := max(i-2, 0)
		if s := clk.Sleeps(); len(s) != wantSleeps {
			t.Fatalf("after request %d: limiter sleeps %v", i+1, s)
		}
	}
	if got := clk.Now().Sub(start); got != time.Minute {
		t.Fatalf("4th request granted after %v, want 1m", got)
	}
	if e.srv.Requests() != 4 {
		t.Fatalf("requests = %d", e.srv.Requests())
	}
}

func TestContextCancelStopsLimiterWait(t *testing.T) {
	e := newEnv(t, cloudflaretest.Config{})
	// Real clock: one request per hour.
	l, err := cloudflare.NewLimiter(cloudflare.LimiterConfig{Requests: 1, Margin: -1, Window: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c := e.client(t, func(o *cloudflare.Options) { o.Limiter = l })
	if _, err := c.Namespaces(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err = c.Namespaces(ctx)
	// The hour-long wait cannot fit before the deadline: fail at once.
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, cloudflare.ErrRateLimited) {
		t.Fatalf("err = %v, want deadline exceeded and rate limited", err)
	}
	if d := time.Since(t0); d > 50*time.Millisecond {
		t.Fatalf("gave up after %v", d)
	}
	// Without a deadline, cancellation interrupts the wait.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	t0 = time.Now()
	_, err = c.Namespaces(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want canceled", err)
	}
	if d := time.Since(t0); d < 90*time.Millisecond || d > time.Second {
		t.Fatalf("cancellation took %v", d)
	}
	if e.srv.Requests() != 1 {
		t.Fatalf("requests = %d, want 1", e.srv.Requests())
	}
}

func TestContextCancelStopsRetrySleep(t *testing.T) {
	e := newEnv(t, cloudflaretest.Config{})
	e.srv.Throttle(1, 30*time.Second)
	c := e.client(t, func(o *cloudflare.Options) { o.Sleep = nil; o.Now = nil }) // real sleep
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	t0 := time.Now()
	_, err := c.Namespaces(ctx)
	if !errors.Is(err, context.Canceled) || time.Since(t0) > time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(t0))
	}
}

func TestContextCancelDuringRequest(t *testing.T) {
	e := newEnv(t, cloudflaretest.Config{})
	e.srv.SetLatency(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err := e.client(t, nil).Namespaces(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(t0))
	}
	if n := e.srv.Requests(); n != 1 {
		t.Fatalf("requests = %d; a cancelled request must not be retried", n)
	}
}

func TestConnectionErrorsRetried(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL
	dead.Close()
	clk := newFakeClock()
	c, err := cloudflare.New(cloudflare.Options{
		BaseURL: url, AccountID: "acc", Token: "tok",
		Retry: cloudflare.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond},
		Now:   clk.Now, Sleep: clk.Sleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Namespaces(context.Background())
	var apiErr *cloudflare.APIError
	if !errors.Is(err, cloudflare.ErrServer) || !errors.As(err, &apiErr) || apiErr.Attempts != 3 || apiErr.Cause == nil {
		t.Fatalf("err = %v", err)
	}
	if len(clk.Sleeps()) != 2 {
		t.Fatalf("sleeps = %v", clk.Sleeps())
	}
}

// rawServer answers with scripted handlers, for replies the emulator never
// produces (dropped connections, broken bodies).
func rawServer(t *testing.T, h func(n int, w http.ResponseWriter, r *http.Request)) (*httptest.Server, *cloudflare.Client, *fakeClock) {
	t.Helper()
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		i := n
		mu.Unlock()
		h(i, w, r)
	}))
	t.Cleanup(srv.Close)
	clk := newFakeClock()
	l, err := cloudflare.NewLimiter(cloudflare.LimiterConfig{Now: clk.Now, Sleep: clk.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cloudflare.New(cloudflare.Options{
		BaseURL: srv.URL, AccountID: "acc", Token: "tok", Limiter: l,
		Retry: cloudflare.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond},
		Now:   clk.Now, Sleep: clk.Sleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv, c, clk
}

const nsPage = `{"success":true,"errors":[],"messages":[],"result":[{"id":"abc","name":"n","script":"s","class":"DatabaseDO"}],"result_info":{"page":1,"per_page":100,"count":1,"total_count":1}}`

func TestDroppedConnectionRetried(t *testing.T) {
	_, c, _ := rawServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		_, _ = w.Write([]byte(nsPage))
	})
	got, err := c.Namespaces(context.Background())
	if err != nil || len(got) != 1 || got[0].ID != "abc" {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestMalformedReplies(t *testing.T) {
	id := cloudflaretest.ObjectID(1)
	for _, tc := range []struct {
		name     string
		status   int
		header   map[string]string
		body     []string // per request; the last repeats
		want     error
		wantText string
		ids      int
	}{
		{"html 502 from a proxy", 502, nil, []string{"<html>Bad gateway</html>"}, cloudflare.ErrServer, "Bad gateway", 0},
		{"success false on 200", 200, nil, []string{`{"success":false,"errors":[{"code":1,"message":"odd"}],"result":null}`}, cloudflare.ErrBadResponse, "odd", 0},
		{"not json on 200", 200, nil, []string{`{"success":tr`}, cloudflare.ErrBadResponse, "decode", 0},
		{"bad object id", 200, nil, []string{`{"success":true,"result":[{"id":"XYZ","hasStoredData":true}],"result_info":{"count":1,"cursor":""}}`}, cloudflare.ErrBadResponse, "XYZ", 0},
		{"cursor does not advance", 200, nil, []string{
			`{"success":true,"result":[{"id":"` + id + `","hasStoredData":true}],"result_info":{"count":1,"cursor":"c1"}}`,
		}, cloudflare.ErrBadResponse, "did not advance", 2},
		{"cursors.after", 200, nil, []string{
			`{"success":true,"result":[{"id":"` + id + `","hasStoredData":true}],"result_info":{"count":1,"cursors":{"after":"c1"}}}`,
			`{"success":true,"result":[{"id":"` + id + `","hasStoredData":true}],"result_info":{"count":1}}`,
		}, nil, "", 2},
		{"401 with any code", 401, nil, []string{`{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}`}, cloudflare.ErrUnauthorized, "check the API token", 0},
		{"malformed header 400", 400, nil, []string{`{"success":false,"errors":[{"code":6003,"message":"Invalid request headers","error_chain":[{"code":6111,"message":"Invalid format for Authorization header"}]}]}`}, cloudflare.ErrUnauthorized, "Invalid format for Authorization header", 0},
		{"other 400", 400, nil, []string{`{"success":false,"errors":[{"code":10001,"message":"bad limit"}]}`}, cloudflare.ErrBadRequest, "bad limit", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c, _ := rawServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body[min(n, len(tc.body))-1]))
			})
			ids := 0
			_, err := c.ListObjects(context.Background(), "abc", func(s []string) error { ids += len(s); return nil })
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
			} else if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.want, tc.wantText)
			}
			if ids != tc.ids {
				t.Fatalf("ids = %d, want %d", ids, tc.ids)
			}
		})
	}
}

func TestRetryAfterHTTPDate(t *testing.T) {
	var clk *fakeClock
	_, c, clk2 := rawServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", clk.Now().Add(20*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(429)
			_, _ = w.Write([]byte(`{"success":false,"errors":[{"code":971,"message":"Please wait"}]}`))
			return
		}
		_, _ = w.Write([]byte(nsPage))
	})
	clk = clk2
	if _, err := c.Namespaces(context.Background()); err != nil {
		t.Fatal(err)
	}
	// HTTP dates have whole seconds, so allow up to one second less. The
	// retry sleep covers the block, so the limiter adds no second wait.
	if s := clk.Sleeps(); len(s) != 1 || s[0] < 19*time.Second || s[0] > 20*time.Second {
		t.Fatalf("sleeps = %v, want one of 19-20s", s)
	}
}

func TestOptionsValidate(t *testing.T) {
	ok := cloudflare.Options{AccountID: "acc", Token: "s3cr3t-token-value"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*cloudflare.Options){
		"no account":         func(o *cloudflare.Options) { o.AccountID = "" },
		"account with slash": func(o *cloudflare.Options) { o.AccountID = "a/b" },
		"no token":           func(o *cloudflare.Options) { o.Token = "" },
		"token with newline": func(o *cloudflare.Options) { o.Token = "s3cr3t-token-value\n" },
		"bad base URL":       func(o *cloudflare.Options) { o.BaseURL = "ftp://x" },
		"objects per page":   func(o *cloudflare.Options) { o.ObjectsPerPage = 9 },
		"namespaces page":    func(o *cloudflare.Options) { o.NamespacesPerPage = 1001 },
		"negative retry":     func(o *cloudflare.Options) { o.Retry.MaxAttempts = -1 },
	} {
		o := ok
		edit(&o)
		err := o.Validate()
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if _, err := cloudflare.New(o); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: error shows the token", name)
		}
	}
	// The token never prints.
	s := fmt.Sprintf("%v %+v %#v", ok, ok, ok)
	if strings.Contains(s, "s3cr3t") {
		t.Fatalf("options print the token: %s", s)
	}
}

func TestLimiterConcurrent(t *testing.T) {
	const n, window = 10, 100 * time.Millisecond
	l, err := cloudflare.NewLimiter(cloudflare.LimiterConfig{Requests: n, Margin: -1, Window: window})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var grants []time.Time
	var wg sync.WaitGroup
	for range 25 {
		wg.Go(func() {
			if err := l.Wait(context.Background()); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			grants = append(grants, time.Now())
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.SortFunc(grants, func(a, b time.Time) int { return a.Compare(b) })
	for i := n; i < len(grants); i++ {
		// Allow for the time between the grant and the timestamp above.
		if d := grants[i].Sub(grants[i-n]); d < window-5*time.Millisecond {
			t.Fatalf("grants %d and %d only %v apart: more than %d in a window", i-n, i, d, n)
		}
	}
}

// TestScale enumerates a million ids (set EDGEVAULT_SLOW=1); it reports the
// time taken and the peak live heap growth while ids stream through.
func TestScale(t *testing.T) {
	if os.Getenv("EDGEVAULT_SLOW") == "" {
		t.Skip("slow: set EDGEVAULT_SLOW=1")
	}
	const total = 1_000_000
	e := newEnv(t, cloudflaretest.Config{})
	ns := e.srv.AddNamespace(cloudflaretest.Namespace{Script: "edgebase", Class: "DatabaseDO"})
	batch := make([]cloudflaretest.Object, 0, 10000)
	for i := range total {
		batch = append(batch, cloudflaretest.Object{ID: cloudflaretest.ObjectID(i), HasStoredData: i%10 != 0})
		if len(batch) == cap(batch) {
			e.addObjects(t, ns.ID, batch)
			batch = batch[:0]
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	t0 := time.Now()
	res, err := e.client(t, nil).Enumerate(context.Background(), cloudflare.NamespaceFilter{Script: "edgebase"},
		func(_ cloudflare.Namespace, ids []string) error {
			// Live heap only: collect first so garbage from earlier pages
			// does not count.
			runtime.GC()
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != total*9/10 || res.NoData != total/10 || res.Pages != total/10000 {
		t.Fatalf("result %+v", res.ObjectCounts)
	}
	t.Logf("%d ids in %d pages (+1 namespaces request) in %v; peak live heap growth %.1f MiB",
		total, res.Pages, time.Since(t0), float64(peak-base)/(1<<20))
}

func TestNamespacesServerIgnoresPaging(t *testing.T) {
	// Every page repeats the same full list without result_info.
	var list []string
	for i := range 3 {
		list = append(list, fmt.Sprintf(`{"id":"n%d","script":"edgebase","class":"DatabaseDO"}`, i))
	}
	body := `{"success":true,"errors":[],"messages":[],"result":[` + strings.Join(list, ",") + `]}`
	srv, c, _ := rawServer(t, func(n int, w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(body)) })
	c2, err := cloudflare.New(cloudflare.Options{BaseURL: srv.URL, AccountID: "acc", Token: "tok", NamespacesPerPage: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*cloudflare.Client{c, c2} {
		got, err := c.Namespaces(context.Background())
		if err != nil || len(got) != 3 {
			t.Fatalf("got %v, %v", got, err)
		}
	}
}
