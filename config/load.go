package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EmbeddedSource is the Source of the embedded default configuration.
const EmbeddedSource = "(embedded default)"

// Error is one problem in a configuration file, located by key path
// ("channels[1].redact.mode") and, when known, line.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Key == "" {
		return loc + ": " + e.Msg
	}
	return loc + ": " + e.Key + ": " + e.Msg
}

// Errors is every problem found in one file; Load reports them all at once
// so that an operator fixes a file in one pass.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Load reads, decodes and validates the file at path; an empty path loads
// the embedded default.
func Load(path string) (*Config, error) {
	if path == "" {
		return Parse(DefaultYAML, EmbeddedSource)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: fmt.Sprintf("cannot read configuration: %v", errors.Unwrap(err))}}
	}
	return Parse(data, path)
}

// Parse decodes and validates data; source names it in errors.
func Parse(data []byte, source string) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Errors{{File: source, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	c := defaults()
	c.Source = source
	if root.Kind == 0 { // empty file
		applyListDefaults(&c, os.Hostname)
		return &c, c.validate()
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	var errs Errors
	checkKeys(doc, reflect.TypeOf(c), "", source, &errs)
	if len(errs) > 0 {
		return nil, errs
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, decodeErrors(err, doc, source)
	}
	applyListDefaults(&c, os.Hostname)
	c.lines = map[string]int{}
	indexKeys(doc, "", c.lines)
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// checkKeys walks the YAML tree beside the Go type and reports every
// unknown key with its full path, which yaml.v3's own KnownFields error
// (a line and a Go type name) does not give.
func checkKeys(n *yaml.Node, t reflect.Type, path, source string, errs *Errors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if yamlDecodesItself(t) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if n.Tag == "!!null" {
				return
			}
			*errs = append(*errs, &Error{File: source, Line: n.Line, Key: path, Msg: fmt.Sprintf("must be a mapping, not %s", kindName(n))})
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				known := make([]string, 0, len(fields))
				for name := range fields {
					known = append(known, name)
				}
				sort.Strings(known)
				*errs = append(*errs, &Error{File: source, Line: k.Line, Key: join(path, k.Value),
					Msg: "unknown key (known here: " + strings.Join(known, ", ") + ")"})
				continue
			}
			checkKeys(v, ft, join(path, k.Value), source, errs)
		}
	case reflect.Slice:
		if n.Kind == yaml.SequenceNode {
			for i, item := range n.Content {
				checkKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), source, errs)
			}
		}
	}
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func yamlDecodesItself(t reflect.Type) bool {
	return reflect.PointerTo(t).Implements(unmarshalerType)
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return "the scalar " + strconv.Quote(n.Value)
}

var yamlLine = regexp.MustCompile(`^line (\d+)(?: column (\d+))?: (.*)$`)

// decodeErrors turns yaml.v3's type errors ("line 7: cannot unmarshal
// !!str `x` into int") into errors that name the key on that line.
func decodeErrors(err error, doc *yaml.Node, source string) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return Errors{{File: source, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	keys := make(map[int]string)
	indexLines(doc, "", keys)
	// Our own errors (typeErr) also give the value's column: in a flow
	// mapping ({a: 1, b: 2}) several keys share a line.
	at := make(map[[2]int]string)
	indexValues(doc, "", at)
	var errs Errors
	for _, s := range te.Errors {
		e := &Error{File: source, Msg: s}
		if m := yamlLine.FindStringSubmatch(s); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Key = keys[e.Line]
			if col, err := strconv.Atoi(m[2]); err == nil && at[[2]int{e.Line, col}] != "" {
				e.Key = at[[2]int{e.Line, col}]
			}
			e.Msg = strings.ReplaceAll(m[3], "config.", "")
		}
		errs = append(errs, e)
	}
	return errs
}

// indexLines records, for each line, the path of the innermost key or list
// item that starts on it.
func indexLines(n *yaml.Node, path string, keys map[int]string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			keys[k.Line] = p
			if v.Line != k.Line {
				keys[v.Line] = p
			}
			indexLines(v, p, keys)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if _, ok := keys[item.Line]; !ok || item.Kind == yaml.ScalarNode {
				keys[item.Line] = p
			}
			indexLines(item, p, keys)
		}
	}
}

// indexValues records the key path of every value node by its line and
// column.
func indexValues(n *yaml.Node, path string, at map[[2]int]string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := join(path, n.Content[i].Value)
			v := n.Content[i+1]
			at[[2]int{v.Line, v.Column}] = p
			indexValues(v, p, at)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			at[[2]int{item.Line, item.Column}] = p
			indexValues(item, p, at)
		}
	}
}

// indexKeys records the line of every key path, the inverse of
// indexLines, for errors found after decoding.
func indexKeys(n *yaml.Node, path string, lines map[string]int) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			lines[p] = k.Line
			indexKeys(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = item.Line
			indexKeys(item, p, lines)
		}
	}
}

// Line returns the line of key in the file, or of the nearest enclosing
// key that is written there; 0 when none is (the key was left out).
func (c *Config) Line(key string) int {
	for key != "" {
		if n, ok := c.lines[key]; ok {
			return n
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

// typeErr reports a bad value the way yaml.v3 reports its own, so that
// decodeErrors collects them all and names the key on that line.
func typeErr(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d column %d: ", n.Line, n.Column) + fmt.Sprintf(format, args...)}}
}

// UnmarshalYAML reads Go duration text; a bare number is refused because
// "60" could mean seconds or nanoseconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeErr(n, "want a duration such as 60s or 720h, not %s", kindName(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return typeErr(n, "%q is not a duration (write it like 60s, 15m or 720h)", n.Value)
	}
	if v < 0 {
		return typeErr(n, "duration %q is negative", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML prints the duration as Go duration text.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalYAML reads a CIDR prefix or a single address (a /32 or /128).
func (p *Prefix) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeErr(n, "want a network such as 192.0.2.0/24, not %s", kindName(n))
	}
	v, err := ParsePrefix(n.Value)
	if err != nil {
		return typeErr(n, "%v", err)
	}
	p.Prefix = v
	return nil
}

// ParsePrefix reads "192.0.2.0/24", "2001:db8::/32" or a single address.
// Host bits must be zero: "192.0.2.1/24" is almost always a typo.
func ParsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR network", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR network", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %s?", s, p.Masked())
	}
	return p, nil
}

// MarshalYAML prints the prefix in CIDR form.
func (p Prefix) MarshalYAML() (any, error) { return p.Prefix.String(), nil }

// UnmarshalYAML reads "origin" or a list of partner addresses.
func (r *ReportTo) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value != "origin" {
			return typeErr(n, "%q: want origin or a list of partner addresses", n.Value)
		}
		*r = ReportTo{Origin: true}
		return nil
	case yaml.SequenceNode:
		var list []string
		if err := n.Decode(&list); err != nil {
			return typeErr(n, "want a list of addresses")
		}
		*r = ReportTo{Partners: list}
		return nil
	}
	return typeErr(n, "want origin or a list of partner addresses, not %s", kindName(n))
}

// MarshalYAML prints "origin" or the partner list.
func (r ReportTo) MarshalYAML() (any, error) {
	if r.Origin {
		return "origin", nil
	}
	return r.Partners, nil
}

// YAML renders the effective configuration (defaults filled in), as
// `xarfd check-config` prints it.
func (c *Config) YAML() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}
