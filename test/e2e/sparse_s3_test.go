package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sparseS3 serves one large synthetic archive, and the DR bucket's
// multipart copy of it, in front of moto; every other request goes to
// moto unchanged.
//
// Why not moto alone: moto materialises objects. Its UploadPartCopy reads
// the whole source object into memory for every part (FakeKey.value) and
// CompleteMultipartUpload concatenates every part in one bytearray, so a
// 5 GiB archive would cost moto about 10 GiB of memory per part copied.
// This front keeps no bytes: the archive is a 1 MiB random block repeated
// (content at offset o is block[o mod 1 MiB]), generated on the fly for
// ranged GETs, and the copy keeps, per part, its range and the SHA-256
// S3 would compute for it (what S3 reports for an UploadPartCopy into an
// upload created with x-amz-checksum-algorithm SHA256, in CopyPartResult
// and ListParts; moto reports none). It implements exactly the S3
// operations drcopy sends for that key: HeadObject and ranged GetObject
// of the source; CreateMultipartUpload, UploadPartCopy (checking
// x-amz-copy-source-if-match), ListMultipartUploads, ListParts,
// CompleteMultipartUpload (with If-None-Match), AbortMultipartUpload,
// HeadObject (with its composite checksum) and ranged GetObject of the
// copy.
type sparseS3 struct {
	URL string

	srcBucket, dstBucket, key string
	size                      int64
	etag                      string
	block                     []byte

	mu      sync.Mutex
	sums    map[[2]int64][]byte // (offset mod block, length) -> SHA-256
	uploads map[string]*sparseUpload
	done    *sparseUpload // the completed copy
	ops     map[string]int
	// onCopy is called after each UploadPartCopy answered, with the count.
	onCopy func(n int)
	active sync.WaitGroup // requests being handled
}

type sparseUpload struct {
	id        string
	initiated time.Time
	parts     map[int32]sparsePart
}

type sparsePart struct {
	off, size int64
	sum       []byte
	etag      string
}

func newSparseS3(t *testing.T, moto, srcBucket, dstBucket, key string, size int64, block []byte) *sparseS3 {
	t.Helper()
	s := &sparseS3{srcBucket: srcBucket, dstBucket: dstBucket, key: key, size: size, block: block, etag: `"sparse-0001"`,
		sums: map[[2]int64][]byte{}, uploads: map[string]*sparseUpload{}, ops: map[string]int{}}
	target, err := url.Parse(moto)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: time.Minute, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.active.Add(1)
		defer s.active.Done()
		if !s.serve(w, r) {
			rp.ServeHTTP(w, r)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	s.URL = "http://" + ln.Addr().String()
	return s
}

// settle waits until no request is being handled (those of a killed
// client included).
func (s *sparseS3) settle() { s.active.Wait() }

// count returns the number of requests of an operation so far.
func (s *sparseS3) count(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ops[op]
}

func (s *sparseS3) parts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.uploads {
		return len(u.parts)
	}
	return 0
}

