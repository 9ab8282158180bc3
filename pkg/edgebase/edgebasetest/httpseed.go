package edgebasetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/sync/errgroup"
)

// HTTPSeed is what SeedHTTP writes; the fields are the peer's seed.sh
// arguments.
type HTTPSeed struct {
	Users           int // user{i}@peer.test
	Instances       int // workspace:ws-{i} (0 for the static profile)
	Files           int // f/{i}.txt, alternating buckets
	RowsPerInstance int // default 3
	Parallel        int // default 4
}

// SeedHTTP seeds any EdgeBase server (peer or emulator) through the public
// REST API exactly like the peer's seed.sh: users, 10 posts + 3 tags
// (shared), 5 ledger entries, instance DOs with RowsPerInstance tasks each,
// and small text files. Two servers seeded alike give equal fingerprints
// when ids and timestamps are ignored.
func SeedHTTP(ctx context.Context, client *http.Client, baseURL, key string, s HTTPSeed) error {
	if client == nil {
		client = http.DefaultClient
	}
	if s.RowsPerInstance == 0 {
		s.RowsPerInstance = 3
	}
	if s.Parallel <= 0 {
		s.Parallel = 4
	}
	base := strings.TrimRight(baseURL, "/")
	post := func(ctx context.Context, path, ct string, body []byte) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("X-EdgeBase-Service-Key", key)
		req.Header.Set("Content-Type", ct)
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("edgebasetest: seed POST %s: %w", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 400 {
			return fmt.Errorf("edgebasetest: seed POST %s: HTTP %d %s", path, resp.StatusCode, b)
		}
		return nil
	}
	postJSON := func(ctx context.Context, path string, v any) error {
		return post(ctx, path, "application/json", marshalJS(v))
	}
	parallel := func(n int, fn func(ctx context.Context, i int) error) error {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(s.Parallel)
		for i := 1; i <= n; i++ {
			g.Go(func() error { return fn(gctx, i) })
		}
		return g.Wait()
	}
	if err := parallel(s.Users, func(ctx context.Context, i int) error {
		return postJSON(ctx, "/api/auth/signup", object{
			{"email", fmt.Sprintf("user%d@peer.test", i)}, {"password", fmt.Sprintf("Passw0rd!%d-peer", i)},
			{"data", object{{"displayName", fmt.Sprintf("User %d", i)}}},
		})
	}); err != nil {
		return err
	}
	for i := 1; i <= 10; i++ {
		if err := postJSON(ctx, "/api/db/shared/tables/posts", object{{"title", fmt.Sprintf("post %d", i)}, {"body", fmt.Sprintf("body of post %d", i)}}); err != nil {
			return err
		}
	}
	for _, n := range []string{"red", "green", "blue"} {
		if err := postJSON(ctx, "/api/db/shared/tables/tags", object{{"name", n}}); err != nil {
			return err
		}
	}
	for i := 1; i <= 5; i++ {
		if err := postJSON(ctx, "/api/db/ledger/tables/entries", object{{"amount", float64(i) + 0.25}, {"memo", fmt.Sprintf("entry %d", i)}}); err != nil {
			return err
		}
	}
	if err := parallel(s.Instances, func(ctx context.Context, i int) error {
		rows := make([]any, s.RowsPerInstance)
		for j := range rows {
			rows[j] = object{{"title", fmt.Sprintf("ws-%d task %d", i, j+1)}, {"done", (j+1)%2 == 0}}
		}
		return postJSON(ctx, fmt.Sprintf("/api/db/workspace/ws-%d/tables/tasks/batch", i), object{{"inserts", rows}})
	}); err != nil {
		return err
	}
	return parallel(s.Files, func(ctx context.Context, i int) error {
		bucket := "uploads"
		if i%2 == 0 {
			bucket = "avatars"
		}
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="%d.txt"`, i))
		h.Set("Content-Type", "text/plain")
		fw, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		fmt.Fprintf(fw, "peer file %d\n%s\n", i, strings.Repeat("x", (i*37)%200+1))
		if err := mw.WriteField("key", fmt.Sprintf("f/%d.txt", i)); err != nil {
			return err
		}
		if err := mw.Close(); err != nil {
			return err
		}
		return post(ctx, "/api/storage/"+bucket+"/upload", mw.FormDataContentType(), body.Bytes())
	})
}
