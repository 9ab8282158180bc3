package edgebase

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/edgevault/edgevault/internal/iox"
)

// DO types accepted by dump-do, restore-do and wipe-do.
const (
	TypeDatabase = "database"
	TypeAuth     = "auth"
)

// DO is one entry of list-dos. Namespace is the binding name (DATABASE or
// AUTH), not the DB namespace.
type DO struct {
	Name      string `json:"doName"`
	Type      string `json:"type"`
	Namespace string `json:"namespace"`
}

// ListDOs calls list-dos. Without hex ids the server scans its config
// ("shared" plus every DB block name); with ids it resolves each to a name
// and silently drops ids it cannot resolve.
func (c *Client) ListDOs(ctx context.Context, hexIDs []string) ([]DO, error) {
	var in any = struct{}{}
	if len(hexIDs) > 0 {
		in = struct {
			HexIDs []string `json:"hexIds"`
		}{hexIDs}
	}
	var out struct {
		DOs   []DO `json:"dos"`
		Total int  `json:"total"`
	}
	if err := c.jsonCall(ctx, "list-dos", in, &out); err != nil {
		return nil, err
	}
	return out.DOs, nil
}

// Config returns the server's runtime config: the raw bytes (stored in
// backups verbatim) and the parsed parts the pipeline needs. On 0.4.2+
// servers it is a redacted snapshot (see RedactedValue, Config.Redacted):
// it describes the deployment, it cannot recreate it.
func (c *Client) Config(ctx context.Context) (*Config, []byte, error) {
	var raw []byte
	err := c.do(ctx, request{op: "config", method: http.MethodGet, path: backupPath("config"),
		handle: func(_ *http.Response, body io.Reader) error {
			b, err := io.ReadAll(body)
			raw = b
			return err
		}})
	if err != nil {
		return nil, nil, err
	}
	cfg, err := ParseConfig(raw)
	if err != nil {
		return nil, nil, err
	}
	return cfg, raw, nil
}

// DumpDO streams the dump-do reply to fn. The reply is passed through
// verbatim; fn decides what is valid (a {"needsCreate":true} reply is a
// 200 too). A truncated body surfaces as an error from fn's reads and the
// whole call is retried, so fn must not have side effects that a retry
// would duplicate (write to a temporary and commit on success).
func (c *Client) DumpDO(ctx context.Context, name, typ string, fn func(io.Reader) error) error {
	return c.streamCall(ctx, "dump-do", map[string]string{"doName": name, "type": typ}, fn)
}

// DumpD1 streams the dump-d1 (AUTH_DB) reply to fn.
func (c *Client) DumpD1(ctx context.Context, fn func(io.Reader) error) error {
	return c.streamCall(ctx, "dump-d1", nil, fn)
}

// DumpControlD1 streams the dump-control-d1 reply to fn.
func (c *Client) DumpControlD1(ctx context.Context, fn func(io.Reader) error) error {
	return c.streamCall(ctx, "dump-control-d1", nil, fn)
}

// DumpData streams the dump-data reply for one namespace to fn.
func (c *Client) DumpData(ctx context.Context, namespace string, fn func(io.Reader) error) error {
	return c.streamCall(ctx, "dump-data", map[string]string{"namespace": namespace}, fn)
}

