package cloudflaretest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/cloudflare/cloudflaretest"
)

type reply struct {
	Status     int
	Header     http.Header
	Raw        map[string]json.RawMessage
	Errors     []struct{ Code int }
	ResultInfo map[string]any
	Result     []map[string]any
}

func call(t *testing.T, s *cloudflaretest.Server, method, path string, query url.Values, auth string) reply {
	t.Helper()
	u := s.URL() + path
	if query != nil {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	r := reply{Status: resp.StatusCode, Header: resp.Header}
	if err := json.Unmarshal(body, &r.Raw); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	for _, k := range []string{"success", "errors", "messages", "result"} {
		if _, ok := r.Raw[k]; !ok {
			t.Fatalf("envelope lacks %q: %s", k, body)
		}
	}
	_ = json.Unmarshal(r.Raw["errors"], &r.Errors)
	_ = json.Unmarshal(r.Raw["result_info"], &r.ResultInfo)
	_ = json.Unmarshal(r.Raw["result"], &r.Result)
	return r
}

const bearer = "Bearer " + cloudflaretest.DefaultToken

func nsPath(s *cloudflaretest.Server) string {
	return "/accounts/" + s.AccountID() + "/workers/durable_objects/namespaces"
}

func TestEnvelopeAndNamespacePages(t *testing.T) {
	s := cloudflaretest.NewServer(cloudflaretest.Config{})
	defer s.Close()
	for i := range 3 {
		s.AddNamespace(cloudflaretest.Namespace{Name: "n", Script: "edgebase", Class: "DatabaseDO", UseSQLite: i == 0})
	}
	r := call(t, s, "GET", nsPath(s), url.Values{"page": {"2"}, "per_page": {"2"}}, bearer)
	if r.Status != 200 || string(r.Raw["success"]) != "true" || string(r.Raw["errors"]) != "[]" || string(r.Raw["messages"]) != "[]" {
		t.Fatalf("reply %+v", r.Raw)
	}
	want := map[string]any{"page": 2.0, "per_page": 2.0, "count": 1.0, "total_count": 3.0, "total_pages": 2.0}
	for k, v := range want {
		if r.ResultInfo[k] != v {
			t.Fatalf("result_info %v, want %v", r.ResultInfo, want)
		}
	}
	if len(r.Result) != 1 || r.Result[0]["id"] != "00000000000000000000000000000003" || r.Result[0]["class"] != "DatabaseDO" ||
		r.Result[0]["script"] != "edgebase" || r.Result[0]["use_sqlite"] != false {
		t.Fatalf("result %v", r.Result)
	}
	// Beyond the last page: empty result, still an array.
	r = call(t, s, "GET", nsPath(s), url.Values{"page": {"9"}}, bearer)
	if r.Status != 200 || string(r.Raw["result"]) != "[]" {
		t.Fatalf("page 9: %s", r.Raw["result"])
	}
	for _, bad := range []url.Values{{"per_page": {"0"}}, {"per_page": {"1001"}}, {"page": {"0"}}, {"page": {"x"}}} {
		if r := call(t, s, "GET", nsPath(s), bad, bearer); r.Status != 400 || string(r.Raw["success"]) != "false" {
			t.Fatalf("%v: status %d", bad, r.Status)
		}
	}
}

func TestObjectsLimitAndCursor(t *testing.T) {
	s := cloudflaretest.NewServer(cloudflaretest.Config{})
	defer s.Close()
	ns := s.AddNamespace(cloudflaretest.Namespace{Class: "DatabaseDO"})
	var objs []cloudflaretest.Object
	for i := range 25 {
		objs = append(objs, cloudflaretest.Object{ID: cloudflaretest.ObjectID(i), HasStoredData: i%2 == 0})
	}
	if err := s.AddObjects(ns.ID, objs...); err != nil {
		t.Fatal(err)
	}
	path := nsPath(s) + "/" + ns.ID + "/objects"
	for _, tc := range []struct {
		limit  string
		status int
	}{{"9", 400}, {"10", 200}, {"10000", 200}, {"10001", 400}, {"ten", 400}, {"", 200}} {
		q := url.Values{}
		if tc.limit != "" {
			q.Set("limit", tc.limit)
		}
		if r := call(t, s, "GET", path, q, bearer); r.Status != tc.status {
			t.Fatalf("limit=%q: status %d, want %d", tc.limit, r.Status, tc.status)
		}
	}
	var got []string
	cursor := ""
	for page := 0; ; page++ {
		q := url.Values{"limit": {"10"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		r := call(t, s, "GET", path, q, bearer)
		if r.Status != 200 {
			t.Fatalf("status %d", r.Status)
		}
		for _, o := range r.Result {
			if o["hasStoredData"] != (len(got)%2 == 0) {
				t.Fatalf("object %d: %v", len(got), o)
			}
			got = append(got, o["id"].(string))
		}
		if r.ResultInfo["count"] != float64(len(r.Result)) {
			t.Fatalf("count %v for %d", r.ResultInfo["count"], len(r.Result))
		}
		cursor, _ = r.ResultInfo["cursor"].(string)
		if cursor == "" {
			if page != 2 {
				t.Fatalf("ended after page %d", page)
			}
			break
		}
	}
	for i, id := range got {
		if id != objs[i].ID {
			t.Fatalf("object %d = %s, want %s", i, id, objs[i].ID)
		}
	}
	if r := call(t, s, "GET", path, url.Values{"cursor": {"not-a-cursor"}}, bearer); r.Status != 400 {
		t.Fatalf("bad cursor: %d", r.Status)
	}
	other := s.AddNamespace(cloudflaretest.Namespace{Class: "AuthDO"})
	r := call(t, s, "GET", nsPath(s)+"/"+other.ID+"/objects", nil, bearer)
	if r.Status != 200 || string(r.Raw["result"]) != "[]" || r.ResultInfo["cursor"] != "" {
		t.Fatalf("empty namespace: %d %s %v", r.Status, r.Raw["result"], r.ResultInfo)
	}
	if r := call(t, s, "GET", nsPath(s)+"/feedface/objects", nil, bearer); r.Status != 404 {
		t.Fatalf("unknown namespace: %d", r.Status)
	}
}

func TestAuth(t *testing.T) {
	s := cloudflaretest.NewServer(cloudflaretest.Config{})
	defer s.Close()
	s.AddToken("read-nothing", false)
	for _, tc := range []struct {
		auth         string
		path         string
		status, code int
	}{
		{"", nsPath(s), 400, 9106},
		{"Basic abc", nsPath(s), 400, 6003},
		{"Bearer ", nsPath(s), 400, 6003},
		{"Bearer nope", nsPath(s), 403, 9109},
		{"Bearer read-nothing", nsPath(s), 403, 10000},
		{bearer, "/accounts/ffffffffffffffffffffffffffffffff/workers/durable_objects/namespaces", 403, 10000},
		{bearer, "/accounts/" + s.AccountID() + "/workers/scripts", 404, 7000},
		{bearer, nsPath(s), 200, 0},
	} {
		r := call(t, s, "GET", tc.path, nil, tc.auth)
		code := 0
		if len(r.Errors) > 0 {
			code = r.Errors[0].Code
		}
		if r.Status != tc.status || code != tc.code {
			t.Errorf("%q %s: %d/%d, want %d/%d", tc.auth, tc.path, r.Status, code, tc.status, tc.code)
		}
	}
	if r := call(t, s, "POST", nsPath(s), nil, bearer); r.Status != 404 {
		t.Errorf("POST: %d", r.Status)
	}
}

func TestFaults(t *testing.T) {
	s := cloudflaretest.NewServer(cloudflaretest.Config{})
	defer s.Close()
	s.Throttle(2, 1500*time.Millisecond)
	for range 2 {
		r := call(t, s, "GET", nsPath(s), nil, bearer)
		if r.Status != 429 || r.Header.Get("Retry-After") != "2" || r.Errors[0].Code != 971 {
			t.Fatalf("throttled: %d %q %v", r.Status, r.Header.Get("Retry-After"), r.Errors)
		}
	}
	if r := call(t, s, "GET", nsPath(s), nil, bearer); r.Status != 200 {
		t.Fatalf("after throttle: %d", r.Status)
	}
	s.FailAt(5, 502)
	s.FailNext(1, 500)
	for i, want := range []int{500, 502, 200} { // requests 4, 5, 6
		if r := call(t, s, "GET", nsPath(s), nil, bearer); r.Status != want {
			t.Fatalf("request %d: %d, want %d", 4+i, r.Status, want)
		}
	}
	if s.Requests() != 6 {
		t.Fatalf("requests = %d", s.Requests())
	}
	s.SetLatency(50 * time.Millisecond)
	t0 := time.Now()
	call(t, s, "GET", nsPath(s), nil, bearer)
	if d := time.Since(t0); d < 50*time.Millisecond {
		t.Fatalf("latency %v", d)
	}
}

func TestAddObjectsValidates(t *testing.T) {
	s := cloudflaretest.NewServer(cloudflaretest.Config{AccountID: "acct", Token: "tkn"})
	defer s.Close()
	ns := s.AddNamespace(cloudflaretest.Namespace{ID: "myns"})
	if ns.ID != "myns" || s.AccountID() != "acct" {
		t.Fatalf("ns %+v account %s", ns, s.AccountID())
	}
	for _, id := range []string{"", "abc", strings.ToUpper(cloudflaretest.ObjectID(1)), cloudflaretest.ObjectID(1)[:63] + "g"} {
		if err := s.AddObjects(ns.ID, cloudflaretest.Object{ID: id}); err == nil {
			t.Errorf("id %q accepted", id)
		}
	}
	if err := s.AddObjects("missing", cloudflaretest.Object{ID: cloudflaretest.ObjectID(1)}); err == nil {
		t.Error("unknown namespace accepted")
	}
	if cloudflaretest.ObjectID(1) == cloudflaretest.ObjectID(2) || len(cloudflaretest.ObjectID(7)) != 64 {
		t.Error("ObjectID not unique 64-hex")
	}
	if r := call(t, s, "GET", "/accounts/acct/workers/durable_objects/namespaces", nil, "Bearer tkn"); r.Status != 200 {
		t.Errorf("configured token: %d", r.Status)
	}
}
