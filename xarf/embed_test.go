package xarf

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestEmbeddedSchemasMatchSpec keeps the copy built into the binary equal
// to the official schemas, file for file.
func TestEmbeddedSchemasMatchSpec(t *testing.T) {
	dir := schemaDir()
	needDir(t, dir, "XARF schemas")
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		want, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		got, err := embedded.ReadFile("schemas/v4/" + filepath.ToSlash(rel))
		if err != nil {
			t.Errorf("%s is not embedded: %v", rel, err)
			return nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("embedded %s differs from the spec", rel)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 30 {
		t.Errorf("only %d schema files compared", n)
	}
	// The embedded validator accepts what the spec's accepts and refuses
	// the same invalid document.
	v, err := EmbeddedValidator()
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate([]byte(`{"xarf_version":"4.2.0"}`)); err == nil {
		t.Error("embedded validator accepted an incomplete document")
	}
}
