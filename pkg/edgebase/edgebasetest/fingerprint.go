package edgebasetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// FingerprintOptions select what Fingerprint reads.
type FingerprintOptions struct {
	ServiceKey string
	// Client defaults to an http.Client with a 60 s timeout.
	Client *http.Client
	// Instances are the instance DOs ("workspace:ws-1") to include; dynamic
	// blocks cannot be listed over the API. Reading an instance that does
	// not exist creates it (empty), as the peer's GET does.
	Instances []string
	// IgnoreColumns are dropped from rows (and "id" from users) before
	// hashing; rows are then ordered by content instead of by id. Use
	// {"id","createdAt","updatedAt"} to compare two servers seeded alike
	// through the API, whose generated ids and timestamps differ.
	IgnoreColumns []string
	// Concurrency bounds parallel object downloads (default 8).
	Concurrency int
	// Config, when set, names the blocks, tables and buckets to read
	// instead of GET /config: a 0.4.2+ snapshot may withhold them
	// (redacted), e.g. a DB block whose name looks like a credential.
	Config *Config
	// Types selects the form of the content type in object lines:
	// TypesServed (the default) or TypesNormalized.
	Types TypeForm
	// StoredType, when set, returns the type the server stores for an R2
	// key (<bucket>/<path>); object lines then carry it instead of the
	// type the public download serves. A 0.4+ server serves HTML, JSON,
	// PDF, ... as octet-stream downloads, so only the stored type shows
	// whether a restore kept them. Emulator.StoredContentType is one.
	StoredType func(ctx context.Context, key string) (string, error)
}

// TypeForm is how a fingerprint writes content types.
type TypeForm int

const (
	// TypesServed writes the type exactly: compare two servers of the
	// same generation.
	TypesServed TypeForm = iota
	// TypesNormalized writes the form a 0.4+ server stores (lower-cased,
	// parameters dropped, application/octet-stream for a missing or
	// malformed type): compare a 0.2.8 server with a 0.4+ one, or a
	// backup's source with a target that normalises.
	TypesNormalized
)

// Fingerprint is a stable, diff-able summary of a server's data, one item
// per line:
//
//	users all <n> <sha256>
//	table <ns>[:<id>].<table> <n> <sha256>
//	storage <bucket> <n> <sha256>
//	object "<r2 key>" <size> <sha256> "<content-type>"
//
// The users/table/storage lines use the algorithm of the peer's
// fingerprint.sh (so they match its output when IgnoreColumns is empty);
// the object lines add every object's Content-Type (as served, or as
// FingerprintOptions.Types and StoredType select).
type Fingerprint struct {
	Lines []string
}

// String is the text form, one line each, newline-terminated.
func (f *Fingerprint) String() string {
	if len(f.Lines) == 0 {
		return ""
	}
	return strings.Join(f.Lines, "\n") + "\n"
}

// Equal reports whether two fingerprints are identical.
func (f *Fingerprint) Equal(o *Fingerprint) bool { return f.String() == o.String() }

// Diff returns the lines only in a ("- ...") and only in b ("+ ..."), in
// order; "" when equal.
func Diff(a, b *Fingerprint) string {
	inB := map[string]int{}
	for _, l := range b.Lines {
		inB[l]++
	}
	inA := map[string]int{}
	for _, l := range a.Lines {
		inA[l]++
	}
	var sb strings.Builder
	for _, l := range a.Lines {
		if inB[l] > 0 {
			inB[l]--
			continue
		}
		sb.WriteString("- " + l + "\n")
	}
	for _, l := range b.Lines {
		if inA[l] > 0 {
			inA[l]--
			continue
		}
		sb.WriteString("+ " + l + "\n")
	}
	return sb.String()
}

// canon is fingerprint.sh's canonical JSON: object keys sorted.
func canon(v any) string {
	var buf bytes.Buffer
	writeCanon(&buf, v)
	return buf.String()
}

func writeCanon(buf *bytes.Buffer, v any) {
	switch x := v.(type) {
	case []any:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeCanon(buf, e)
		}
		buf.WriteByte(']')
	case object:
		s := append(object(nil), x...)
		sort.Slice(s, func(i, j int) bool { return utf16Less(s[i].Key, s[j].Key) })
		buf.WriteByte('{')
		for i, e := range s {
			if i > 0 {
				buf.WriteByte(',')
			}
			jsString(buf, e.Key)
			buf.WriteByte(':')
			writeCanon(buf, e.Value)
		}
		buf.WriteByte('}')
	default:
		writeJS(buf, x, "", "")
	}
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

type fpClient struct {
	base string
	key  string
	c    *http.Client
}

