package restore

import (
	"bytes"
	"context"
	"errors"
	"io"

	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// configName is the plan file holding the target's config as the planner
// read it. The tasks that need the config (prime, restore-data, creating
// an instance) read it there rather than from the server: the config does
// not change while a restore runs, and a request right after a large
// restore-do can go unanswered for as long as the client waits on a local
// EdgeBase server (workerd), where restore-data itself is answered at once
// (503 while busy, then retried).
const configName = "config.json"

func writeConfig(ctx context.Context, jobs *pipeline.Jobs, job string, raw []byte) error {
	return jobs.Store.Put(ctx, jobs.PlanKey(job, configName), bytes.NewReader(raw))
}

// targetConfig is the config the planner recorded for job, read once per
// job; a plan without one (written before there was one) asks the server.
func (t *Tasks) targetConfig(ctx context.Context, job string) (*edgebase.Config, error) {
	t.mu.Lock()
	if t.configJob == job && t.config != nil {
		defer t.mu.Unlock()
		return t.config, nil
	}
	t.mu.Unlock()
	var cfg *edgebase.Config
	rc, err := t.Jobs.Store.Get(ctx, t.Jobs.PlanKey(job, configName))
	switch {
	case errors.Is(err, blob.ErrNotExist):
		cfg, _, err = t.Client.Config(ctx)
	case err == nil:
		var raw []byte
		raw, err = io.ReadAll(rc)
		rc.Close()
		if err == nil {
			cfg, err = edgebase.ParseConfig(raw)
		}
	}
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.configJob, t.config = job, cfg
	return cfg, nil
}
