package restore

import (
	"context"
	"errors"
	"sort"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// unchangedName is the plan file listing the units whose content on the
// target already equals the archive's.
const unchangedName = "unchanged.json"

// UnitKey names a unit of an archive in WriteUnchanged's list: its
// section, and ":" and its name when it has one.
func UnitKey(sec archive.Section, name string) string {
	if name == "" {
		return string(sec)
	}
	return string(sec) + ":" + name
}

// taskUnit is the unit a restore task writes ("" for tasks that write
// no single unit). The users resync rebuilds _users_public from AUTH_DB,
// both part of the auth.d1 unit: it has nothing to do when that unit is
// unchanged.
func taskUnit(t events.Task) string {
	switch t.Kind {
	case events.TaskRestoreControlD1:
		return UnitKey(archive.SectionControlD1, "")
	case events.TaskRestoreAuthD1, events.TaskResync:
		return UnitKey(archive.SectionAuthD1, "")
	case events.TaskRestoreDO:
		return UnitKey(archive.SectionDatabase, t.DOName)
	case events.TaskRestoreData:
		return UnitKey(archive.SectionDataNamespace, t.Namespace)
	}
	return ""
}

// WriteUnchanged records, before a planned restore is launched, the units
// (UnitKey) the target already holds exactly as archived — established by
// whoever calls it, e.g. by comparing the archive with a snapshot of the
// target taken just before: their restore is not sent. Stored with the
// plan, so a redelivered task decides the same way.
func WriteUnchanged(ctx context.Context, jobs *pipeline.Jobs, job string, units []string) error {
	sorted := append([]string(nil), units...)
	sort.Strings(sorted)
	return jobs.PutJSON(ctx, jobs.PlanKey(job, unchangedName), sorted)
}

// unlessUnchanged skips h for a unit WriteUnchanged listed.
func (t *Tasks) unlessUnchanged(h pipeline.Handler) pipeline.Handler {
	return func(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
		unchanged, err := t.unchangedUnits(ctx, u.Job.ID)
		if err != nil {
			return pipeline.Result{}, err
		}
		if key := taskUnit(u.Task); key != "" && unchanged[key] {
			return pipeline.Result{}, nil
		}
		return h(ctx, u)
	}
}

// unchangedUnits is the set WriteUnchanged recorded for job, read once
// per job (empty when nothing was recorded).
func (t *Tasks) unchangedUnits(ctx context.Context, job string) (map[string]bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.unchangedJob == job && t.unchanged != nil {
		return t.unchanged, nil
	}
	var names []string
	err := t.Jobs.GetJSON(ctx, t.Jobs.PlanKey(job, unchangedName), &names)
	if err != nil && !errors.Is(err, blob.ErrNotExist) {
		return nil, err
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	t.unchangedJob, t.unchanged = job, set
	return set, nil
}
