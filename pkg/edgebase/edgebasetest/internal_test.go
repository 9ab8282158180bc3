package edgebasetest

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestJSNumberMatchesNumberToString(t *testing.T) {
	cases := map[float64]string{
		0: "0", math.Copysign(0, -1): "0", 1: "1", -2.5: "-2.5", 0.1: "0.1", 1e21: "1e+21", 1e20: "100000000000000000000",
		1e-7: "1e-7", 0.000001: "0.000001", 9007199254740993: "9007199254740992", 123456789.123456789: "123456789.12345679",
		5e-324: "5e-324", math.MaxFloat64: "1.7976931348623157e+308", 1.5e-10: "1.5e-10", math.NaN(): "null",
	}
	for f, want := range cases {
		if got := jsNumber(f); got != want {
			t.Errorf("jsNumber(%v) = %q, want %q", f, got, want)
		}
	}
}

// The peer's SQLite prints REAL→TEXT with "%!.15g"; values observed on the
// peer (restore-do / restore-data into TEXT columns).
func TestSQLiteRealTextMatchesPeer(t *testing.T) {
	cases := map[float64]string{
		5: "5.0", 2.5: "2.5", 9007199254740993: "9.00719925474099e+15", 1: "1.0", 1e21: "1.0e+21", 0.000001: "1.0e-06",
		0.1: "0.1", 0: "0.0", -3.25: "-3.25", 123456789012345: "123456789012345.0", 1e15: "1.0e+15", 0.0001: "0.0001",
	}
	for f, want := range cases {
		if got := sqliteRealText(f); got != want {
			t.Errorf("sqliteRealText(%v) = %q, want %q", f, got, want)
		}
	}
}

// Hashes stored in _meta by the peer for the same schemas.
func TestSchemaHashMatchesPeer(t *testing.T) {
	cfg := ContractConfig()
	want := map[string]string{"posts": "f45effbb", "tags": "e487bb41", "entries": "fb5edc06", "tasks": "2a3ad9ae", "notes": "b6b68b10"}
	for _, d := range cfg.Databases {
		for _, tb := range d.Tables {
			if got := tb.schemaHash(); got != want[tb.Name] {
				t.Errorf("schemaHash(%s) = %s, want %s", tb.Name, got, want[tb.Name])
			}
		}
	}
}

// File names of the peer's Miniflare state for worker "eb-app".
func TestDOIDMatchesWorkerd(t *testing.T) {
	want := map[string]string{
		"ledger":         "9c02389c2030ce25d248a088a1cd0a5ccb71fc7c14d2993f99e7eb0d60afb21a",
		"workspace:ws-1": "119191f8a0e618bfb5f02c737bfa4a5ae75fa512e6a1ecead8c096f4d7ba2f71",
		"workspace:ws-2": "159cda106406fda66a244bad509bb7f4927f04367d5ebc297a687696a3f5767a",
	}
	f := newDOIDFactory("eb-app", "DatabaseDO")
	for name, id := range want {
		if got := DOID("eb-app", name); got != id {
			t.Errorf("DOID(%s) = %s, want %s", name, got, id)
		}
		if !f.valid(id) {
			t.Errorf("valid(%s) = false", id)
		}
	}
	if f.valid(strings.Repeat("0", 64)) || f.valid("zz") || f.valid(strings.ToUpper(want["ledger"])) {
		t.Error("valid accepted a foreign id")
	}
	if newDOIDFactory("eb-app", "AuthDO").valid(want["ledger"]) {
		t.Error("AuthDO namespace accepted a DatabaseDO id")
	}
	// D1 and R2 files are Miniflare objects too.
	if got := d1IDs.fromName("local"); got != "2b35d4d42e3c9f6b5ad5b5579a7b1470c66e69f6b33a31e3f5a0095cc6d18656" {
		t.Errorf("D1 file id %s", got)
	}
	if got := r2IDs.fromName("eb-app-storage"); got != "934254e2a14ff342ad340096c0925003f53833f817307ab76baada1ce0927552" {
		t.Errorf("R2 file id %s", got)
	}
}

