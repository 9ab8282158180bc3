package repository

import (
	"testing"
	"time"
)

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy(" last=7, daily=14,weekly=8,monthly=-1,within=720h ")
	if err != nil {
		t.Fatal(err)
	}
	want := Policy{Last: 7, Daily: 14, Weekly: 8, Monthly: -1, Within: 720 * time.Hour}
	if p != want {
		t.Fatalf("got %+v, want %+v", p, want)
	}
	if back, err := ParsePolicy(p.String()); err != nil || back != p {
		t.Fatalf("round trip %q: %+v %v", p.String(), back, err)
	}
	if p, err := ParsePolicy(""); err != nil || !p.Empty() {
		t.Fatalf("empty: %+v %v", p, err)
	}
	for _, bad := range []string{"daily", "daily=0", "daily=x", "dayly=3", "within=-1h", "within=3", "last=1,last=2", "last=-2"} {
		if _, err := ParsePolicy(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
