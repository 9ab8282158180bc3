package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/archive"
	s3store "github.com/edgevault/edgevault/pkg/blob/s3"
	"github.com/edgevault/edgevault/pkg/serverless"
)

// TestE2EDRCopy5GiB copies a 5 GiB archive to the DR bucket with drcopy
// running in a child process (this test binary, TestE2EDRCopyChild),
// configured from the environment as in Lambda: the first invocation is
// killed (SIGKILL) after 30 part copies, the second resumes the upload
// and completes it under /usr/bin/time -v, which reports its peak RSS.
// The archive and its copy live in sparseS3 (see there why not in moto);
// the manifests, the DR role's credentials (STS) and everything else are
// moto's.
func TestE2EDRCopy5GiB(t *testing.T) {
	gate(t)
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		t.Skip("needs /usr/bin/time (apt-get install time)")
	}
	ctx := context.Background()
	clients := motoserver.Clients(t)
	st, err := SetupStack(ctx, clients, StackOptions{Name: motoserver.Name(t, "big"), DR: true})
	if err != nil {
		t.Fatal(err)
	}
	// The assembler's layout: a head member, storage members (here 80 of
	// 64 MiB), a trailer.
	const head, member, members, trailer = 100 << 10, 64 << 20, 80, 1 << 10
	size := int64(head + members*member + trailer)
	block := make([]byte, 1<<20)
	_, _ = rand.Read(block)
	key := "backups/edgebase-backup-2026-01-02T08-00-00.tar.gz"
	front := newSparseS3(t, motoserver.Start(t), st.Bucket, st.DRBucket, key, size, block)
	man := archive.Manifest{Version: archive.ManifestVersion, Archive: "edgebase-backup-2026-01-02T08-00-00.tar.gz", Format: archive.TarGz, Size: size, CreatedAt: fixedNow()}
	add := func(n int64) {
		off := offsetOf(man)
		man.Parts = append(man.Parts, archive.ManifestPart{Offset: off, Size: n, SHA256: hexSum(front.sum(off, n))})
	}
	add(head)
	for range members {
		add(member)
	}
	add(trailer)
	var mb bytes.Buffer
	if err := archive.EncodeManifest(&mb, man); err != nil {
		t.Fatal(err)
	}
	src, err := s3store.New(clients.S3(), st.Bucket, "", s3store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	manKey := archive.ManifestName(key)
	if err := src.Put(ctx, manKey, bytes.NewReader(mb.Bytes())); err != nil {
		t.Fatal(err)
	}

	aws := motoserver.Config(t)
	env := []string{"E2E_DRCOPY_CHILD=1", "E2E_DRCOPY_MANIFEST=" + manKey, "E2E_DRCOPY_BUCKET=" + st.Bucket,
		"AWS_ACCESS_KEY_ID=" + aws.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + aws.SecretAccessKey.Reveal(), "AWS_REGION=" + aws.Region}
	for k, v := range st.Env(lambdaenv.DRCopy, map[string]string{lambdaenv.AWSEndpoint: front.URL, lambdaenv.S3PathStyle: "true",
		lambdaenv.DRRoleARN: "arn:aws:iam::111111111111:role/edgevault-dr-writer"}) {
		env = append(env, k+"="+v)
	}
	child := func(timed bool) *exec.Cmd {
		args := []string{os.Args[0], "-test.run", "^TestE2EDRCopyChild$", "-test.count=1", "-test.v"}
		if timed {
			args = append([]string{"/usr/bin/time", "-v"}, args...)
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), env...)
		return cmd
	}

	// The first invocation dies after 30 part copies.
	first := child(false)
	var out1 bytes.Buffer
	first.Stdout, first.Stderr = &out1, &out1
	var kill sync.Once
	front.mu.Lock()
	front.onCopy = func(n int) {
		if n >= 30 {
			kill.Do(func() { _ = first.Process.Kill() })
		}
	}
	front.mu.Unlock()
	start := time.Now()
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	err = first.Wait()
	if err == nil || strings.Contains(out1.String(), "DRCOPY ") {
		t.Fatalf("the first invocation was not killed (%v):\n%s", err, tail(out1.String(), 20))
	}
	front.mu.Lock()
	front.onCopy = nil
	front.mu.Unlock()
	front.settle() // part copies the killed process sent are still S3's to finish
	held, copies1 := front.parts(), front.count("UploadPartCopy")
	t.Logf("first invocation killed after %s: %d part copies sent, %d parts in the upload", time.Since(start).Round(time.Millisecond), copies1, held)

	// The second resumes: only the missing parts are copied.
	listParts0 := front.count("ListParts")
	out2, err := child(true).CombinedOutput()
	if err != nil {
		t.Fatalf("the second invocation: %v\n%s", err, tail(string(out2), 40))
	}
	m := regexp.MustCompile(`DRCOPY (\{.*\})`).FindSubmatch(out2)
	rss, wall := maxRSS.FindSubmatch(out2), wallClock.FindSubmatch(out2)
	if m == nil || rss == nil || wall == nil {
		t.Fatalf("no result or no /usr/bin/time figures:\n%s", tail(string(out2), 40))
	}
	var res serverless.CopyResult
	if err := json.Unmarshal(m[1], &res); err != nil {
		t.Fatal(err)
	}
	kb, _ := strconv.ParseInt(string(rss[1]), 10, 64)
	copies2 := front.count("UploadPartCopy") - copies1
	c := res.Copied[0]
	t.Logf("5 GiB DR copy resumed and verified: %d parts, %d resumed, %d copied now, %d source bytes read (%s), peak RSS %.1f MiB, wall %s",
		c.Parts, c.Resumed, copies2, c.BytesRead, c.Verified, float64(kb)/1024, wall[1])
	// head+member 1 make 3 read-verified parts, the other 79 members and
	// the trailer one part each.
	if c.Parts != 83 || held < 30 || held >= c.Parts || c.Resumed != held || copies2 != c.Parts-held || front.count("ListParts") == listParts0 || c.Verified != "s3-checksum+read" || c.BytesRead != head+member {
		t.Fatalf("resume: result %+v, %d parts were held, %d copied by the second invocation", c, held, copies2)
	}
	if front.done == nil || front.composite(front.done) == "" || front.count("CompleteMultipartUpload") != 1 {
		t.Fatal("the copy was not completed once")
	}
	dr, err := s3store.New(clients.S3(), st.DRBucket, "", s3store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAllBlob(ctx, dr, manKey); err != nil || !bytes.Equal(got, mb.Bytes()) {
		t.Fatalf("the DR manifest: %v", err)
	}
	if kb > 128<<10 {
		t.Fatalf("peak RSS %d KiB for a 5 GiB copy", kb)
	}
}

