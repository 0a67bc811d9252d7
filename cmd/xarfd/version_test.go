package main

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
)

func TestReadBuildVersion(t *testing.T) {
	rev := "0ff6d8520f59c61e3553e126dff532f4c2d7e740"
	cases := []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want []string // lines printVersion must write
		not  []string
	}{
		{"tagged release", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.0"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: "2026-12-05T14:23:36Z"}, {Key: "vcs.modified", Value: "false"}}},
			true, []string{"xarfd v1.2.0\n", "revision " + rev + "\n", "committed 2026-12-05T14:23:36Z\n", "go go1.26.0\n"}, []string{"devel", "modified"}},
		{"dirty checkout", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261205142336-0ff6d8520f59+dirty"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "true"}}},
			true, []string{"xarfd v0.0.0-20261205142336-0ff6d8520f59+dirty\n", "revision " + rev + " (modified: uncommitted changes)\n"}, []string{"devel"}},
		{"revision without pseudo-version", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "true"}}},
			true, []string{"xarfd rev-0ff6d8520f59+dirty\n"}, []string{"devel"}},
		{"no VCS information", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			true, []string{"xarfd unknown (built without VCS information)\n"}, []string{"devel", "revision"}},
		{"no build info", nil, false, []string{"xarfd unknown"}, []string{"devel"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			printVersion(&b, readBuildVersion(c.bi, c.ok))
			for _, w := range c.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, b.String())
				}
			}
			for _, n := range c.not {
				if strings.Contains(b.String(), n) {
					t.Errorf("output has %q:\n%s", n, b.String())
				}
			}
		})
	}
}