// GET /admin/api/backup/config of the peer's default profile, byte for byte.
const peerDefaultConfig = `{"databases":{"shared":{"tables":{"posts":{"schema":{"title":{"type":"string","required":true},"body":{"type":"text"}}},"tags":{"schema":{"name":{"type":"string","required":true}}}}},"ledger":{"provider":"do","tables":{"entries":{"schema":{"amount":{"type":"number"},"memo":{"type":"string"}}}}},"workspace":{"instance":true,"access":{},"tables":{"tasks":{"schema":{"title":{"type":"string","required":true},"done":{"type":"boolean"}}}}}},"auth":{"emailAuth":true},"storage":{"buckets":{"uploads":{"access":{}},"avatars":{"access":{}}}},"serviceKeys":{"keys":[{"kid":"root","tier":"root","scopes":["*"],"secretSource":"dashboard","secretRef":"SERVICE_KEY"}]},"rateLimiting":{"global":{"requests":1000000,"window":"60s","binding":{"limit":10000000,"period":60,"namespaceId":"1001"}},"db":{"requests":1000000,"window":"60s","binding":{"limit":10000000,"period":60,"namespaceId":"1002"}},"storage":{"requests":1000000,"window":"60s","binding":{"limit":10000000,"period":60,"namespaceId":"1003"}},"functions":{"requests":1000000,"window":"60s","binding":{"limit":10000000,"period":60,"namespaceId":"1004"}},"auth":{"requests":1000000,"window":"60s","binding":{"limit":10000000,"period":60,"namespaceId":"1005"}},"authSignin":{"requests":1000000,"window":"60s","binding":{"limit":10000000,"period":60,"namespaceId":"1006"}},"authSignup":{"requests":1000000,"window":"60s","binding":{"limit":10000000,"period":60,"namespaceId":"1007"}},"events":{"requests":1000000,"window":"60s","binding":{"limit":10000000,"period":60,"namespaceId":"1008"}}},"cors":{"origin":"*"}}`

func TestConfigJSONMatchesPeer(t *testing.T) {
	b, err := DefaultConfig().MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != peerDefaultConfig {
		t.Fatalf("config JSON differs from the peer's:\n got %s\nwant %s", b, peerDefaultConfig)
	}
	parsed, err := ParseConfig([]byte(peerDefaultConfig))
	if err != nil {
		t.Fatal(err)
	}
	again, _ := parsed.MarshalJSON()
	if string(again) != peerDefaultConfig {
		t.Fatalf("ParseConfig round trip differs:\n%s", again)
	}
	if !parsed.Database("workspace").Dynamic() || parsed.Database("ledger").RoutesToD1() || !parsed.Database("shared").RoutesToD1() {
		t.Fatal("routing flags lost in round trip")
	}
}

func TestParseJSKeepsOrderAndJSSemantics(t *testing.T) {
	v, err := parseJS([]byte(`{"b":1,"a":[true,null,"x",9007199254740993,1e400],"b":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(marshalJS(v)); got != `{"b":2,"a":[true,null,"x",9007199254740992,null]}` {
		t.Fatalf("got %s", got)
	}
	for _, bad := range []string{"", "garbage", "{", `{"a":1} x`} {
		if _, err := parseJS([]byte(bad)); err == nil {
			t.Errorf("parseJS(%q) accepted", bad)
		}
	}
	if got := string(marshalJS("<&>\u2028\x01")); got != "\"<&>\u2028\\u0001\"" {
		t.Errorf("string escaping %q", got)
	}
}

func TestAtobIsForgiving(t *testing.T) {
	for in, want := range map[string]string{"QQ==": "A", "QQ": "A", " Q Q = = ": "A", "": ""} {
		got, err := atob(in)
		if err != nil || string(got) != want {
			t.Errorf("atob(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"undefined", "Q", "Q=Q="} {
		if _, err := atob(bad); err == nil {
			t.Errorf("atob(%q) accepted", bad)
		}
	}
}

func TestNewIDIsMonotonicUUIDv7(t *testing.T) {
	now := time.Date(2026, 3, 7, 10, 0, 0, 0, time.UTC)
	e := &Emulator{worker: "w", now: func() time.Time { return now }}
	prev := ""
	for i := 0; i < 1000; i++ {
		id := e.newID()
		if len(id) != 36 || id[14] != '7' || !strings.ContainsRune("89ab", rune(id[19])) {
			t.Fatalf("not a UUIDv7: %s", id)
		}
		if id <= prev {
			t.Fatalf("not monotonic: %s after %s", id, prev)
		}
		prev = id
	}
	e2 := &Emulator{worker: "w", now: func() time.Time { return now }}
	if e2.newID() != (&Emulator{worker: "w", now: func() time.Time { return now }}).newID() {
		t.Fatal("ids not deterministic for a fixed clock")
	}
}
