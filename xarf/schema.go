package xarf

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
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
// schema. A file without $id is registered by its path.
func NewValidator(schemaDir string) (*Validator, error) {
	v, err := NewValidatorFS(os.DirFS(schemaDir))
	if err != nil {
		return nil, fmt.Errorf("%w (schema directory %s)", err, schemaDir)
	}
	return v, nil
}

// embedded is a copy of the official XARF v4.2.0 schemas (MIT licence,
// schemas/LICENSE.txt), so that the daemon validates submissions without
// the spec on disk. TestEmbeddedSchemasMatchSpec keeps it equal to the
// spec's files.
//
//go:embed schemas/v4
var embedded embed.FS

// EmbeddedValidator compiles the schemas built into the binary.
func EmbeddedValidator() (*Validator, error) {
	sub, err := fs.Sub(embedded, "schemas/v4")
	if err != nil {
		return nil, err
	}
	return NewValidatorFS(sub)
}

// NewValidatorFS is NewValidator over any file system.
func NewValidatorFS(fsys fs.FS) (*Validator, error) {
	c := jsonschema.NewCompiler()
	c.UseLoader(offline{})
	c.AssertFormat()
	c.AssertContent()
	n := 0
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		b, err := fs.ReadFile(fsys, path)
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
			id = "file:///" + path
		}
		if err := c.AddResource(id, doc); err != nil {
			return fmt.Errorf("registering schema %s as %s: %w", path, id, err)
		}
		n++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("xarf: loading schemas: %w", err)
	}
	if n == 0 {
		return nil, errors.New("xarf: no schema files")
	}
	sch, err := c.Compile(MasterSchemaID)
	if err != nil {
		return nil, fmt.Errorf("xarf: compiling %s: %w", MasterSchemaID, err)
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
