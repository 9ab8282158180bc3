package s3test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Policy is the subset of the DR bucket policy (infra's DR stack, and
// docs/DEPLOY.md "Setting up the destination by hand") that PolicyProxy
// enforces on the buckets it names:
//
//   - NoOverwrites: PutObject and CompleteMultipartUpload without an
//     If-None-Match header are denied (s3:if-none-match is Null with
//     s3:ObjectCreationOperation true); CreateMultipartUpload,
//     UploadPart and UploadPartCopy are not object-creation operations
//     and pass; a CopyObject is denied too;
//   - OnlySSEKMS / OnlyTheDRKey / NoSSEC: a write that asks for another
//     encryption than aws:kms, another key than KMSKeyID (when set), or
//     SSE-C is denied;
//   - the writer role has no s3:DeleteObject: deletes are denied
//     (aborting an upload is allowed).
type Policy struct {
	Buckets  []string
	KMSKeyID string
}

// PolicyProxy is a reverse proxy in front of an S3 endpoint with
// path-style addressing that answers 403 AccessDenied to what Policy
// denies. S3 decides bucket policies before it touches the object; moto
// does not evaluate them at all, so adapter tests put this in front of it.
type PolicyProxy struct {
	URL string

	mu      sync.Mutex
	denied  []string
	srv     *http.Server
	buckets map[string]bool
	policy  Policy
}

// NewPolicyProxy starts the proxy on 127.0.0.1 in front of upstream and
// stops it when the test ends.
func NewPolicyProxy(t testing.TB, upstream string, p Policy) *PolicyProxy {
	t.Helper()
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatalf("s3test: upstream %q: %v", upstream, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	pp := &PolicyProxy{URL: "http://" + ln.Addr().String(), buckets: map[string]bool{}, policy: p}
	for _, b := range p.Buckets {
		pp.buckets[b] = true
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	pp.srv = &http.Server{ReadHeaderTimeout: time.Minute, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if why := pp.deny(r); why != "" {
			pp.mu.Lock()
			pp.denied = append(pp.denied, r.Method+" "+r.URL.Path+": "+why)
			pp.mu.Unlock()
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied (explicit deny in a resource-based policy: %s)</Message></Error>`, why)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = pp.srv.Serve(ln) }()
	t.Cleanup(func() { _ = pp.srv.Close() })
	return pp
}

// Denied lists the requests refused so far ("METHOD /path: statement").
func (pp *PolicyProxy) Denied() []string {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return append([]string(nil), pp.denied...)
}

// deny returns the statement that denies r, or "".
func (pp *PolicyProxy) deny(r *http.Request) string {
	path := strings.TrimPrefix(r.URL.Path, "/")
	bucket, key, _ := strings.Cut(path, "/")
	if !pp.buckets[bucket] || key == "" {
		return ""
	}
	q := r.URL.Query()
	_, uploadID := q["uploadId"]
	_, uploads := q["uploads"]
	_, partNumber := q["partNumber"]
	var write, creates bool
	switch {
	case r.Method == http.MethodDelete && !uploadID:
		return "no s3:DeleteObject"
	case r.Method == http.MethodPut && partNumber && uploadID:
		write = true // UploadPart, UploadPartCopy: not object creation
	case r.Method == http.MethodPut:
		if r.Header.Get("X-Amz-Copy-Source") != "" {
			return "NoOverwrites (CopyObject)"
		}
		write, creates = true, true // PutObject
	case r.Method == http.MethodPost && uploads:
		write = true // CreateMultipartUpload
	case r.Method == http.MethodPost && uploadID:
		creates = true // CompleteMultipartUpload
	}
	if creates && r.Header.Get("If-None-Match") == "" {
		return "NoOverwrites"
	}
	if !write {
		return ""
	}
	if r.Header.Get("X-Amz-Server-Side-Encryption-Customer-Algorithm") != "" {
		return "NoSSEC"
	}
	if partNumber {
		return ""
	}
	if sse := r.Header.Get("X-Amz-Server-Side-Encryption"); sse != "" && sse != "aws:kms" {
		return "OnlySSEKMS"
	}
	if k := r.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"); pp.policy.KMSKeyID != "" && k != "" && k != pp.policy.KMSKeyID {
		return "OnlyTheDRKey"
	}
	return ""
}
