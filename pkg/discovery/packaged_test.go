package discovery_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

func TestProjectName(t *testing.T) {
	for raw, want := range map[string]string{
		`{"databases":{}}`:                      "",
		`{"name":"shop"}`:                       "shop",
		`{"projectName":"Shop App","name":"x"}`: "Shop App",
		`{"appName":"desk"}`:                    "desk",
		`{"name":"[REDACTED]"}`:                 "",
		`{"name":{"first":"x"}}`:                "",
		`[1,2]`:                                 "",
	} {
		if got := discovery.ProjectName([]byte(raw)); got != want {
			t.Errorf("ProjectName(%s) = %q, want %q", raw, got, want)
		}
	}
}

// TestPackagedStateHint: a dynamic block without an instance source is an
// error; when the config names the project and a packaged app of that
// name keeps its state on this machine, the error names the directory.
func TestPackagedStateHint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		name, project, found string
		want                 string
	}{
		{"no project name", "", "", ""},
		{"the project's own name", "desk", "desk", "/data/desk/state"},
		{"the packer's name for it", "My Desk", "edgebase-my-desk", "/data/edgebase-my-desk/state"},
		{"no state found", "desk", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := edgebasetest.DefaultConfig()
			if tc.project != "" {
				b, _ := json.Marshal(tc.project)
				cfg.Extra = append(cfg.Extra, edgebasetest.RawMember{Key: "name", Value: b})
			}
			emu := edgebasetest.NewTest(t, edgebasetest.Options{Config: &cfg, StateDir: t.TempDir()})
			hc := &http.Client{Transport: &http.Transport{}}
			defer hc.CloseIdleConnections()
			client, err := edgebase.New(edgebase.Options{BaseURL: emu.URL(), ServiceKey: sensitive.String(emu.ServiceKey()), HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			var asked []string
			enum := &discovery.Enumerator{Client: client, FindPackagedState: func(app string) (string, error) {
				asked = append(asked, app)
				if app == tc.found {
					return "/data/" + app + "/state", nil
				}
				return "", errors.New("not here")
			}}
			parsed, _, err := client.Config(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = enum.DOs(ctx, parsed)
			var ns *discovery.NoInstanceSourceError
			if !errors.As(err, &ns) || ns.Block != "workspace" {
				t.Fatalf("DOs: %v; want a NoInstanceSourceError for block workspace", err)
			}
			if ns.PackagedState != tc.want {
				t.Errorf("packaged state %q (asked for %q); want %q", ns.PackagedState, asked, tc.want)
			}
			if tc.project == "" && len(asked) > 0 {
				t.Errorf("looked for packaged apps %q without a project name", asked)
			}
			if tc.want != "" && (!strings.Contains(err.Error(), tc.want) || !strings.Contains(ns.Hint(), "--state-dir "+tc.want)) {
				t.Errorf("error %q / hint %q do not name %s", err, ns.Hint(), tc.want)
			}
			if !strings.Contains(err.Error(), "--state-dir") || !strings.Contains(err.Error(), "packaged app") {
				t.Errorf("error %q does not mention --state-dir for a packaged app", err)
			}
		})
	}
}
