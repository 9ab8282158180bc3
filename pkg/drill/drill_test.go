package drill

import (
	"strings"
	"testing"
)

func sums(t *testing.T, doc string, wrapped bool) Tables {
	t.Helper()
	ts, err := readTables(strings.NewReader(doc), wrapped)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestTableSumsIgnoreOrderAndNumberSpelling(t *testing.T) {
	a := sums(t, `{"doName":"x","tables":{"t":[{"id":1,"v":3.0,"s":"a"},{"id":2,"v":null,"b":{"__blob__":true,"data":"AA=="}}]},"schema":{"t":"CREATE"}}`, true)
	b := sums(t, `{"t":[{"b":{"data":"AA==","__blob__":true},"v":null,"id":2},{"s":"a","v":3,"id":1e0}]}`, false)
	if a["t"].Rows != 2 || a["t"].Hash() != b["t"].Hash() {
		t.Fatalf("same rows hash differently: %d %s / %d %s", a["t"].Rows, a["t"].Hash(), b["t"].Rows, b["t"].Hash())
	}
	c := sums(t, `{"t":[{"id":1,"v":3,"s":"b"},{"id":2,"v":null,"b":{"__blob__":true,"data":"AA=="}}]}`, false)
	if c["t"].Hash() == a["t"].Hash() {
		t.Fatal("a changed value keeps the hash")
	}
	// A row twice is not the same as once.
	d := sums(t, `{"t":[{"id":1},{"id":1}]}`, false)
	e := sums(t, `{"t":[{"id":1}]}`, false)
	if d["t"].Hash() == e["t"].Hash() {
		t.Fatal("a duplicated row keeps the hash")
	}
	if _, err := readTables(strings.NewReader(`{"needsCreate":true,"namespace":"w","id":"1"}`), true); err != errNeedsCreate {
		t.Fatalf("needsCreate reply: %v", err)
	}
}

func TestCompareNamesDifferences(t *testing.T) {
	arch := &Inventory{Units: map[UnitID]Tables{
		{Kind: KindAuth}:             sums(t, `{"_users":[{"id":"u1"},{"id":"u2"}],"_users_public":[{"id":"u1"}]}`, false),
		{Kind: KindDO, Name: "a"}:    sums(t, `{"tables":{"t":[{"id":1}],"_meta":[{"key":"doName"}]}}`, true),
		{Kind: KindDO, Name: "gone"}: sums(t, `{"tables":{"t":[{"id":1}]}}`, true),
	}, Objects: map[string]ObjectSum{
		"b/k1": {Size: 1, SHA256: "aa", ContentType: "text/plain"},
		"b/k2": {Size: 2, SHA256: "bb", ContentType: "image/png"},
	}, HasStorage: true}
	tgt := &Inventory{Units: map[UnitID]Tables{
		{Kind: KindAuth}:             sums(t, `{"tables":{"_users":[{"id":"u2"},{"id":"u1"}],"_users_public":[]}}`, true),
		{Kind: KindDO, Name: "a"}:    sums(t, `{"tables":{"t":[{"id":1},{"id":2}],"_meta":[]}}`, true),
		{Kind: KindDO, Name: "gone"}: nil,
	}, Objects: map[string]ObjectSum{
		"b/k1":    {Size: 1, SHA256: "aa", ContentType: "text/plain; charset=utf-8"},
		"b/extra": {Size: 1, SHA256: "cc", ContentType: "text/plain"},
	}}
	r := Compare(arch, tgt)
	if r.Passed || r.Users != 2 || r.DOs != 2 || r.Objects != 2 {
		t.Fatalf("report %+v", r)
	}
	got := strings.Join(r.Differences, "\n")
	for _, want := range []string{"do a table t: the target has 2 rows, the archive 1", "do gone is missing", "object b/k2 is missing", "object b/extra is on the target"} {
		if !strings.Contains(got, want) {
			t.Errorf("differences do not say %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "_users_public") || strings.Contains(got, "_meta") || strings.Contains(got, "b/k1") {
		t.Errorf("differences name what is not compared:\n%s", got)
	}
}
