package serverless

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/blob"
)

// The job index lets the api list jobs newest first, a page at a time,
// without reading every staging object: the scheduler writes one empty
// marker per job,
//
//	<staging>index/<kind>/<13-digit 9999999999999 - createdAt ms>-<job id>
//
// whose keys sort newest first. Like the rest of the staging area it
// expires with the stack's staging lifecycle rule.
const maxIndexMillis = 9999999999999

func indexPrefix(jobs *backup.Jobs, kind events.JobKind) string {
	return jobs.Staging + "index/" + string(kind) + "/"
}

func indexKey(jobs *backup.Jobs, job *events.Job) string {
	return fmt.Sprintf("%s%013d-%s", indexPrefix(jobs, job.Kind), maxIndexMillis-job.CreatedAt.UnixMilli(), job.ID)
}

func writeIndex(ctx context.Context, jobs *backup.Jobs, job *events.Job) error {
	return jobs.Store.Put(ctx, indexKey(jobs, job), strings.NewReader(job.ID))
}

var errStop = errors.New("stop listing")

// listIndex calls fn for the ids of kind, newest first, starting after the
// index entry named after ("" = from the newest); fn returns false to stop.
func listIndex(ctx context.Context, jobs *backup.Jobs, kind events.JobKind, after string, fn func(entry, id string) bool) error {
	prefix := indexPrefix(jobs, kind)
	err := jobs.Store.List(ctx, prefix, func(info blob.Info) error {
		entry := strings.TrimPrefix(info.Key, prefix)
		if after != "" && entry <= after {
			return nil
		}
		_, id, ok := strings.Cut(entry, "-")
		if !ok || id == "" {
			return nil
		}
		if !fn(entry, id) {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}