// read writes bytes [off, off+n) of the archive.
func (s *sparseS3) read(w io.Writer, off, n int64) error {
	bs := int64(len(s.block))
	for n > 0 {
		i := off % bs
		k := min(bs-i, n)
		if _, err := w.Write(s.block[i : i+k]); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

// sum is the SHA-256 of bytes [off, off+n), cached: with the content
// periodic, ranges of equal phase and length are equal.
func (s *sparseS3) sum(off, n int64) []byte {
	k := [2]int64{off % int64(len(s.block)), n}
	s.mu.Lock()
	if v, ok := s.sums[k]; ok {
		s.mu.Unlock()
		return v
	}
	s.mu.Unlock()
	h := sha256.New()
	_ = s.read(h, off, n)
	v := h.Sum(nil)
	s.mu.Lock()
	s.sums[k] = v
	s.mu.Unlock()
	return v
}

func (s *sparseS3) serve(w http.ResponseWriter, r *http.Request) bool {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	q := r.URL.Query()
	_, uploads := q["uploads"]
	switch {
	case bucket == s.srcBucket && key == s.key && (r.Method == http.MethodHead || r.Method == http.MethodGet):
		s.op("source " + r.Method)
		s.object(w, r, s.size, s.etag, "", s.read)
	case bucket == s.dstBucket && key == "" && uploads && r.Method == http.MethodGet && q.Get("prefix") == s.key:
		s.listUploads(w)
	case bucket == s.dstBucket && key == s.key:
		s.dst(w, r, q, uploads)
	default:
		return false
	}
	return true
}

func (s *sparseS3) op(name string) {
	s.mu.Lock()
	s.ops[name]++
	s.mu.Unlock()
}

func xmlOut(w http.ResponseWriter, status int, v any) {
	b, _ := xml.Marshal(v)
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+len(xml.Header)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, xml.Header)
	_, _ = w.Write(b)
}

type s3Error struct {
	XMLName xml.Name `xml:"Error"`
	Code    string
	Message string
}

// object answers HEAD or a (ranged) GET of an object of the given size
// whose bytes read writes.
func (s *sparseS3) object(w http.ResponseWriter, r *http.Request, size int64, etag, checksum string, read func(w io.Writer, off, n int64) error) {
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Last-Modified", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Format(http.TimeFormat))
	h.Set("Accept-Ranges", "bytes")
	if checksum != "" && r.Header.Get("X-Amz-Checksum-Mode") == "ENABLED" && r.Method == http.MethodHead {
		h.Set("X-Amz-Checksum-Sha256", checksum)
		h.Set("X-Amz-Checksum-Type", "COMPOSITE")
	}
	off, n := int64(0), size
	status := http.StatusOK
	if rng := r.Header.Get("Range"); rng != "" && r.Method == http.MethodGet {
		a, b, _ := strings.Cut(strings.TrimPrefix(rng, "bytes="), "-")
		off, _ = strconv.ParseInt(a, 10, 64)
		end := size - 1
		if b != "" {
			end, _ = strconv.ParseInt(b, 10, 64)
			end = min(end, size-1)
		}
		if off >= size {
			xmlOut(w, http.StatusRequestedRangeNotSatisfiable, s3Error{Code: "InvalidRange", Message: "range"})
			return
		}
		n, status = end-off+1, http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, end, size))
	}
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(status)
	if r.Method == http.MethodGet {
		_ = read(w, off, n)
	}
}

// readCopy writes bytes of a completed copy: its parts are ranges of the
// archive.
func (s *sparseS3) readCopy(done *sparseUpload, w io.Writer, off, n int64) error {
	var pos int64
	for i := int32(1); n > 0; i++ {
		p, ok := done.parts[i]
		if !ok {
			return io.ErrUnexpectedEOF
		}
		if off < pos+p.size {
			k := min(pos+p.size-off, n)
			if err := s.read(w, p.off+(off-pos), k); err != nil {
				return err
			}
			off, n = off+k, n-k
		}
		pos += p.size
	}
	return nil
}