// RestoreResult is the reply of the restore-* endpoints.
type RestoreResult struct {
	OK          bool   `json:"ok"`
	Restored    int64  `json:"restored"`
	Message     string `json:"message,omitempty"`
	NeedsCreate bool   `json:"needsCreate,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
}

// RestoreDO replaces one DO's tables. tables must produce the JSON object
// {"<table>":[rows...]}; it is streamed into the request. A reply without
// "ok":true is an error (ErrNeedsCreate for an instance that does not
// exist on the target yet).
func (c *Client) RestoreDO(ctx context.Context, name, typ string, tables BodyFunc) (RestoreResult, error) {
	prefix, err := json.Marshal(map[string]string{"doName": name, "type": typ})
	if err != nil {
		return RestoreResult{}, err
	}
	// {"doName":..,"type":..,"tables":<tables>}
	head := append(prefix[:len(prefix)-1:len(prefix)-1], `,"tables":`...)
	return c.restoreCall(ctx, "restore-do", wrapBody(head, tables))
}

// RestoreD1 restores AUTH_DB. With skipWipe false the server first
// deletes every auth table.
func (c *Client) RestoreD1(ctx context.Context, tables BodyFunc, skipWipe bool) (RestoreResult, error) {
	return c.restoreCall(ctx, "restore-d1", wrapBody(skipWipeHead(skipWipe), tables))
}

// RestoreControlD1 restores CONTROL_DB's _meta.
func (c *Client) RestoreControlD1(ctx context.Context, tables BodyFunc, skipWipe bool) (RestoreResult, error) {
	return c.restoreCall(ctx, "restore-control-d1", wrapBody(skipWipeHead(skipWipe), tables))
}

// RestoreData restores one D1/Postgres data namespace. skipWipe must stay
// false for Postgres-backed namespaces, where a repeated insert is a
// duplicate-key error.
func (c *Client) RestoreData(ctx context.Context, namespace string, tables BodyFunc, skipWipe bool) (RestoreResult, error) {
	ns, err := json.Marshal(namespace)
	if err != nil {
		return RestoreResult{}, err
	}
	head := fmt.Appendf(nil, `{"namespace":%s,"skipWipe":%t,"tables":`, ns, skipWipe)
	return c.restoreCall(ctx, "restore-data", wrapBody(head, tables))
}

func skipWipeHead(skipWipe bool) []byte {
	return fmt.Appendf(nil, `{"skipWipe":%t,"tables":`, skipWipe)
}

// wrapBody produces head + tables + "}".
func wrapBody(head []byte, tables BodyFunc) BodyFunc {
	return func() (io.ReadCloser, error) {
		t, err := tables()
		if err != nil {
			return nil, err
		}
		return iox.ReadCloser{Reader: io.MultiReader(bytes.NewReader(head), t, strings.NewReader("}")), Closer: t}, nil
	}
}

// WipeDO deletes everything in one DO (storage.deleteAll on the server).
func (c *Client) WipeDO(ctx context.Context, name, typ string) error {
	var out RestoreResult
	if err := c.jsonCall(ctx, "wipe-do", map[string]string{"doName": name, "type": typ}, &out); err != nil {
		return err
	}
	if !out.OK {
		return fmt.Errorf("edgebase: wipe-do %s: %w", name, ErrNotOK)
	}
	return nil
}

// ResyncUsersPublic rebuilds _users_public from _users.
func (c *Client) ResyncUsersPublic(ctx context.Context) (synced int64, err error) {
	var out struct {
		OK          bool  `json:"ok"`
		TotalSynced int64 `json:"totalSynced"`
	}
	if err := c.jsonCall(ctx, "resync-users-public", nil, &out); err != nil {
		return 0, err
	}
	if !out.OK {
		return 0, fmt.Errorf("edgebase: resync-users-public: %w", ErrNotOK)
	}
	return out.TotalSynced, nil
}

// CleanupPluginRequest is the body of cleanup-plugin.
type CleanupPluginRequest struct {
	Prefix    string `json:"prefix"`
	Namespace string `json:"namespace,omitempty"`
	ID        string `json:"id,omitempty"`
	DOName    string `json:"doName,omitempty"`
}

// CleanupPluginResult is its reply.
type CleanupPluginResult struct {
	OK      bool            `json:"ok"`
	Prefix  string          `json:"prefix"`
	Target  json.RawMessage `json:"target"`
	Removed struct {
		Tables   []string `json:"tables"`
		MetaKeys []string `json:"metaKeys"`
	} `json:"removed"`
}

// CleanupPlugin drops a plugin's tables (not used by backup; part of the
// admin surface for completeness).
func (c *Client) CleanupPlugin(ctx context.Context, req CleanupPluginRequest) (CleanupPluginResult, error) {
	var out CleanupPluginResult
	err := c.jsonCall(ctx, "cleanup-plugin", req, &out)
	return out, err
}

// Object is one entry of dump-storage?action=list.
type Object struct {
	Key         string `json:"key"`
	Size        int64  `json:"size"`
	ETag        string `json:"etag"`
	ContentType string `json:"contentType"`
}

// ListStorage streams every R2 object of the deployment to fn, decoding
// the single large list reply incrementally. Retries happen only before
// the first object was handed to fn.
func (c *Client) ListStorage(ctx context.Context, fn func(Object) error) (total int64, err error) {
	delivered := false
	err = c.do(ctx, request{op: "dump-storage list", method: http.MethodPost,
		path: backupPath("dump-storage"), query: "action=list",
		committed: func() bool { return delivered },
		handle: func(_ *http.Response, body io.Reader) error {
			n, err := decodeObjectList(body, func(o Object) error {
				delivered = true
				return fn(o)
			})
			total = n
			return err
		}})
	return total, err
}

// ObjectInfo is what a storage get reply says about the object.
type ObjectInfo struct {
	Key  string
	Size int64 // -1 when the server sent no Content-Length
	// ContentType is the object's stored type as the server reported it
	// (DefaultContentType when it sent none), or "" when Masked: a masked
	// type is never presented as the real one.
	ContentType string
	// Masked reports that the server served the object as a download
	// (Content-Disposition: attachment with application/octet-stream), as
	// EdgeBase 0.4+ does for every type outside its passive list. The real
	// type is unknown: it may be HTML, JSON, PDF, ... or really
	// application/octet-stream. Callers that must record a type fall back
	// to another source (R2's S3 API, the listing) or DefaultContentType,
	// and say so.
	Masked bool
	// ServedContentType is the Content-Type header exactly as sent.
	ServedContentType string
	// ETag is the object's etag when the source reports one (R2 direct;
	// the admin API's get sends none).
	ETag string
}

// GetObject streams one R2 object to fn. Like DumpDO, the whole call is
// retried on transport errors, so fn must commit only on success.
func (c *Client) GetObject(ctx context.Context, key string, fn func(io.Reader, ObjectInfo) error) error {
	return c.do(ctx, request{op: "dump-storage get", method: http.MethodPost,
		path: backupPath("dump-storage"), query: "action=get&key=" + EncodeURIComponent(key),
		handle: func(resp *http.Response, body io.Reader) error {
			return fn(body, objectInfo(key, resp))
		}})
}

func objectInfo(key string, resp *http.Response) ObjectInfo {
	served := resp.Header.Get("Content-Type")
	info := ObjectInfo{Key: key, Size: resp.ContentLength, ContentType: served, ServedContentType: served}
	switch {
	case masked(resp.Header):
		info.Masked, info.ContentType = true, ""
	case served == "":
		info.ContentType = DefaultContentType
	}
	return info
}

// WipeStorage deletes every R2 object of the deployment.
func (c *Client) WipeStorage(ctx context.Context) (deleted int64, err error) {
	var out struct {
		OK      bool  `json:"ok"`
		Deleted int64 `json:"deleted"`
	}
	err = c.do(ctx, request{op: "restore-storage wipe", method: http.MethodPost,
		path: backupPath("restore-storage"), query: "action=wipe",
		handle: decodeInto(&out)})
	if err == nil && !out.OK {
		err = fmt.Errorf("edgebase: restore-storage wipe: %w", ErrNotOK)
	}
	return out.Deleted, err
}

// PutObject uploads one R2 object; size may be -1 when unknown. The
// content type becomes the object's httpMetadata.contentType.
func (c *Client) PutObject(ctx context.Context, key, contentType string, size int64, body BodyFunc) error {
	if contentType == "" {
		contentType = DefaultContentType
	}
	var out struct {
		OK   bool   `json:"ok"`
		Key  string `json:"key"`
		Size int64  `json:"size"`
	}
	err := c.do(ctx, request{op: "restore-storage put", method: http.MethodPost,
		path: backupPath("restore-storage"), query: "action=put&key=" + EncodeURIComponent(key),
		body: body, size: size, contentType: contentType, handle: decodeInto(&out)})
	if err != nil {
		return err
	}
	if !out.OK {
		return fmt.Errorf("edgebase: restore-storage put %q: %w", key, ErrNotOK)
	}
	if size >= 0 && out.Size != size {
		return fmt.Errorf("edgebase: restore-storage put %q: server stored %d bytes, sent %d", key, out.Size, size)
	}
	return nil
}

// Export streams GET /export/{table}?format=json to fn together with the
// X-EdgeBase-Notice header (set for view-like tables).
func (c *Client) Export(ctx context.Context, table string, fn func(body io.Reader, notice string) error) error {
	return c.do(ctx, request{op: "export", method: http.MethodGet,
		path: backupPath("export/" + EncodeURIComponent(table)), query: "format=json",
		handle: func(resp *http.Response, body io.Reader) error {
			return fn(body, resp.Header.Get("X-EdgeBase-Notice"))
		}})
}

// TouchTable reads one row of a table through the public REST API with
// the service key. It creates what a first touch creates on the server: a
// dynamic DB instance (so restore-do stops answering needsCreate) or a
// D1 table that a fresh target has not created yet. id is empty for
// single-instance blocks.
func (c *Client) TouchTable(ctx context.Context, namespace, id, table string) error {
	p := "/api/db/" + EncodeURIComponent(namespace)
	if id != "" {
		p += "/" + EncodeURIComponent(id)
	}
	p += "/tables/" + EncodeURIComponent(table)
	return c.do(ctx, request{op: "touch " + namespace, method: http.MethodGet, path: p, query: "limit=1",
		scope: "db:table:" + table + ":read"})
}

func (c *Client) jsonCall(ctx context.Context, route string, in, out any) error {
	var body BodyFunc
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("edgebase: %s: %w", route, err)
		}
		body = BytesBody(b)
	}
	return c.do(ctx, request{op: route, method: http.MethodPost, path: backupPath(route), body: body, size: -1, handle: decodeInto(out)})
}

func (c *Client) streamCall(ctx context.Context, route string, in any, fn func(io.Reader) error) error {
	var body BodyFunc
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("edgebase: %s: %w", route, err)
		}
		body = BytesBody(b)
	}
	return c.do(ctx, request{op: route, method: http.MethodPost, path: backupPath(route), body: body, size: -1,
		handle: func(_ *http.Response, r io.Reader) error { return fn(r) }})
}

func (c *Client) restoreCall(ctx context.Context, route string, body BodyFunc) (RestoreResult, error) {
	var out RestoreResult
	err := c.do(ctx, request{op: route, method: http.MethodPost, path: backupPath(route), body: body, size: -1, handle: decodeInto(&out)})
	if err != nil {
		return out, err
	}
	switch {
	case out.NeedsCreate:
		return out, fmt.Errorf("edgebase: %s: %w", route, ErrNeedsCreate)
	case !out.OK:
		return out, fmt.Errorf("edgebase: %s: %w", route, ErrNotOK)
	}
	return out, nil
}

func decodeInto(out any) func(*http.Response, io.Reader) error {
	return func(_ *http.Response, body io.Reader) error {
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("edgebase: decoding reply %.200q: %w", b, err)
		}
		return nil
	}
}

// decodeObjectList walks {"objects":[...],"total":n,...} one object at a
// time.
func decodeObjectList(r io.Reader, fn func(Object) error) (int64, error) {
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return 0, err
	}
	var n int64
	seen := false
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return n, err
		}
		if k != "objects" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return n, err
			}
			continue
		}
		seen = true
		if err := expectDelim(dec, '['); err != nil {
			return n, err
		}
		for dec.More() {
			var o Object
			if err := dec.Decode(&o); err != nil {
				return n, fmt.Errorf("edgebase: storage list entry %d: %w", n, err)
			}
			n++
			if err := fn(o); err != nil {
				return n, err
			}
		}
		if err := expectDelim(dec, ']'); err != nil {
			return n, err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return n, err
	}
	if !seen {
		return n, fmt.Errorf("edgebase: storage list reply has no \"objects\"")
	}
	return n, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	t, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != want {
		return fmt.Errorf("edgebase: unexpected %v in reply, want %q", t, string(want))
	}
	return nil
}
