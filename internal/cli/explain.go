package cli

import (
	"errors"
	"fmt"

	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/edgebase"
)

// explain adds what the user can do about err to e: the scope a service
// key needs, where instance DOs can be found. An earlier hint is kept in
// front.
func explain(e *cmdError, err error) *cmdError {
	hint := ""
	var ae *edgebase.APIError
	var ns *discovery.NoInstanceSourceError
	switch {
	case errors.As(err, &ae) && ae.RequiredScope != "" && (errors.Is(err, edgebase.ErrUnauthorized) || errors.Is(err, edgebase.ErrForbidden)):
		e.setExtra("requiredScope", ae.RequiredScope)
		if errors.Is(err, edgebase.ErrScope) {
			e.setExtra("scopeMissing", true)
			// The backup routes refuse a scoped key without the scope
			// exactly like a wrong one, so both are named.
			hint = fmt.Sprintf("the service key needs the scope %s: the server refuses a scoped key (jb_<kid>_...) without it exactly like a wrong key. "+
				"Check the key, and give it the scope (add %q to serviceKeys.keys[].scopes in edgebase.config.ts, then deploy) or use the root service key",
				ae.RequiredScope, ae.RequiredScope)
		} else {
			hint = fmt.Sprintf("check the service key: the backup API takes the root service key (SERVICE_KEY) or a scoped key (jb_<kid>_...) with scope %s", ae.RequiredScope)
		}
	case errors.As(err, &ns):
		hint = ns.Hint()
		if ns.PackagedState != "" {
			e.setExtra("packagedState", ns.PackagedState)
		}
	}
	switch {
	case hint == "":
	case e.hint == "":
		e.hint = hint
	default:
		e.hint += "; " + hint
	}
	return e
}

func (e *cmdError) setExtra(k string, v any) {
	if e.extra == nil {
		e.extra = map[string]any{}
	}
	e.extra[k] = v
}
