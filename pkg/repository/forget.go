package repository

import (
	"fmt"
	"sort"
	"time"
)

// Policy says which snapshots to keep, with restic's semantics: each Keep*
// count keeps the newest snapshot of that many distinct periods (hours,
// days, ISO weeks, months, years), walking from the newest snapshot back;
// Last keeps the newest n; Within keeps every snapshot taken within that
// duration of the newest one. A count of -1 means no bound. A snapshot is
// kept when any rule keeps it; an empty Policy keeps everything.
type Policy struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
	Within                                       time.Duration
}

// Empty reports whether p has no rule.
func (p Policy) Empty() bool { return p == Policy{} }

// Decision is the verdict for one snapshot.
type Decision struct {
	// Index is the snapshot's position in the times given to ApplyPolicy.
	Index   int
	Time    time.Time
	Keep    bool
	Reasons []string // the rules that keep it ("daily snapshot", …)
}

type rule struct {
	count  int
	reason string
	bucket func(t time.Time, nr int) string
}

// ApplyPolicy decides, for snapshot times in any order, which are kept.
// The decisions come newest first. It is a pure function of its input.
func ApplyPolicy(times []time.Time, p Policy) []Decision {
	out := make([]Decision, len(times))
	for i, t := range times {
		out[i] = Decision{Index: i, Time: t}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	if p.Empty() {
		for i := range out {
			out[i].Keep, out[i].Reasons = true, []string{"no policy"}
		}
		return out
	}
	rules := []rule{
		{p.Last, "last snapshot", func(_ time.Time, nr int) string { return fmt.Sprint(nr) }},
		{p.Hourly, "hourly snapshot", func(t time.Time, _ int) string { return t.Format("2006-01-02 15") }},
		{p.Daily, "daily snapshot", func(t time.Time, _ int) string { return t.Format("2006-01-02") }},
		{p.Weekly, "weekly snapshot", func(t time.Time, _ int) string {
			y, w := t.ISOWeek()
			return fmt.Sprintf("%04d-%02d", y, w)
		}},
		{p.Monthly, "monthly snapshot", func(t time.Time, _ int) string { return t.Format("2006-01") }},
		{p.Yearly, "yearly snapshot", func(t time.Time, _ int) string { return t.Format("2006") }},
	}
	last := make([]string, len(rules))
	for i := range last {
		last[i] = "\x00none"
	}
	var newest time.Time
	if len(out) > 0 {
		newest = out[0].Time
	}
	for n := range out {
		d := &out[n]
		for i := range rules {
			r := &rules[i]
			if r.count == 0 {
				continue
			}
			if b := r.bucket(d.Time, n); b != last[i] {
				last[i] = b
				d.Keep = true
				d.Reasons = append(d.Reasons, r.reason)
				if r.count > 0 {
					r.count--
				}
			}
		}
		if p.Within > 0 && !d.Time.Before(newest.Add(-p.Within)) {
			d.Keep = true
			d.Reasons = append(d.Reasons, "within "+p.Within.String())
		}
	}
	return out
}