func (f *fpClient) do(ctx context.Context, path string) (*http.Response, error) {
	var last error
	for attempt := 0; attempt < 4; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.base+path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("X-EdgeBase-Service-Key", f.key)
		resp, err := f.c.Do(req)
		if err == nil && resp.StatusCode == http.StatusOK {
			return resp, nil
		}
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			last = fmt.Errorf("GET %s: HTTP %d %s", path, resp.StatusCode, b)
			if resp.StatusCode < 500 {
				return nil, last
			}
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(200*(attempt+1)) * time.Millisecond):
		}
	}
	return nil, last
}

func (f *fpClient) getJSON(ctx context.Context, path string) (object, error) {
	resp, err := f.do(ctx, path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	v, err := parseJS(b)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	o, ok := v.(object)
	if !ok {
		return nil, fmt.Errorf("GET %s: not a JSON object", path)
	}
	return o, nil
}

// TakeFingerprint reads users, every table of every configured block (and
// the given instances) and every R2 object of baseURL through the public
// and admin API, so it works on the peer and the emulator alike.
func TakeFingerprint(ctx context.Context, baseURL string, opts FingerprintOptions) (*Fingerprint, error) {
	c := opts.Client
	if c == nil {
		c = &http.Client{Timeout: 60 * time.Second}
	}
	fc := &fpClient{base: strings.TrimRight(baseURL, "/"), key: opts.ServiceKey, c: c}
	ignore := map[string]bool{}
	for _, col := range opts.IgnoreColumns {
		ignore[col] = true
	}
	var cfg Config
	if opts.Config != nil {
		cfg = *opts.Config
	} else {
		cfgResp, err := fc.do(ctx, "/admin/api/backup/config")
		if err != nil {
			return nil, fmt.Errorf("edgebasetest: fingerprint: %w", err)
		}
		cfgBody, err := io.ReadAll(cfgResp.Body)
		cfgResp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("edgebasetest: fingerprint: config: %w", err)
		}
		if cfg, err = ParseConfig(cfgBody); err != nil {
			return nil, fmt.Errorf("edgebasetest: fingerprint: %w (a 0.4.2+ snapshot may be redacted: pass FingerprintOptions.Config)", err)
		}
	}
	fp := &Fingerprint{}
	if err := fingerprintUsers(ctx, fc, ignore, fp); err != nil {
		return nil, err
	}
	if err := fingerprintTables(ctx, fc, cfg, opts, ignore, fp); err != nil {
		return nil, err
	}
	for _, bucket := range cfg.Buckets {
		if err := fingerprintBucket(ctx, fc, bucket, opts, fp); err != nil {
			return nil, err
		}
	}
	return fp, nil
}

// fingerprintUsers adds the users line: every user's id (unless
// ignored), email, display name and role, by email.
func fingerprintUsers(ctx context.Context, fc *fpClient, ignore map[string]bool, fp *Fingerprint) error {
	var users []any
	cursor := ""
	for {
		p := "/api/auth/admin/users?limit=100"
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		page, err := fc.getJSON(ctx, p)
		if err != nil {
			return fmt.Errorf("edgebasetest: fingerprint: users: %w", err)
		}
		us, _ := page.get("users")
		arr, _ := us.([]any)
		for _, u := range arr {
			uo, _ := u.(object)
			var out object
			for _, k := range []string{"id", "email", "displayName", "role"} {
				if k == "id" && ignore["id"] {
					continue
				}
				v, _ := uo.get(k)
				out = append(out, kv{k, v})
			}
			users = append(users, out)
		}
		cv, _ := page.get("cursor")
		cursor, _ = cv.(string)
		if cursor == "" {
			break
		}
	}
	sort.SliceStable(users, func(i, j int) bool {
		ei, _ := users[i].(object).get("email")
		ej, _ := users[j].(object).get("email")
		return utf16Less(jsToString(ei), jsToString(ej))
	})
	fp.Lines = append(fp.Lines, fmt.Sprintf("users all %d %s", len(users), sha([]byte(canon(users)))))

	return nil
}

