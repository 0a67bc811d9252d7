package console

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"path"
	"strings"
	"testing"
)

// The embedded vendor files are exactly what scripts/vendor-console
// wrote (SHA256SUMS), every one is listed, and every package ships its
// licence.
func TestVendoredAssetsPinned(t *testing.T) {
	sums, err := assetFS.ReadFile("assets/vendor/SHA256SUMS")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS: bad line %q", sc.Text())
		}
		b, err := assetFS.ReadFile("assets/vendor/" + name)
		if err != nil {
			t.Errorf("SHA256SUMS lists %s: %v", name, err)
			continue
		}
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s differs from what scripts/vendor-console vendored", name)
		}
		listed[name] = true
	}
	pkgs := map[string]bool{}
	err = fs.WalkDir(assetFS, "assets/vendor", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name := strings.TrimPrefix(p, "assets/vendor/")
		if name == "VERSIONS" || name == "SHA256SUMS" {
			return nil
		}
		if !listed[name] {
			t.Errorf("%s is not in SHA256SUMS", name)
		}
		dir := path.Dir(name)
		if strings.HasPrefix(path.Base(name), "LICENSE") {
			pkgs[dir] = true
		} else if !pkgs[dir] {
			pkgs[dir] = false
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, lic := range pkgs {
		if !lic {
			t.Errorf("%s has no LICENSE file", dir)
		}
	}
	if len(pkgs) != 4 {
		t.Errorf("%d vendored packages, want htmx, its SSE extension, uPlot and Pico", len(pkgs))
	}
}
