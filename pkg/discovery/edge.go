package discovery

import (
	"context"

	"github.com/edgevault/edgevault/pkg/cloudflare"
)

// CloudflareEdge lists DatabaseDO ids with stored data through the
// Cloudflare API, keeping only namespaces of the given Worker script ("" =
// any script).
func CloudflareEdge(c *cloudflare.Client, script string) EdgeLister {
	return cloudflareEdge{c: c, script: script}
}

type cloudflareEdge struct {
	c      *cloudflare.Client
	script string
}

func (e cloudflareEdge) DatabaseDOIDs(ctx context.Context, fn func(hexID string) error) (int, error) {
	f := cloudflare.NamespaceFilter{Script: e.script, Classes: []string{cloudflare.ClassDatabaseDO}}
	en, err := e.c.Enumerate(ctx, f, func(_ cloudflare.Namespace, ids []string) error {
		for _, id := range ids {
			if err := fn(id); err != nil {
				return err
			}
		}
		return nil
	})
	return en.Stored, err
}
