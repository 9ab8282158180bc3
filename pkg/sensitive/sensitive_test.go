package sensitive

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestNeverPrintsTheValue(t *testing.T) {
	s := String("hunter2")
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "key", s)
	j, err := json.Marshal(struct{ Key String }{s})
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %+v %#v", s, s, s, s), logs.String(), string(j)} {
		if strings.Contains(out, "hunter2") || !strings.Contains(out, "REDACTED") {
			t.Errorf("leaked or unmarked: %q", out)
		}
	}
	if s.Reveal() != "hunter2" || String("").String() != "" || !String("").IsZero() {
		t.Error("Reveal/IsZero")
	}
}
