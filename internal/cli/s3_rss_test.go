package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

var peakRSS = regexp.MustCompile(`Maximum resident set size \(kbytes\): (\d+)`)

// rssLimit is the peak RSS the CLI may reach on s3:// paths, whatever the
// archive's size.
const rssLimit = 64 << 20

// TestS3PeakRSS measures the built edgevault binary's peak RSS
// (/usr/bin/time -v) for backup create --output s3://, backup verify
// s3://... and restore --from s3://... of a large archive on moto_server.
// EDGEVAULT_RSS_MIB sets the storage size (default 256; 1024 for the
// 1 GiB acceptance figure).
func TestS3PeakRSS(t *testing.T) {
	if os.Getenv("EDGEVAULT_SLOW") != "1" {
		t.Skip("slow: set EDGEVAULT_SLOW=1")
	}
	mib := 256
	if v := os.Getenv("EDGEVAULT_RSS_MIB"); v != "" {
		mib, _ = strconv.Atoi(v)
	}
	ctx := context.Background()
	env, bucket, _ := s3Env(t)
	src := newEmulator(t, edgebasetest.Options{})
	const objSize = 4 << 20
	for i := range mib * (1 << 20) / objSize {
		if err := src.AddObjects(ctx, edgebasetest.Object{Key: fmt.Sprintf("big/%05d.bin", i), ContentType: "application/octet-stream", Size: objSize}); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(t.TempDir(), "edgevault")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/edgevault").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cfg := env.aws
	run := func(args ...string) (int64, string) {
		t.Helper()
		cmd := exec.Command("/usr/bin/time", append([]string{"-v", bin}, args...)...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+cfg.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+cfg.SecretAccessKey.Reveal(),
			"AWS_REGION="+cfg.Region, lambdaenv.AWSEndpoint+"="+cfg.Endpoint, lambdaenv.S3PathStyle+"=true")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("edgevault %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		m := peakRSS.FindSubmatch(out)
		if m == nil {
			t.Fatalf("no peak RSS in:\n%s", out)
		}
		kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
		return kb << 10, string(out)
	}
	out := "s3://" + bucket + "/big"
	rss, log := run(append([]string{"backup", "create", "--include-storage", "--progress", "none", "--output", out}, conn(src)...)...)
	t.Logf("create: peak RSS %s for %d MiB of storage", archive.HumanBytes(rss), mib)
	if rss > rssLimit {
		t.Errorf("create: peak RSS %s > %s\n%s", archive.HumanBytes(rss), archive.HumanBytes(rssLimit), log)
	}
	m := regexp.MustCompile(`Backup written: (s3://\S+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no archive named:\n%s", log)
	}
	rss, log = run("backup", "verify", m[1])
	t.Logf("verify: peak RSS %s", archive.HumanBytes(rss))
	if rss > rssLimit {
		t.Errorf("verify: peak RSS %s > %s\n%s", archive.HumanBytes(rss), archive.HumanBytes(rssLimit), log)
	}
	dst := newEmulator(t, edgebasetest.Options{ServiceKey: "rss-target"})
	rss, log = run(append([]string{"backup", "restore", "--from", m[1], "--yes", "--progress", "none"}, conn(dst)...)...)
	t.Logf("restore: peak RSS %s", archive.HumanBytes(rss))
	if rss > rssLimit {
		t.Errorf("restore: peak RSS %s > %s\n%s", archive.HumanBytes(rss), archive.HumanBytes(rssLimit), log)
	}
}
