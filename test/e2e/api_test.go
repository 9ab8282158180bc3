package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
)

// TestE2EAPI exercises the api function's contract over a real bucket:
// validation and its 4xx answers, routing, idempotent starts, listing
// newest first with pagination, and the status of a failed job.
func TestE2EAPI(t *testing.T) {
	gate(t)
	src := newTarget(t, true)
	src.fingerprint(t)
	d := deploy(t, src, deployOptions{})

	for _, c := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"GET", "/", "", 404, "not_found"},
		{"GET", "/jobs", "", 404, "not_found"},
		{"GET", "/backups/a/b", "", 404, "not_found"},
		{"GET", "/backups/no-such-job", "", 404, "not_found"},
		{"GET", "/backups/..", "", 404, "not_found"},
		{"DELETE", "/backups", "", 405, "method_not_allowed"},
		{"POST", "/backups/x", "", 405, "method_not_allowed"},
		{"POST", "/backups", `{"includeStorage":"yes"}`, 400, "invalid_body"},
		{"POST", "/backups", `{"includeStorag":true}`, 400, "invalid_body"},
		{"POST", "/backups", `{} {}`, 400, "invalid_body"},
		{"POST", "/restores", `{"archive":"backups/edgebase-backup-2026-01-02T03-04-05.tar.gz"}`, 400, "confirmation_required"},
		{"POST", "/restores", `{"archive":"backups/edgebase-backup-2026-01-02T03-04-05.tar.gz","confirm":false}`, 400, "confirmation_required"},
		{"POST", "/restores", `{"confirm":true}`, 400, "invalid_archive"},
		{"POST", "/restores", `{"archive":"jobs/x/job.json","confirm":true}`, 400, "invalid_archive"},
		{"POST", "/restores", `{"archive":"../secrets.json","confirm":true}`, 400, "invalid_archive"},
		{"POST", "/restores", `{"archive":"edgebase-backup-2026-01-02T03-04-05.json","confirm":true,"only":["bogus:x"]}`, 400, "invalid_only"},
		{"POST", "/restores", `{"archive":"edgebase-backup-2026-01-02T03-04-05.json","confirm":true,"skipSecrets":true}`, 422, "archive_not_found"},
		{"POST", "/restores", `{"archive":"edgebase-backup-2026-01-02T03-04-05.json","confirm":true}`, 403, "secrets_not_allowed"},
		{"POST", "/backups", `{"includeSecrets":true}`, 403, "secrets_not_allowed"},
		{"GET", "/backups", "", 200, ""},
	} {
		q := map[string]string(nil)
		status, body := d.call(c.method, c.path, c.body, q)
		if status != c.status || errCode(body) != c.code {
			t.Errorf("%s %s %s: %d %v, want %d %s", c.method, c.path, c.body, status, body, c.status, c.code)
		}
		if c.status >= 400 && !strings.Contains(body["error"].(map[string]any)["message"].(string), "") {
			t.Errorf("no message: %v", body)
		}
	}
	if status, body := d.call("GET", "/backups", "", map[string]string{"limit": "0"}); status != 400 || errCode(body) != "invalid_limit" {
		t.Errorf("limit=0: %d %v", status, body)
	}
	if status, body := d.call("GET", "/backups", "", map[string]string{"cursor": "!!"}); status != 400 || errCode(body) != "invalid_cursor" {
		t.Errorf("bad cursor: %d %v", status, body)
	}

	stop := d.run()
	defer stop()
	// Three backups through the API; the same Idempotency-Key twice gives
	// the same job.
	var ids []string
	for i := range 3 {
		status, body := d.callWithHeader("POST", "/backups", `{"includeStorage":false}`, map[string]string{"Idempotency-Key": "k" + string(rune('0'+i))})
		if status != 202 || body["state"] != "accepted" {
			t.Fatalf("POST /backups: %d %v", status, body)
		}
		ids = append(ids, body["id"].(string))
		d.wait(events.KindBackup, ids[i], 2*time.Minute)
	}
	status, again := d.callWithHeader("POST", "/backups", `{}`, map[string]string{"idempotency-key": "k0"})
	if status != 202 || again["id"] != ids[0] {
		t.Fatalf("idempotent POST: %d %v, want job %s", status, again, ids[0])
	}
	// The same key with another request: refused, not the old job with
	// the new options echoed.
	status, again = d.callWithHeader("POST", "/backups", `{"includeStorage":true}`, map[string]string{"Idempotency-Key": "k0"})
	if status != 409 || errCode(again) != "idempotency_key_reused" {
		t.Fatalf("reused Idempotency-Key: %d %v", status, again)
	}
	// Every job was created at the same (fixed) time; pages of two still
	// list each job exactly once.
	seen := map[string]int{}
	cursor := ""
	for page := 0; page < 5; page++ {
		q := map[string]string{"limit": "2"}
		if cursor != "" {
			q["cursor"] = cursor
		}
		status, body := d.call("GET", "/backups", "", q)
		if status != 200 {
			t.Fatalf("list: %d %v", status, body)
		}
		for _, it := range body["items"].([]any) {
			seen[it.(map[string]any)["id"].(string)]++
		}
		next, _ := body["nextCursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Fatalf("listing saw %v, want each of %v once", seen, ids)
		}
	}
	if status, body := d.call("GET", "/restores/"+ids[0], "", nil); status != 404 {
		t.Fatalf("a backup id under /restores: %d %v", status, body)
	}
	status, st := d.call("GET", "/backups/"+ids[1], "", nil)
	if status != 200 || st["state"] != "done" || st["archive"].(map[string]any)["key"] == "" || st["trigger"] != "api" || st["requestedBy"] != apiCaller {
		t.Fatalf("status: %d %v", status, st)
	}
	archives := map[any]bool{}
	for _, id := range ids {
		_, st := d.call("GET", "/backups/"+id, "", nil)
		if st["state"] != "done" {
			t.Fatalf("%s: %v", id, st)
		}
		archives[st["archive"].(map[string]any)["key"]] = true
	}
	if len(archives) != len(ids) {
		t.Fatalf("jobs share archives: %v", archives)
	}

	// A restore holds its target: with the workers stopped it stays
	// running, and a second restore, or a backup, is refused with 409
	// target_busy naming it.
	stop()
	restore := `{"archive":"` + st["archive"].(map[string]any)["key"].(string) + `","confirm":true,"skipSecrets":true}`
	status, first := d.call("POST", "/restores", restore, nil)
	if status != 202 {
		t.Fatalf("POST /restores: %d %v", status, first)
	}
	rid := first["id"].(string)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if _, st := d.call("GET", "/restores/"+rid, "", nil); st["state"] == "running" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the restore never started: %v", st)
		}
	}
	for _, c := range []struct{ path, body string }{{"/restores", restore}, {"/backups", `{}`}} {
		status, busy := d.call("POST", c.path, c.body, nil)
		if status != 409 || errCode(busy) != "target_busy" || !strings.Contains(busy["error"].(map[string]any)["message"].(string), rid) {
			t.Fatalf("POST %s during restore %s: %d %v, want 409 target_busy naming it", c.path, rid, status, busy)
		}
	}
	stop = d.run()
	defer stop()
	if job := d.wait(events.KindRestore, rid, 3*time.Minute); job["state"] != "done" {
		t.Fatalf("the restore: %v", job)
	}
	if status, body := d.call("POST", "/backups", `{}`, nil); status != 202 {
		t.Fatalf("a backup after the restore ended: %d %v", status, body)
	}
}