func (s *sparseS3) dst(w http.ResponseWriter, r *http.Request, q url.Values, uploads bool) {
	id := q.Get("uploadId")
	switch {
	case r.Method == http.MethodPost && uploads:
		s.op("CreateMultipartUpload")
		s.mu.Lock()
		u := &sparseUpload{id: fmt.Sprintf("sparse-upload-%d", len(s.uploads)+s.ops["CreateMultipartUpload"]), initiated: time.Now().UTC(), parts: map[int32]sparsePart{}}
		s.uploads[u.id] = u
		s.mu.Unlock()
		xmlOut(w, 200, struct {
			XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
			Bucket   string
			Key      string
			UploadId string
		}{Bucket: s.dstBucket, Key: s.key, UploadId: u.id})
	case r.Method == http.MethodPut && id != "" && r.Header.Get("X-Amz-Copy-Source") != "":
		s.copyPart(w, r, id, q.Get("partNumber"))
	case r.Method == http.MethodGet && id != "":
		s.op("ListParts")
		s.mu.Lock()
		u := s.uploads[id]
		type part struct {
			PartNumber     int32
			LastModified   string
			ETag           string
			Size           int64
			ChecksumSHA256 string
		}
		var out []part
		if u != nil {
			for n := int32(1); n <= 10000; n++ {
				if p, ok := u.parts[n]; ok {
					out = append(out, part{n, "2026-01-02T03:04:05.000Z", p.etag, p.size, base64.StdEncoding.EncodeToString(p.sum)})
				}
			}
		}
		s.mu.Unlock()
		if u == nil {
			xmlOut(w, 404, s3Error{Code: "NoSuchUpload", Message: id})
			return
		}
		xmlOut(w, 200, struct {
			XMLName     xml.Name `xml:"ListPartsResult"`
			Bucket      string
			Key         string
			UploadId    string
			MaxParts    int
			IsTruncated bool
			Part        []part
		}{Bucket: s.dstBucket, Key: s.key, UploadId: id, MaxParts: 10000, Part: out})
	case r.Method == http.MethodPost && id != "":
		s.complete(w, r, id)
	case r.Method == http.MethodDelete && id != "":
		s.op("AbortMultipartUpload")
		s.mu.Lock()
		delete(s.uploads, id)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodHead || r.Method == http.MethodGet:
		s.op("copy " + r.Method)
		s.mu.Lock()
		done := s.done
		s.mu.Unlock()
		if done == nil {
			if r.Method == http.MethodHead {
				w.WriteHeader(http.StatusNotFound)
				return
			}
			xmlOut(w, 404, s3Error{Code: "NoSuchKey", Message: s.key})
			return
		}
		s.object(w, r, s.size, `"copy-0001"`, s.composite(done), func(w io.Writer, off, n int64) error { return s.readCopy(done, w, off, n) })
	default:
		xmlOut(w, 501, s3Error{Code: "NotImplemented", Message: r.Method + " " + r.URL.String()})
	}
}

func (s *sparseS3) copyPart(w http.ResponseWriter, r *http.Request, id, num string) {
	n, _ := strconv.Atoi(num)
	src, _ := url.PathUnescape(strings.TrimPrefix(r.Header.Get("X-Amz-Copy-Source"), "/"))
	src, _, _ = strings.Cut(src, "?")
	if src != s.srcBucket+"/"+s.key || n < 1 || n > 10000 {
		xmlOut(w, 400, s3Error{Code: "InvalidRequest", Message: "copy source " + src})
		return
	}
	if m := r.Header.Get("X-Amz-Copy-Source-If-Match"); m != "" && strings.Trim(m, `"`) != strings.Trim(s.etag, `"`) {
		xmlOut(w, 412, s3Error{Code: "PreconditionFailed", Message: "x-amz-copy-source-If-Match"})
		return
	}
	a, b, _ := strings.Cut(strings.TrimPrefix(r.Header.Get("X-Amz-Copy-Source-Range"), "bytes="), "-")
	off, _ := strconv.ParseInt(a, 10, 64)
	end, _ := strconv.ParseInt(b, 10, 64)
	if end >= s.size || off > end || end-off+1 > 5<<30 {
		xmlOut(w, 400, s3Error{Code: "InvalidRange", Message: "range"})
		return
	}
	sum := s.sum(off, end-off+1)
	p := sparsePart{off: off, size: end - off + 1, sum: sum, etag: fmt.Sprintf(`"%x"`, sum[:16])}
	s.mu.Lock()
	u := s.uploads[id]
	if u != nil {
		u.parts[int32(n)] = p
	}
	s.ops["UploadPartCopy"]++
	count, hook := s.ops["UploadPartCopy"], s.onCopy
	s.mu.Unlock()
	if u == nil {
		xmlOut(w, 404, s3Error{Code: "NoSuchUpload", Message: id})
		return
	}
	xmlOut(w, 200, struct {
		XMLName        xml.Name `xml:"CopyPartResult"`
		LastModified   string
		ETag           string
		ChecksumSHA256 string
	}{LastModified: "2026-01-02T03:04:05.000Z", ETag: p.etag, ChecksumSHA256: base64.StdEncoding.EncodeToString(sum)})
	if hook != nil {
		hook(count)
	}
}

