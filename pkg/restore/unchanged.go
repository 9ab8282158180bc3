package restore

import (
	"context"
	"errors"
	"sort"

	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// unchangedName is the plan file listing the DOs whose content on the
// target already equals the archive's.
const unchangedName = "unchanged.json"

// WriteUnchanged records, before a planned restore is launched, the DOs
// the target already holds exactly as archived (established by whoever
// calls it, e.g. by comparing the archive with a snapshot of the target
// taken just before): their restore-do is not sent. Stored with the plan,
// so a redelivered task decides the same way.
func WriteUnchanged(ctx context.Context, jobs *pipeline.Jobs, job string, dos []string) error {
	sorted := append([]string(nil), dos...)
	sort.Strings(sorted)
	return jobs.PutJSON(ctx, jobs.PlanKey(job, unchangedName), sorted)
}

// unchangedDOs is the set WriteUnchanged recorded for job, read once per
// job (empty when nothing was recorded).
func (t *Tasks) unchangedDOs(ctx context.Context, job string) (map[string]bool, error) {
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
