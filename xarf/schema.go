package xarf

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// MasterSchemaID is the $id of xarf-v4-master.json, the schema every
// document is validated against.
const MasterSchemaID = "https://xarf.org/schemas/v4/xarf-v4-master.json"

// Validator checks documents against the XARF v4 JSON schemas, with format
// ("email", "uuid", "date-time", "hostname", "uri") and content
// (contentEncoding base64) assertions on. It is safe for concurrent use.
type Validator struct {
	master *jsonschema.Schema
}

// offline refuses every URL that was not registered: schemas come from the
// local files only, never from the network.
type offline struct{}

func (offline) Load(url string) (any, error) {
	return nil, fmt.Errorf("xarf: schema %s is not among the local schema files (network loading is off)", url)
}

// NewValidator loads every *.json file under schemaDir (the xarf-spec
// schemas/v4 directory), registers each by its $id, and compiles the master
// schema. A file without $id is registered by its file URL.
func NewValidator(schemaDir string) (*Validator, error) {
	c := jsonschema.NewCompiler()
	c.UseLoader(offline{})
	c.AssertFormat()
	c.AssertContent()
	n := 0
	err := filepath.WalkDir(schemaDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("reading schema %s: %w", path, err)
		}
		id := ""
		if m, ok := doc.(map[string]any); ok {
			id, _ = m["$id"].(string)
		}
		if id == "" {
			abs, err := filepath.Abs(path)
			if err != nil {
				return err
			}
			id = "file://" + filepath.ToSlash(abs)
		}
		if err := c.AddResource(id, doc); err != nil {
			return fmt.Errorf("registering schema %s as %s: %w", path, id, err)
		}
		n++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("xarf: loading schemas from %s: %w", schemaDir, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("xarf: no schema files in %s", schemaDir)
	}
	sch, err := c.Compile(MasterSchemaID)
	if err != nil {
		return nil, fmt.Errorf("xarf: compiling %s from %s: %w", MasterSchemaID, schemaDir, err)
	}
	return &Validator{master: sch}, nil
}

// Validate checks doc against the master schema. The error is a
// *ValidationError with one reason per failed keyword ("at '/smtp_from':
// 'x' is not valid email: ...").
func (v *Validator) Validate(doc []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return &ValidationError{Reasons: []string{"not JSON: " + err.Error()}}
	}
	err = v.master.Validate(inst)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return &ValidationError{Reasons: []string{err.Error()}}
	}
	var reasons []string
	leaves(ve, &reasons)
	slices.Sort(reasons)
	return &ValidationError{Reasons: slices.Compact(reasons)}
}

// Check runs Validate and the package's semantic Validate and returns
// every reason of both: what the HTTP API needs for a submitted report.
func (v *Validator) Check(doc []byte) error {
	var reasons []string
	var ve *ValidationError
	if err := v.Validate(doc); errors.As(err, &ve) {
		reasons = append(reasons, ve.Reasons...)
	}
	if err := Validate(doc); errors.As(err, &ve) {
		reasons = append(reasons, ve.Reasons...)
	}
	if len(reasons) == 0 {
		return nil
	}
	return &ValidationError{Reasons: reasons}
}

// leaves collects the innermost errors: the ones that say what is wrong
// rather than which allOf/if/$ref failed.
func leaves(e *jsonschema.ValidationError, out *[]string) {
	if len(e.Causes) == 0 {
		leaf := *e
		*out = append(*out, strings.TrimSpace(leaf.Error()))
		return
	}
	for _, c := range e.Causes {
		leaves(c, out)
	}
}