// fingerprintTables adds one line per table of every DB block (per
// instance for dynamic blocks).
func fingerprintTables(ctx context.Context, fc *fpClient, cfg Config, opts FingerprintOptions, ignore map[string]bool, fp *Fingerprint) error {
	table := func(label, path string) error {
		var items []any
		after := ""
		for {
			p := path + "?limit=1000&sort=id:asc"
			if after != "" {
				p += "&after=" + url.QueryEscape(after)
			}
			page, err := fc.getJSON(ctx, p)
			if err != nil {
				return fmt.Errorf("table %s: %w", label, err)
			}
			iv, _ := page.get("items")
			arr, _ := iv.([]any)
			items = append(items, arr...)
			if len(arr) < 1000 || len(arr) == 0 {
				break
			}
			last, _ := arr[len(arr)-1].(object).get("id")
			after = jsToString(last)
		}
		if len(ignore) > 0 {
			for i, it := range items {
				o, _ := it.(object)
				var out object
				for _, m := range o {
					if !ignore[m.Key] {
						out = append(out, m)
					}
				}
				items[i] = out
			}
			sort.SliceStable(items, func(i, j int) bool { return canon(items[i]) < canon(items[j]) })
		}
		if items == nil {
			items = []any{}
		}
		fp.Lines = append(fp.Lines, fmt.Sprintf("table %s %d %s", label, len(items), sha([]byte(canon(items)))))
		return nil
	}
	for _, d := range cfg.Databases {
		for _, t := range d.Tables {
			if d.Dynamic() {
				for _, inst := range opts.Instances {
					ns, id, _ := parseDOName(inst)
					if ns != d.Name {
						continue
					}
					if err := table(inst+"."+t.Name, "/api/db/"+url.PathEscape(ns)+"/"+url.PathEscape(id)+"/tables/"+url.PathEscape(t.Name)); err != nil {
						return fmt.Errorf("edgebasetest: fingerprint: %w", err)
					}
				}
				continue
			}
			if err := table(d.Name+"."+t.Name, "/api/db/"+url.PathEscape(d.Name)+"/tables/"+url.PathEscape(t.Name)); err != nil {
				return fmt.Errorf("edgebasetest: fingerprint: %w", err)
			}
		}
	}

	return nil
}

// fingerprintBucket adds the bucket's line (every key, size and
// SHA-256) and one line per object with its content type.
func fingerprintBucket(ctx context.Context, fc *fpClient, bucket string, opts FingerprintOptions, fp *Fingerprint) error {
	conc := opts.Concurrency
	if conc <= 0 {
		conc = 8
	}
	type file struct {
		key  string
		size int64
		sum  string
		ct   string
	}
	var files []*file
	cur := ""
	for {
		p := "/api/storage/" + url.PathEscape(bucket) + "?limit=1000"
		if cur != "" {
			p += "&cursor=" + url.QueryEscape(cur)
		}
		page, err := fc.getJSON(ctx, p)
		if err != nil {
			return fmt.Errorf("edgebasetest: fingerprint: storage %s: %w", bucket, err)
		}
		fv, _ := page.get("files")
		arr, _ := fv.([]any)
		for _, f := range arr {
			fo, _ := f.(object)
			k, _ := fo.get("key")
			s, _ := fo.get("size")
			sz, _ := s.(float64)
			files = append(files, &file{key: jsToString(k), size: int64(sz)})
		}
		tr, _ := page.get("truncated")
		cv, _ := page.get("cursor")
		cur, _ = cv.(string)
		if tr != true || cur == "" {
			break
		}
	}
	sort.Slice(files, func(i, j int) bool { return utf16Less(files[i].key, files[j].key) })
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for _, f := range files {
		g.Go(func() error {
			segs := strings.Split(f.key, "/")
			for i := range segs {
				segs[i] = encodeURIComponent(segs[i])
			}
			resp, err := fc.do(gctx, "/api/storage/"+url.PathEscape(bucket)+"/"+strings.Join(segs, "/"))
			if err != nil {
				return fmt.Errorf("object %s/%s: %w", bucket, f.key, err)
			}
			defer resp.Body.Close()
			h := sha256.New()
			if _, err := io.Copy(h, resp.Body); err != nil {
				return fmt.Errorf("object %s/%s: %w", bucket, f.key, err)
			}
			f.sum = hex.EncodeToString(h.Sum(nil))
			f.ct = resp.Header.Get("Content-Type")
			if opts.StoredType != nil {
				if f.ct, err = opts.StoredType(gctx, bucket+"/"+f.key); err != nil {
					return fmt.Errorf("object %s/%s: stored type: %w", bucket, f.key, err)
				}
			}
			if opts.Types == TypesNormalized {
				f.ct = normalizeContentType(f.ct)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("edgebasetest: fingerprint: %w", err)
	}
	lines := make([]string, len(files))
	for i, f := range files {
		lines[i] = fmt.Sprintf("%s %d %s", f.key, f.size, f.sum)
	}
	fp.Lines = append(fp.Lines, fmt.Sprintf("storage %s %d %s", bucket, len(files), sha([]byte(strings.Join(lines, "\n")))))
	for _, f := range files {
		fp.Lines = append(fp.Lines, fmt.Sprintf("object %s %d %s %s", strconv.Quote(bucket+"/"+f.key), f.size, f.sum, strconv.Quote(f.ct)))
	}
	return nil
}

// encodeURIComponent escapes like JavaScript's encodeURIComponent.
func encodeURIComponent(s string) string {
	var sb strings.Builder
	for _, b := range []byte(s) {
		if (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || strings.IndexByte("-_.!~*'()", b) >= 0 {
			sb.WriteByte(b)
			continue
		}
		fmt.Fprintf(&sb, "%%%02X", b)
	}
	return sb.String()
}
