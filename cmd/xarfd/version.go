package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// Set by packagers who build outside a git checkout (a source tarball,
// where Go can record no VCS information):
//
//	go build -ldflags "-X main.releaseVersion=v1.2.0 -X main.buildTime=$(date -u +%FT%TZ)"
//
// Go itself never records when a binary was built (builds are
// reproducible), only the time of the commit.
var (
	releaseVersion string
	buildTime      string
)

// buildVersion is what the binary knows about its own origin.
type buildVersion struct {
	Version  string // module version: a tag, or a pseudo-version with +dirty
	Revision string // VCS commit, "" when unknown
	Time     string // commit time (RFC 3339), "" when unknown
	Modified bool   // built from a checkout with uncommitted changes
	Go       string
}

func readBuildVersion(bi *debug.BuildInfo, ok bool) buildVersion {
	var v buildVersion
	if ok {
		v.Go = bi.GoVersion
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if releaseVersion != "" {
		v.Version = releaseVersion
	}
	if v.Version == "" && v.Revision != "" {
		// Older toolchains stamp the revision but not a pseudo-version.
		v.Version = "rev-" + short(v.Revision)
		if v.Modified {
			v.Version += "+dirty"
		}
	}
	if v.Version == "" {
		// Built from a directory Go could not read VCS data from (a git
		// worktree, a tarball, -buildvcs=false): say so rather than
		// pretend to be a release.
		v.Version = "unknown (built without VCS information)"
	}
	return v
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// version is the one-word version, for logs and the User-Agent.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	v := readBuildVersion(bi, ok)
	if strings.HasPrefix(v.Version, "unknown") {
		return "unknown"
	}
	return v.Version
}

// printVersion is `xarfd version`.
func printVersion(w io.Writer, v buildVersion) {
	fmt.Fprintf(w, "xarfd %s\n", v.Version)
	if v.Revision != "" {
		mod := ""
		if v.Modified {
			mod = " (modified: uncommitted changes)"
		}
		fmt.Fprintf(w, "revision %s%s\n", v.Revision, mod)
	}
	if v.Time != "" {
		fmt.Fprintf(w, "committed %s\n", v.Time)
	}
	if buildTime != "" {
		fmt.Fprintf(w, "built %s\n", buildTime)
	}
	if v.Go != "" {
		fmt.Fprintf(w, "go %s\n", v.Go)
	}
}