// offsetOf is where the next part of a manifest being built starts.
func offsetOf(m archive.Manifest) int64 {
	if len(m.Parts) == 0 {
		return 0
	}
	p := m.Parts[len(m.Parts)-1]
	return p.Offset + p.Size
}

func readAllBlob(ctx context.Context, s *s3store.Store, key string) ([]byte, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(rc)
	return b.Bytes(), err
}

// TestE2EDRCopyChild is the drcopy function of TestE2EDRCopy5GiB in its
// own process: configured from the environment, invoked with the S3
// event of one manifest, its result printed as "DRCOPY <json>".
func TestE2EDRCopyChild(t *testing.T) {
	if os.Getenv("E2E_DRCOPY_CHILD") != "1" {
		t.Skip("child process of TestE2EDRCopy5GiB")
	}
	cfg, err := serverless.ConfigFromEnv(lambdaenv.DRCopy, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg, deps, err := serverless.AWSDeps(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := serverless.NewDRCopy(cfg, serverless.Runtime{Now: fixedNow}, deps)
	if err != nil {
		t.Fatal(err)
	}
	ev := manifestEvent(t, os.Getenv("E2E_DRCOPY_BUCKET"), os.Getenv("E2E_DRCOPY_MANIFEST"))
	payload, _ := json.Marshal(ev)
	ictx, cancel := context.WithTimeout(lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: NewRequestID()}), 15*time.Minute)
	defer cancel()
	res, err := h.Handle(ictx, payload)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	fmt.Printf("DRCOPY %s\n", b)
}
