package backup

import (
	"context"
	"errors"
	"fmt"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// A backup records what it saw of the server where a newer EdgeBase
// (0.4+) shows less than 0.2.8 did (protocol Appendix B), decided by the
// replies themselves, never by a version number: storage keys that belong
// to the server, content types the server masked, a redacted config
// snapshot. The planner, the storage tasks and the config task each leave
// their part in their own outputs; the assembler adds them up into the
// manifest's server observations.

// Names of the observation outputs.
const (
	// ObservationsName is the planning file with what the planner saw.
	ObservationsName = "observations.json"
	// ConfigInfoName is the config task's output beside its part.
	ConfigInfoName = "config-info.json"
)

// PlanObservations is what the planner saw while listing storage.
type PlanObservations struct {
	// InternalKeysSkipped counts server-internal keys (upload-grant
	// markers) left out of the listing: a 0.4+ server hides them itself,
	// a 0.2.8 server lists the ones a newer version left behind.
	InternalKeysSkipped int64 `json:"internalKeysSkipped"`
}

// ConfigInfo is what the config task saw in the server's config snapshot.
type ConfigInfo struct {
	// Redacted counts the values the server withheld ("[REDACTED]").
	Redacted int `json:"redacted"`
}

// RecordedType decides the content type the archive records for an
// object fetched with info. A masked reply (an octet-stream download)
// hides the real type, so the archive never records the served type as if
// it were real: it takes the listing's type when the listing knows one
// (a server that lists httpMetadata), else DefaultContentType, which the
// official CLI restores as it is and which a 0.4+ server serves exactly
// like the masked original. masked reports the fallback.
func RecordedType(o edgebase.Object, info edgebase.ObjectInfo) (ct string, masked bool) {
	if !info.Masked {
		return info.ContentType, false
	}
	if listed := edgebase.NormalizeContentType(o.ContentType); listed != edgebase.DefaultContentType {
		return o.ContentType, false
	}
	return edgebase.DefaultContentType, true
}

// MaskedWarning is the one warning of a backup in which n objects had a
// masked content type.
func MaskedWarning(n int64) string {
	return fmt.Sprintf("%d storage objects were served with a masked content type (EdgeBase 0.4+ serves HTML, SVG, JSON, PDF, ... as "+
		"application/octet-stream downloads), so their real types are unknown: the archive records %s for them and its manifest "+
		"counts them (server.contentTypesMasked). Exact types can only be read through R2's S3 API (HeadObject); a restore stores "+
		"%s, which such a server serves the same way", n, edgebase.DefaultContentType, edgebase.DefaultContentType)
}

// internalKeysNotice is the planner's one notice about skipped keys.
func internalKeysNotice(n int64) string {
	return fmt.Sprintf("%d server-internal storage keys (EdgeBase upload-grant markers under %s) were left out: they are the server's own state, not user data",
		n, edgebase.InternalKeyPrefix)
}

// routingWarnings names DB blocks whose definition the config snapshot
// withholds: whether their rows live in D1/Postgres (dump-data) cannot
// be told, so only their Durable Object is backed up.
func routingWarnings(cfg *edgebase.Config) []string {
	var out []string
	for _, b := range cfg.Databases {
		if b.Unknown {
			out = append(out, fmt.Sprintf("the server's config snapshot withholds the definition of DB block %q (redacted): its Durable Object is backed up, "+
				"but if its rows live in D1 or Postgres they are NOT in this backup", b.Name))
		}
	}
	if cfg.DatabasesUnknown {
		out = append(out, "the server's config snapshot withholds config.databases (redacted): DB blocks cannot be told apart, so data namespaces are NOT in this backup")
	}
	return out
}

// observe fills the manifest's server observations of job from the
// outputs that recorded them, given the masked count the storage ranges
// add up to, and returns the warning the backup ends with ("" if none).
func (a *Assembler) observe(ctx context.Context, jobID string, configOut string, masked int64, man *archive.Manifest) (string, error) {
	obs := man.Observe()
	obs.ContentTypesMasked = masked
	var po PlanObservations
	if err := getOptionalJSON(ctx, a.Jobs, a.Jobs.PlanKey(jobID, ObservationsName), &po); err != nil {
		return "", err
	}
	obs.InternalKeysSkipped = po.InternalKeysSkipped
	if configOut != "" {
		var ci ConfigInfo
		if err := getOptionalJSON(ctx, a.Jobs, configOut+ConfigInfoName, &ci); err != nil {
			return "", err
		}
		obs.ConfigRedacted = ci.Redacted > 0
	}
	if masked > 0 {
		return MaskedWarning(masked), nil
	}
	return "", nil
}

// getOptionalJSON reads key into v; a missing key (a job staged by an
// earlier version) leaves v as it is.
func getOptionalJSON(ctx context.Context, j *pipeline.Jobs, key string, v any) error {
	err := j.GetJSON(ctx, key, v)
	if errors.Is(err, blob.ErrNotExist) {
		return nil
	}
	return err
}
