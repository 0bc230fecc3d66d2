package schema

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/godwit/godwit/events"
)

//go:embed json/*.json
var files embed.FS

// baseURL is the $id prefix of every embedded schema.
const baseURL = "https://schemas.godwit.io/"

// envelopeName is the Error.Type of envelope problems.
const envelopeName = "cloudevent"

// ErrUnknownType is returned for an event type that has no schema.
var ErrUnknownType = errors.New("unknown event type")

// Problem is one reason a document was rejected.
type Problem struct {
	// Path is the JSON path of the offending field, "$" for the document.
	Path string
	// Reason says what is wrong with it.
	Reason string
}

// Error is a document that does not match its schema. Path and Reason are
// those of the first problem; All lists every problem found.
type Error struct {
	// Type is the event type whose schema rejected the document, or
	// "cloudevent" for the envelope.
	Type string
	Problem
	All []Problem
}

// Error implements error.
func (e *Error) Error() string {
	s := fmt.Sprintf("invalid %s: %s: %s", e.Type, e.Path, e.Reason)
	if n := len(e.All) - 1; n > 0 {
		s += fmt.Sprintf(" (and %d more)", n)
	}
	return s
}

// Validator checks envelopes and payloads against the embedded schemas. It
// is safe for concurrent use.
type Validator struct {
	compiler *jsonschema.Compiler // guarded by mu, for Field
	mu       sync.Mutex
	fields   map[string]*jsonschema.Schema // guarded by mu, by event type and property

	envelope *jsonschema.Schema
	payloads map[string]*jsonschema.Schema
	printer  *message.Printer
}

// New compiles every embedded schema. It fails only if an embedded schema
// is broken.
func New() (*Validator, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	entries, err := fs.ReadDir(files, "json")
	if err != nil {
		return nil, fmt.Errorf("read embedded schemas: %w", err)
	}
	for _, e := range entries {
		b, err := files.ReadFile(path.Join("json", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read schema %s: %w", e.Name(), err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("parse schema %s: %w", e.Name(), err)
		}
		if err := c.AddResource(baseURL+e.Name(), doc); err != nil {
			return nil, fmt.Errorf("add schema %s: %w", e.Name(), err)
		}
	}
	v := &Validator{compiler: c, fields: map[string]*jsonschema.Schema{},
		payloads: map[string]*jsonschema.Schema{}, printer: message.NewPrinter(language.English)}
	if v.envelope, err = c.Compile(baseURL + envelopeName + ".json"); err != nil {
		return nil, fmt.Errorf("compile envelope schema: %w", err)
	}
	for _, t := range events.Types() {
		if v.payloads[t], err = c.Compile(baseURL + t + ".json"); err != nil {
			return nil, fmt.Errorf("compile schema of %s: %w", t, err)
		}
	}
	return v, nil
}

// Validate checks data, the JSON of one payload, against the schema of
// eventType. It returns an *Error naming the offending field, or an error
// wrapping ErrUnknownType.
func (v *Validator) Validate(eventType string, data []byte) error {
	sch, ok := v.payloads[eventType]
	if !ok {
		return fmt.Errorf("validate %q: %w", eventType, ErrUnknownType)
	}
	return v.validate(sch, eventType, data)
}

// ValidateEvent decodes a CloudEvents envelope and checks it and its data.
// It returns the envelope, or an *Error naming the offending field (paths
// inside the data start with $.data).
func (v *Validator) ValidateEvent(raw []byte) (events.Event, error) {
	if err := v.CheckEvent(raw); err != nil {
		return events.Event{}, err
	}
	var ev events.Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return events.Event{}, invalid(envelopeName, "$", err.Error())
	}
	return ev, nil
}

// CheckEvent is ValidateEvent without decoding the envelope: it parses raw
// once and checks the envelope and its data.
func (v *Validator) CheckEvent(raw []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return invalid(envelopeName, "$", "malformed JSON: "+err.Error())
	}
	if err := v.check(v.envelope, envelopeName, doc); err != nil {
		return err
	}
	obj := doc.(map[string]any) // the envelope schema requires an object
	typ, _ := obj["type"].(string)
	sch, ok := v.payloads[typ]
	if !ok {
		return invalid(envelopeName, "$.type", fmt.Sprintf("unknown event type %q", typ))
	}
	if err := v.check(sch, typ, obj["data"]); err != nil {
		var se *Error
		if errors.As(err, &se) {
			for i := range se.All {
				se.All[i].Path = "$.data" + strings.TrimPrefix(se.All[i].Path, "$")
			}
			se.Problem = se.All[0]
		}
		return err
	}
	return nil
}

func invalid(name, path, reason string) *Error {
	p := Problem{Path: path, Reason: reason}
	return &Error{Type: name, Problem: p, All: []Problem{p}}
}

func (v *Validator) validate(sch *jsonschema.Schema, name string, data []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return invalid(name, "$", "malformed JSON: "+err.Error())
	}
	return v.check(sch, name, inst)
}

// check validates a parsed document.
func (v *Validator) check(sch *jsonschema.Schema, name string, inst any) error {
	err := sch.Validate(inst)
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err // nil, or not a validation problem
	}
	var all []Problem
	v.leaves(ve, &all)
	if len(all) == 0 {
		all = append(all, Problem{Path: jsonPath(ve.InstanceLocation), Reason: ve.ErrorKind.LocalizedString(v.printer)})
	}
	return &Error{Type: name, Problem: all[0], All: all}
}

// leaves collects the innermost errors, where the real reasons are.
func (v *Validator) leaves(ve *jsonschema.ValidationError, all *[]Problem) {
	if len(ve.Causes) > 0 {
		for _, c := range ve.Causes {
			v.leaves(c, all)
		}
		return
	}
	loc := ve.InstanceLocation
	switch k := ve.ErrorKind.(type) {
	case *kind.Required:
		for _, m := range k.Missing {
			*all = append(*all, Problem{Path: jsonPath(append(loc[:len(loc):len(loc)], m)), Reason: "missing required field"})
		}
		return
	case *kind.DependentRequired:
		for _, m := range k.Missing {
			*all = append(*all, Problem{Path: jsonPath(append(loc[:len(loc):len(loc)], m)), Reason: "missing field required with " + k.Prop})
		}
		return
	case *kind.AdditionalProperties:
		for _, p := range k.Properties {
			*all = append(*all, Problem{Path: jsonPath(append(loc[:len(loc):len(loc)], p)), Reason: "unknown field"})
		}
		return
	}
	*all = append(*all, Problem{Path: jsonPath(loc), Reason: ve.ErrorKind.LocalizedString(v.printer)})
}

// jsonPath renders an instance location as $.a.b[0].c. Numeric tokens are
// array indexes: no godwit schema has a numeric property name.
func jsonPath(loc []string) string {
	var b strings.Builder
	b.WriteString("$")
	for _, tok := range loc {
		if _, err := strconv.Atoi(tok); err == nil {
			b.WriteString("[" + tok + "]")
			continue
		}
		b.WriteString("." + tok)
	}
	return b.String()
}

// Document returns the embedded schema of an event type, as JSON.
func Document(eventType string) ([]byte, error) {
	b, err := files.ReadFile(path.Join("json", eventType+".json"))
	if err != nil {
		return nil, fmt.Errorf("schema of %q: %w", eventType, ErrUnknownType)
	}
	return b, nil
}

// Examples returns the examples the schema of an event type carries.
func Examples(eventType string) ([]json.RawMessage, error) {
	b, err := Document(eventType)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Examples []json.RawMessage `json:"examples"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parse schema of %s: %w", eventType, err)
	}
	return doc.Examples, nil
}
