package repository

import (
	"testing"
	"time"
)

func day(y int, m time.Month, d, h int) time.Time { return time.Date(y, m, d, h, 0, 0, 0, time.UTC) }

func kept(ds []Decision) map[time.Time][]string {
	out := map[time.Time][]string{}
	for _, d := range ds {
		if d.Keep {
			out[d.Time] = d.Reasons
		}
	}
	return out
}

// nightly is one snapshot a day at 03:00 and 15:00 for 90 days from
// 2026-01-01, in shuffled order.
func nightly() []time.Time {
	var ts []time.Time
	for i := range 90 {
		d := day(2026, 1, 1, 3).AddDate(0, 0, i)
		ts = append(ts, d.Add(12*time.Hour), d)
	}
	for i := 0; i+1 < len(ts); i += 3 {
		ts[i], ts[i+1] = ts[i+1], ts[i]
	}
	return ts
}

func TestApplyPolicy(t *testing.T) {
	ts := nightly()
	newest := day(2026, 3, 31, 15)
	tests := []struct {
		name  string
		p     Policy
		n     int
		check map[time.Time]string // a snapshot that must be kept, with one reason
		not   []time.Time
	}{
		{"empty keeps all", Policy{}, 180, map[time.Time]string{day(2026, 1, 1, 3): "no policy"}, nil},
		{"last 3", Policy{Last: 3}, 3, map[time.Time]string{newest: "last snapshot", day(2026, 3, 30, 15): "last snapshot"}, []time.Time{day(2026, 3, 30, 3)}},
		// The newest of each day: the 15:00 ones.
		{"daily 7", Policy{Daily: 7}, 7, map[time.Time]string{day(2026, 3, 25, 15): "daily snapshot"}, []time.Time{day(2026, 3, 25, 3), day(2026, 3, 24, 15)}},
		// ISO weeks end on Sunday: 2026-03-29 is a Sunday.
		{"weekly 4", Policy{Weekly: 4}, 4, map[time.Time]string{newest: "weekly snapshot", day(2026, 3, 29, 15): "weekly snapshot", day(2026, 3, 15, 15): "weekly snapshot"}, []time.Time{day(2026, 3, 28, 15)}},
		{"monthly 2", Policy{Monthly: 2}, 2, map[time.Time]string{newest: "monthly snapshot", day(2026, 2, 28, 15): "monthly snapshot"}, nil},
		{"monthly unbounded", Policy{Monthly: -1}, 3, map[time.Time]string{day(2026, 1, 31, 15): "monthly snapshot"}, nil},
		{"yearly 5", Policy{Yearly: 5}, 1, map[time.Time]string{newest: "yearly snapshot"}, nil},
		{"hourly 5", Policy{Hourly: 5}, 5, map[time.Time]string{day(2026, 3, 29, 15): "hourly snapshot"}, []time.Time{day(2026, 3, 29, 3)}},
		{"within 2 days", Policy{Within: 48 * time.Hour}, 5, map[time.Time]string{day(2026, 3, 29, 15): "within 48h0m0s"}, []time.Time{day(2026, 3, 29, 3)}},
		// Rules add up: a snapshot kept by two rules has both reasons and
		// counts once.
		{"daily 7 weekly 4 monthly 3", Policy{Daily: 7, Weekly: 4, Monthly: 3}, 7 + 2 + 2, map[time.Time]string{day(2026, 3, 15, 15): "weekly snapshot", day(2026, 1, 31, 15): "monthly snapshot"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := ApplyPolicy(ts, tt.p)
			if len(ds) != len(ts) || !ds[0].Time.Equal(newest) {
				t.Fatalf("%d decisions, first %v; want %d newest first", len(ds), ds[0].Time, len(ts))
			}
			k := kept(ds)
			if len(k) != tt.n {
				t.Fatalf("kept %d, want %d: %v", len(k), tt.n, k)
			}
			if _, ok := k[newest]; !ok {
				t.Fatal("the newest snapshot is not kept")
			}
			for tm, reason := range tt.check {
				found := false
				for _, r := range k[tm] {
					found = found || r == reason
				}
				if !found {
					t.Errorf("%v: reasons %v, want %q", tm, k[tm], reason)
				}
			}
			for _, tm := range tt.not {
				if _, ok := k[tm]; ok {
					t.Errorf("%v kept (%v), want forgotten", tm, k[tm])
				}
			}
			for _, d := range ds {
				if !ts[d.Index].Equal(d.Time) {
					t.Fatalf("decision index %d does not point at its time", d.Index)
				}
			}
		})
	}
	if ds := ApplyPolicy(nil, Policy{Last: 1}); len(ds) != 0 {
		t.Fatalf("no snapshots: %v", ds)
	}
}
