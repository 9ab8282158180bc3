package repository

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/edgevault/edgevault/pkg/blob"
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

// ReasonVerified is the reason Forget keeps the newest verified snapshot
// of a source, whatever the policy says.
const ReasonVerified = "newest verified"

// ForgetDecision is Forget's verdict on one snapshot.
type ForgetDecision struct {
	Snapshot SnapshotInfo
	Decision
	// Verified: the snapshot passed a full data check (Verify).
	Verified bool
	// Locked: the store refused to delete the forgotten snapshot
	// (blob.ErrLocked); it is still there.
	Locked bool
}

// Forget deletes the snapshots p does not keep, grouped by source URL
// (each source keeps its own newest, daily, … snapshots). The newest
// verified snapshot of each source is always kept (ReasonVerified): a
// policy never leaves a source without its last proven-good backup. With
// dryRun it only decides. A snapshot's verified marker is deleted after
// the snapshot; markers left by an interrupted forget are deleted by the
// next one. Prune then frees what only the forgotten snapshots used.
func (r *Repository) Forget(ctx context.Context, p Policy, dryRun bool) ([]ForgetDecision, error) {
	snaps, err := r.ListSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	verified, err := r.VerifiedSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	out := planForget(snaps, verified, p)
	if dryRun {
		return out, nil
	}
	present := map[ID]bool{}
	for i := range out {
		d := &out[i]
		id := d.Snapshot.ID
		if d.Keep {
			present[id] = true
			continue
		}
		if err := r.store.Delete(ctx, prefixSnaps+id.String()); errors.Is(err, blob.ErrLocked) {
			d.Locked, present[id] = true, true
			continue
		} else if err != nil {
			return out, fmt.Errorf("repository: forget %s: %w", id, err)
		}
	}
	// Markers of snapshots that are gone: this forget's, and any an
	// interrupted one left.
	for id := range verified {
		if present[id] {
			continue
		}
		if err := r.store.Delete(ctx, prefixVerified+id.String()); err != nil && !errors.Is(err, blob.ErrLocked) {
			return out, fmt.Errorf("repository: forget: verified marker of %s: %w", id, err)
		}
	}
	return out, nil
}

// planForget applies p to each source's snapshots and keeps each
// source's newest verified one. The decisions come source by source (in
// the order of their oldest snapshot), newest first within a source.
func planForget(snaps []SnapshotInfo, verified map[ID]time.Time, p Policy) []ForgetDecision {
	groups := map[string][]SnapshotInfo{}
	var order []string
	for _, s := range snaps {
		if _, ok := groups[s.SourceURL]; !ok {
			order = append(order, s.SourceURL)
		}
		groups[s.SourceURL] = append(groups[s.SourceURL], s)
	}
	var out []ForgetDecision
	for _, src := range order {
		g := groups[src]
		times := make([]time.Time, len(g))
		for i, s := range g {
			times[i] = s.Time
		}
		newestVerified := true
		for _, d := range ApplyPolicy(times, p) {
			fd := ForgetDecision{Snapshot: g[d.Index], Decision: d}
			if _, ok := verified[fd.Snapshot.ID]; ok {
				fd.Verified = true
				if newestVerified {
					newestVerified = false
					fd.Keep = true
					fd.Reasons = append(fd.Reasons, ReasonVerified)
				}
			}
			out = append(out, fd)
		}
	}
	return out
}
