package edgebase_test

import (
	"slices"
	"testing"

	"github.com/edgevault/edgevault/pkg/edgebase"
)

func TestParseConfigPeerShape(t *testing.T) {
	raw := `{"databases":{"shared":{"tables":{"posts":{"schema":{"title":{"type":"string"},"body":{"type":"text"}}}}},` +
		`"ledger":{"provider":"do","tables":{"entries":{}}},"workspace":{"instance":true,"access":{},"tables":{"tasks":{"schema":{"done":{"type":"boolean"}}}}}},` +
		`"storage":{"buckets":{"uploads":{"access":{}},"avatars":{"access":{}}}},"serviceKeys":{"keys":[{"kid":"root","inlineSecret":"s"}]}}`
	cfg, err := edgebase.ParseConfig([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Redacted) != 0 || cfg.DatabasesUnknown || cfg.BucketsUnknown {
		t.Fatalf("a 0.2.8 config reads as redacted: %+v", cfg)
	}
	if !slices.Equal(cfg.Buckets, []string{"uploads", "avatars"}) || len(cfg.Databases) != 3 {
		t.Fatalf("config: %+v", cfg)
	}
	for _, tc := range []struct {
		block, table, field string
		want                edgebase.Presence
	}{
		{"shared", "posts", "title", edgebase.Present},
		{"shared", "posts", "bogus", edgebase.Missing},
		{"shared", "nope", "x", edgebase.Missing},
		{"nope", "posts", "title", edgebase.Missing},
		{"ledger", "entries", "memo", edgebase.Missing}, // schemaless: auto columns only
		{"workspace", "tasks", "done", edgebase.Present},
	} {
		if got := cfg.HasField(tc.block, tc.table, tc.field); got != tc.want {
			t.Errorf("HasField(%s, %s, %s) = %v, want %v", tc.block, tc.table, tc.field, got, tc.want)
		}
	}
	if ws, _ := cfg.Block("workspace"); !ws.Dynamic() || ws.RoutingUnknown {
		t.Errorf("workspace: %+v", ws)
	}
}

// A 0.4.2+ snapshot may hold "[REDACTED]" where an object, array,
// boolean or string was. Parsing never fails on it, and every redacted
// part answers Unknown, never Missing.
func TestParseConfigRedacted(t *testing.T) {
	raw := `{"databases":{` +
		`"shared":{"tables":{"posts":{"schema":{"title":{"type":"string"},"password":"[REDACTED]","done":{"type":"boolean","default":"[REDACTED]"}}},` +
		`"tokens":"[REDACTED]","notes":{"schema":"[REDACTED]"},"odd":{"schema":[1,2]}}},` +
		`"secrets":"[REDACTED]",` +
		`"workspace":{"instance":"[REDACTED]","access":{"canCreate":"[REDACTED]","access":"[REDACTED]"},"tables":"[REDACTED]"},` +
		`"billing":{"provider":"[REDACTED]","tables":{"invoices":{}}},` +
		`"weird":{"provider":{"x":1},"instance":[true],"access":"fn","tables":{"t":false}}},` +
		`"storage":{"buckets":"[REDACTED]"},` +
		`"serviceKeys":{"keys":[{"kid":"root","inlineSecret":"[REDACTED]"}]},` +
		`"plugins":{"stripe":{"config":"[REDACTED]"}},"a/b~c":"[REDACTED]"}`
	cfg, err := edgebase.ParseConfig([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	wantPaths := []string{
		"/databases/shared/tables/posts/schema/password",
		"/databases/shared/tables/posts/schema/done/default",
		"/databases/shared/tables/tokens",
		"/databases/shared/tables/notes/schema",
		"/databases/secrets",
		"/databases/workspace/instance",
		"/databases/workspace/access/canCreate",
		"/databases/workspace/access/access",
		"/databases/workspace/tables",
		"/databases/billing/provider",
		"/storage/buckets",
		"/serviceKeys/keys/0/inlineSecret",
		"/plugins/stripe/config",
		"/a~1b~0c",
	}
	if !slices.Equal(cfg.Redacted, wantPaths) {
		t.Errorf("Redacted =\n%q\nwant\n%q", cfg.Redacted, wantPaths)
	}
	if cfg.DatabasesUnknown || !cfg.BucketsUnknown || len(cfg.Buckets) != 0 {
		t.Errorf("databases unknown %v, buckets unknown %v %v", cfg.DatabasesUnknown, cfg.BucketsUnknown, cfg.Buckets)
	}
	secrets, ok := cfg.Block("secrets")
	if !ok || !secrets.Unknown || !secrets.TablesUnknown || !secrets.RoutingUnknown {
		t.Errorf("secrets block: %+v", secrets)
	}
	ws, _ := cfg.Block("workspace")
	if !ws.RoutingUnknown || ws.Instance || !ws.TablesUnknown || !ws.Dynamic() {
		t.Errorf("workspace block (access keys still say dynamic): %+v", ws)
	}
	billing, _ := cfg.Block("billing")
	if !billing.RoutingUnknown || billing.Provider != "" || billing.TablesUnknown {
		t.Errorf("billing block: %+v", billing)
	}
	weird, _ := cfg.Block("weird")
	if !weird.RoutingUnknown || weird.Provider != "" || !weird.Instance { // [true] is truthy, as on the server
		t.Errorf("weird block: %+v", weird)
	}
	for _, tc := range []struct {
		block, table, field string
		want                edgebase.Presence
	}{
		{"shared", "posts", "title", edgebase.Present},
		{"shared", "posts", "password", edgebase.Present}, // its definition is withheld, not its name
		{"shared", "posts", "bogus", edgebase.Missing},
		{"shared", "tokens", "anything", edgebase.Unknown},
		{"shared", "notes", "anything", edgebase.Unknown},
		{"shared", "odd", "anything", edgebase.Unknown},
		{"shared", "nope", "x", edgebase.Missing},
		{"secrets", "any", "x", edgebase.Unknown},
		{"workspace", "tasks", "title", edgebase.Unknown},
		{"billing", "invoices", "x", edgebase.Missing},
		{"billing", "other", "x", edgebase.Missing},
		{"weird", "t", "x", edgebase.Unknown},
		{"nope", "t", "x", edgebase.Missing},
	} {
		if got := cfg.HasField(tc.block, tc.table, tc.field); got != tc.want {
			t.Errorf("HasField(%s, %s, %s) = %v, want %v", tc.block, tc.table, tc.field, got, tc.want)
		}
	}
	if tbl, _ := ws.Table("tasks"); tbl.Name != "" {
		t.Errorf("a redacted table list yields tables: %+v", tbl)
	}
	if tokens, ok := func() (edgebase.Table, bool) { b, _ := cfg.Block("shared"); return b.Table("tokens") }(); !ok || !tokens.Unknown || !tokens.FieldsUnknown {
		t.Errorf("tokens table: %+v", tokens)
	}
}

func TestParseConfigWholeParts(t *testing.T) {
	for raw, want := range map[string][2]bool{ // databases unknown, buckets unknown
		`"[REDACTED]"`:                  {true, true},
		`null`:                          {true, true},
		`{}`:                            {false, false},
		`{"databases":"[REDACTED]"}`:    {true, false},
		`{"databases":null}`:            {false, false},
		`{"databases":[]}`:              {true, false},
		`{"storage":"[REDACTED]"}`:      {false, true},
		`{"storage":{"buckets":null}}`:  {false, false},
		`{"storage":{"buckets":true}}`:  {false, true},
		`{"databases":{},"storage":{}}`: {false, false},
	} {
		cfg, err := edgebase.ParseConfig([]byte(raw))
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if got := [2]bool{cfg.DatabasesUnknown, cfg.BucketsUnknown}; got != want {
			t.Errorf("%s: unknown = %v, want %v", raw, got, want)
		}
		wantBlock := edgebase.Missing
		if want[0] {
			wantBlock = edgebase.Unknown
		}
		if got := cfg.HasBlock("shared"); got != wantBlock {
			t.Errorf("%s: HasBlock = %v, want %v", raw, got, wantBlock)
		}
	}
	for _, bad := range []string{``, `{`, `{"databases":}`, `{} {}`, `{"a":1]`} {
		if _, err := edgebase.ParseConfig([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if edgebase.Presence(0) != edgebase.Unknown {
		t.Error("the zero Presence must be Unknown")
	}
}
