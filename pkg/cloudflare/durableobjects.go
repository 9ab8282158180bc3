package cloudflare

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
)

// EdgeBase's Durable Object classes.
const (
	ClassDatabaseDO = "DatabaseDO"
	ClassAuthDO     = "AuthDO"
)

// maxPages stops a namespaces listing whose pagination never ends.
const maxPages = 10000

// Namespace is a Durable Object namespace of the account.
type Namespace struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Script    string `json:"script"` // Worker script that defines the class
	Class     string `json:"class"`
	UseSQLite bool   `json:"use_sqlite"`
}

func (c *Client) namespacesPath() string {
	return "/accounts/" + c.account + "/workers/durable_objects/namespaces"
}

// Namespaces lists every Durable Object namespace of the account, following
// page/per_page pagination. An account has few namespaces, so they are
// returned as a slice.
func (c *Client) Namespaces(ctx context.Context) ([]Namespace, error) {
	var all []Namespace
	seen := map[string]bool{}
	for page := 1; ; page++ {
		if page > maxPages {
			return nil, fmt.Errorf("cloudflare: list namespaces: %w: more than %d pages", ErrBadResponse, maxPages)
		}
		q := url.Values{"page": {strconv.Itoa(page)}, "per_page": {strconv.Itoa(c.nsPage)}}
		env, err := get[Namespace](ctx, c, c.namespacesPath(), q)
		if err != nil {
			return nil, fmt.Errorf("cloudflare: list namespaces page %d: %w", page, err)
		}
		fresh := 0
		for _, ns := range env.Result {
			if !seen[ns.ID] {
				seen[ns.ID] = true
				all = append(all, ns)
				fresh++
			}
		}
		// A page with nothing new means the server ignores page (the
		// endpoint was unpaginated once) and would repeat itself forever.
		if fresh == 0 || lastPage(page, len(env.Result), len(all), c.nsPage, env.ResultInfo) {
			return all, nil
		}
	}
}

// lastPage decides from result_info whether page was the last one:
// total_pages when sent, else total_count, else a short or empty page.
func lastPage(page, got, seen, asked int, ri resultInfo) bool {
	switch {
	case got == 0:
		return true
	case ri.TotalPages > 0:
		return page >= ri.TotalPages
	case ri.TotalCount > 0:
		return seen >= ri.TotalCount
	}
	perPage := ri.PerPage
	if perPage <= 0 {
		perPage = asked
	}
	return got < perPage
}

// NamespaceFilter selects the namespaces that hold EdgeBase data.
type NamespaceFilter struct {
	// Script keeps only namespaces of this Worker script; "" keeps every
	// script (what the official CLI does, scanning the whole account).
	Script string
	// Classes keeps only these DO classes; empty means DatabaseDO and AuthDO.
	Classes []string
}

// Keep reports whether ns passes the filter.
func (f NamespaceFilter) Keep(ns Namespace) bool {
	if f.Script != "" && ns.Script != f.Script {
		return false
	}
	if len(f.Classes) == 0 {
		return ns.Class == ClassDatabaseDO || ns.Class == ClassAuthDO
	}
	return slices.Contains(f.Classes, ns.Class)
}

// Filter returns the namespaces that pass, in their original order.
func (f NamespaceFilter) Filter(nss []Namespace) []Namespace {
	var kept []Namespace
	for _, ns := range nss {
		if f.Keep(ns) {
			kept = append(kept, ns)
		}
	}
	return kept
}

// ObjectCounts summarises an objects listing.
type ObjectCounts struct {
	Pages  int // requests that returned a page
	Stored int // ids with hasStoredData:true, passed to the callback
	NoData int // ids with hasStoredData:false, counted and skipped
}

func (a *ObjectCounts) add(b ObjectCounts) {
	a.Pages += b.Pages
	a.Stored += b.Stored
	a.NoData += b.NoData
}

type object struct {
	ID            string `json:"id"`
	HasStoredData bool   `json:"hasStoredData"`
}

// ListObjects streams the ids of the namespace's objects that have stored
// data, one page at a time: fn receives the stored ids of each page (never
// an empty slice) and may keep them only for the duration of the call. It
// follows result_info.cursor until it is empty. An error from fn stops the
// listing and is returned wrapped. Ids are validated as 64 lowercase hex.
func (c *Client) ListObjects(ctx context.Context, namespaceID string, fn func(ids []string) error) (ObjectCounts, error) {
	var counts ObjectCounts
	if !validNamespaceID(namespaceID) {
		return counts, fmt.Errorf("cloudflare: list objects %q: %w: invalid namespace id", namespaceID, ErrBadRequest)
	}
	path := c.namespacesPath() + "/" + namespaceID + "/objects"
	cursor := ""
	ids := make([]string, 0, c.objPage)
	for {
		q := url.Values{"limit": {strconv.Itoa(c.objPage)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		env, err := get[object](ctx, c, path, q)
		if err != nil {
			return counts, fmt.Errorf("cloudflare: list objects %s: %w", namespaceID, err)
		}
		counts.Pages++
		ids = ids[:0]
		for _, o := range env.Result {
			if !validObjectID(o.ID) {
				return counts, fmt.Errorf("cloudflare: list objects %s: %w: object id %q is not 64 lowercase hex", namespaceID, ErrBadResponse, o.ID)
			}
			if o.HasStoredData {
				ids = append(ids, o.ID)
			} else {
				counts.NoData++
			}
		}
		if len(ids) > 0 {
			if err := fn(ids); err != nil {
				return counts, fmt.Errorf("cloudflare: list objects %s: %w", namespaceID, err)
			}
			counts.Stored += len(ids)
		}
		next := env.ResultInfo.Cursor
		if next == "" {
			next = env.ResultInfo.Cursors.After
		}
		if next == "" {
			return counts, nil
		}
		if next == cursor {
			return counts, fmt.Errorf("cloudflare: list objects %s: %w: cursor did not advance", namespaceID, ErrBadResponse)
		}
		cursor = next
	}
}

// Enumeration is the outcome of Enumerate.
type Enumeration struct {
	Scanned []Namespace // namespaces kept by the filter, in listing order
	Skipped int         // namespaces the filter dropped
	ObjectCounts
}

// Enumerate lists the account's namespaces, keeps those passing f and
// streams the stored object ids of each, namespace by namespace (steps 1-2
// of Edge-mode enumeration). fn has ListObjects' contract plus the
// namespace the ids belong to.
func (c *Client) Enumerate(ctx context.Context, f NamespaceFilter, fn func(ns Namespace, ids []string) error) (Enumeration, error) {
	var res Enumeration
	all, err := c.Namespaces(ctx)
	if err != nil {
		return res, err
	}
	res.Scanned = f.Filter(all)
	res.Skipped = len(all) - len(res.Scanned)
	for _, ns := range res.Scanned {
		counts, err := c.ListObjects(ctx, ns.ID, func(ids []string) error { return fn(ns, ids) })
		res.add(counts)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

func validObjectID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLowerHex(s[i]) {
			return false
		}
	}
	return true
}

// validNamespaceID accepts hex and the few characters ids could plausibly
// use, but nothing that would change the request path.
func validNamespaceID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(isLowerHex(b) || b >= 'A' && b <= 'Z' || b >= 'g' && b <= 'z' || b == '-' || b == '_') {
			return false
		}
	}
	return true
}

func isLowerHex(b byte) bool { return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' }