func (s *sparseS3) complete(w http.ResponseWriter, r *http.Request, id string) {
	s.op("CompleteMultipartUpload")
	var body struct {
		Part []struct {
			PartNumber     int32
			ETag           string
			ChecksumSHA256 string
		}
	}
	if err := xml.NewDecoder(r.Body).Decode(&body); err != nil {
		xmlOut(w, 400, s3Error{Code: "MalformedXML", Message: err.Error()})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.uploads[id]
	switch {
	case u == nil:
		xmlOut(w, 404, s3Error{Code: "NoSuchUpload", Message: id})
		return
	case s.done != nil && r.Header.Get("If-None-Match") == "*":
		xmlOut(w, 412, s3Error{Code: "PreconditionFailed", Message: "If-None-Match"})
		return
	case s.done != nil:
		xmlOut(w, 500, s3Error{Code: "Overwrite", Message: "this front never replaces the copy"})
		return
	}
	final := &sparseUpload{id: id, parts: map[int32]sparsePart{}}
	var total int64
	for i, bp := range body.Part {
		p, ok := u.parts[bp.PartNumber]
		if !ok || bp.PartNumber != int32(i+1) || bp.ETag != p.etag || (bp.ChecksumSHA256 != "" && bp.ChecksumSHA256 != base64.StdEncoding.EncodeToString(p.sum)) {
			xmlOut(w, 400, s3Error{Code: "InvalidPart", Message: fmt.Sprint("part ", bp.PartNumber)})
			return
		}
		if i < len(body.Part)-1 && p.size < 5<<20 {
			xmlOut(w, 400, s3Error{Code: "EntityTooSmall", Message: fmt.Sprint("part ", bp.PartNumber)})
			return
		}
		final.parts[bp.PartNumber] = p
		total += p.size
	}
	if total != s.size {
		xmlOut(w, 400, s3Error{Code: "InvalidPart", Message: fmt.Sprintf("%d bytes", total)})
		return
	}
	s.done = final
	delete(s.uploads, id)
	xmlOut(w, 200, struct {
		XMLName        xml.Name `xml:"CompleteMultipartUploadResult"`
		Bucket         string
		Key            string
		ETag           string
		ChecksumSHA256 string
	}{Bucket: s.dstBucket, Key: s.key, ETag: `"copy-0001"`, ChecksumSHA256: s.composite(final)})
}

// composite is S3's checksum of a multipart object: the SHA-256 of its
// parts' SHA-256s, "-<parts>".
func (s *sparseS3) composite(u *sparseUpload) string {
	h := sha256.New()
	for i := int32(1); i <= int32(len(u.parts)); i++ {
		h.Write(u.parts[i].sum)
	}
	return fmt.Sprintf("%s-%d", base64.StdEncoding.EncodeToString(h.Sum(nil)), len(u.parts))
}

func (s *sparseS3) listUploads(w http.ResponseWriter) {
	s.op("ListMultipartUploads")
	type upload struct {
		Key               string
		UploadId          string
		Initiated         string
		StorageClass      string
		ChecksumAlgorithm string
	}
	s.mu.Lock()
	var out []upload
	for _, u := range s.uploads {
		out = append(out, upload{s.key, u.id, u.initiated.Format("2006-01-02T15:04:05.000Z"), "STANDARD", "SHA256"})
	}
	s.mu.Unlock()
	xmlOut(w, 200, struct {
		XMLName     xml.Name `xml:"ListMultipartUploadsResult"`
		Bucket      string
		Prefix      string
		MaxUploads  int
		IsTruncated bool
		Upload      []upload
	}{Bucket: s.dstBucket, Prefix: s.key, MaxUploads: 1000, Upload: out})
}

// hexSum is the manifest's form of a SHA-256.
func hexSum(b []byte) string { return hex.EncodeToString(b) }
