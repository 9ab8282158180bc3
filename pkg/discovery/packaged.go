package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/edgevault/edgevault/internal/miniflare"
	"github.com/edgevault/edgevault/pkg/edgebase"
)

// NoInstanceSourceError is a dynamic DB block whose instances no
// enumeration source can list. PackagedState is the state directory of a
// packaged app of this deployment found on this machine, if any.
type NoInstanceSourceError struct {
	Block         string
	PackagedState string
}

func (e *NoInstanceSourceError) Error() string {
	state := "the local dev server's or packaged app's state directory (--state-dir)"
	if e.PackagedState != "" {
		state = fmt.Sprintf("the local dev server's or packaged app's state directory (--state-dir; a packaged app's state was found at %s)", e.PackagedState)
	}
	return fmt.Sprintf("DB block %q is dynamic (one DO per instance) and no source can list its instances here: "+
		"give Cloudflare credentials (Edge mode: --account-id/--api-token; on AWS the stack's cloudflareAccountId), "+
		"%s, or the instance names (--instances; on AWS the stack's instances); "+
		"or knowingly leave them out (--skip-instances; on AWS skipInstances)", e.Block, state)
}

// Hint is the one-line advice for the CLI.
func (e *NoInstanceSourceError) Hint() string {
	if e.PackagedState != "" {
		return fmt.Sprintf("a packaged app (edgebase pack) keeps its state in %s: pass --state-dir %s if this is that app", e.PackagedState, e.PackagedState)
	}
	return "a local dev server keeps its state in .wrangler/state (or its --persist-to directory); a packaged app (edgebase pack) in " +
		"<user data dir>/<app>/state, e.g. ~/.local/share/<app>/state: pass that directory with --state-dir"
}

// packagedState looks for a packaged app of this deployment on this
// machine. A packaged app's data directory is named after the project,
// which the config snapshot carries only if it has a top-level project
// name (EdgeBase's own config has none today; the packer derives the name
// from the project directory), so without one nothing is looked for.
func (e *Enumerator) packagedState(ctx context.Context) string {
	_, raw, err := e.Client.Config(ctx)
	if err != nil {
		return ""
	}
	name := ProjectName(raw)
	if name == "" {
		return ""
	}
	find := e.FindPackagedState
	if find == nil {
		find = miniflare.FindPackagedState
	}
	for _, app := range packagedAppNames(name) {
		if dir, err := find(app); err == nil {
			return dir
		}
	}
	return ""
}

// ProjectName returns the project name a config snapshot carries in a
// top-level "projectName", "appName" or "name" string, or "" (also for a
// redacted value).
func ProjectName(raw []byte) string {
	var top map[string]json.RawMessage
	if json.Unmarshal(raw, &top) != nil {
		return ""
	}
	for _, k := range []string{"projectName", "appName", "name"} {
		var s string
		if json.Unmarshal(top[k], &s) == nil && s != "" && s != edgebase.RedactedValue {
			return s
		}
	}
	return ""
}

var unsafeAppChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// packagedAppNames are the data directory names a packaged app of the
// project may use: the name itself (protocol B.5's <app>) and the
// packer's own form, "edgebase-" plus the name lower-cased with unsafe
// characters replaced.
func packagedAppNames(project string) []string {
	slug := strings.Trim(unsafeAppChars.ReplaceAllString(strings.TrimSuffix(project, ".app"), "-"), "-")
	out := []string{}
	if !strings.ContainsAny(project, `/\`) && project != "." && project != ".." {
		out = append(out, project)
	}
	if slug != "" {
		out = append(out, "edgebase-"+strings.ToLower(slug))
	}
	return out
}
