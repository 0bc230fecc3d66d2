// Package openapi writes an OpenAPI 3.1 document for a REST API from a
// table of its operations. Request and response bodies are Go values: their
// JSON Schemas (2020-12, as OpenAPI 3.1 uses) are derived from the types by
// reflection, the way encoding/json encodes them, so the document cannot
// drift from what the handlers write. The table itself is written by hand,
// apart from the router: a test compares the two (see package
// openapi/openapitest), and checks real requests and responses against the
// document.
package openapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/godwit/godwit/problem"
)

// Op is one operation: a method on a path.
type Op struct {
	Method string
	// Path is the path template, such as /api/v1/plans/{name}; each
	// {param} is a path parameter of type string.
	Path    string
	Summary string
	// Description is longer Markdown, optional.
	Description string
	// Tag groups the operation in the reference.
	Tag string
	// Security names the scheme that guards it, with the scope it needs
	// (Scope, for the reader: bearer tokens carry their scope); "" is
	// none (public).
	Security, Scope string
	// Query lists the query parameters.
	Query []Param
	// Request is a value of the JSON body's type, nil for none.
	Request any
	// Responses maps each status the operation answers to its body.
	Responses map[int]Response
}

// Param is a query parameter.
type Param struct {
	Name, Description string
	// Enum, when set, lists the values it takes.
	Enum []string
}

// Response is one answer of an operation.
type Response struct {
	Description string
	// Body is a value of the JSON body's type; nil for none. A string
	// body is sent as ContentType (text).
	Body any
	// ContentType defaults to application/json, or
	// application/problem+json when Body is the Problem given to Build.
	ContentType string
}

// Info is the document's info and what every operation shares.
type Info struct {
	Title, Version, Description string
	// Problem is the body of every error answer (RFC 9457).
	Problem any
	// Enums fixes the values of string fields: "TypeName.json_name" ->
	// values, for the Go type TypeName (its name without the package).
	Enums map[string][]string
	// Descriptions describe fields: "TypeName.json_name" -> text.
	Descriptions map[string]string
	// Security is the document's security schemes by name, each an
	// OpenAPI security scheme object.
	Security map[string]any
}

// Build returns the OpenAPI 3.1 document of ops, as JSON-encodable maps.
func Build(info Info, ops []Op) (map[string]any, error) {
	g := &generator{info: info, schemas: map[string]any{}, names: map[use]string{}}
	paths := map[string]map[string]any{}
	seen := map[string]bool{}
	for _, op := range ops {
		key := op.Method + " " + op.Path
		if seen[key] {
			return nil, fmt.Errorf("openapi: %s is listed twice", key)
		}
		seen[key] = true
		o, err := g.operation(op)
		if err != nil {
			return nil, fmt.Errorf("openapi: %s: %w", key, err)
		}
		if paths[op.Path] == nil {
			paths[op.Path] = map[string]any{}
		}
		paths[op.Path][strings.ToLower(op.Method)] = o
	}
	components := map[string]any{"schemas": g.schemas}
	if len(info.Security) > 0 {
		components["securitySchemes"] = info.Security
	}
	return map[string]any{
		"openapi":    "3.1.0",
		"info":       map[string]any{"title": info.Title, "version": info.Version, "description": info.Description},
		"paths":      paths,
		"components": components,
	}, nil
}

// JSON is Build, encoded and indented.
func JSON(info Info, ops []Op) ([]byte, error) {
	doc, err := Build(info, ops)
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(doc, "", "  ")
}

// Handler serves the document build returns, built on the first request:
// application/json, cacheable for a minute (it holds no state). A build
// that fails is a 500 problem, each time.
func Handler(build func() ([]byte, error)) http.Handler {
	doc := sync.OnceValues(build)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := doc()
		if err != nil {
			problem.Write(w, http.StatusInternalServerError, "", "the OpenAPI document: "+err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=60")
		_, _ = w.Write(b)
	})
}

type generator struct {
	info    Info
	schemas map[string]any
	names   map[use]string // the component of each struct type's use
}

// use is a struct type as a request or a response body: its schemas
// differ (what is required, unknown fields).
type use struct {
	t       reflect.Type
	request bool
}

func (g *generator) operation(op Op) (map[string]any, error) {
	o := map[string]any{"summary": op.Summary, "operationId": operationID(op)}
	if op.Description != "" {
		o["description"] = op.Description
	}
	if op.Tag != "" {
		o["tags"] = []string{op.Tag}
	}
	if op.Security != "" {
		o["security"] = []any{map[string]any{op.Security: []string{}}}
		if op.Scope != "" {
			o["x-scope"] = op.Scope
		}
	} else {
		o["security"] = []any{}
	}
	var params []any
	for _, name := range pathParams(op.Path) {
		params = append(params, map[string]any{"name": name, "in": "path", "required": true, "schema": map[string]any{"type": "string", "minLength": 1}})
	}
	for _, q := range op.Query {
		s := map[string]any{"type": "string"}
		if len(q.Enum) > 0 {
			s["enum"] = q.Enum
		}
		params = append(params, map[string]any{"name": q.Name, "in": "query", "description": q.Description, "schema": s})
	}
	if len(params) > 0 {
		o["parameters"] = params
	}
	if op.Request != nil {
		s, err := g.schema(reflect.TypeOf(op.Request), true)
		if err != nil {
			return nil, err
		}
		o["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": s}}}
	}
	if len(op.Responses) == 0 {
		return nil, fmt.Errorf("no responses")
	}
	responses := map[string]any{}
	for status, r := range op.Responses {
		desc := r.Description
		if desc == "" {
			desc = http.StatusText(status)
		}
		resp := map[string]any{"description": desc}
		if r.Body != nil {
			ct := r.ContentType
			var s map[string]any
			if str, ok := r.Body.(string); ok {
				if ct == "" {
					ct = "text/plain"
				}
				s = map[string]any{"type": "string"}
				if str != "" {
					s["description"] = str
				}
			} else {
				var err error
				if s, err = g.schema(reflect.TypeOf(r.Body), false); err != nil {
					return nil, err
				}
				if ct == "" {
					ct = "application/json"
					if g.info.Problem != nil && reflect.TypeOf(r.Body) == reflect.TypeOf(g.info.Problem) {
						ct = "application/problem+json"
					}
				}
			}
			resp["content"] = map[string]any{ct: map[string]any{"schema": s}}
		}
		responses[strconv.Itoa(status)] = resp
	}
	o["responses"] = responses
	return o, nil
}

// operationID is the method and the path's words in camel case:
// GET /api/v1/plans/{name} is getPlansName.
func operationID(op Op) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(op.Method))
	for _, part := range strings.FieldsFunc(strings.TrimPrefix(op.Path, "/api/v1"), func(r rune) bool {
		return r == '/' || r == '{' || r == '}' || r == '_' || r == '-' || r == '.'
	}) {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

// pathParams lists the {names} of a path template.
func pathParams(path string) []string {
	var out []string
	for {
		i := strings.IndexByte(path, '{')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(path[i:], '}')
		if j < 0 {
			return out
		}
		out = append(out, path[i+1:i+j])
		path = path[i+j+1:]
	}
}

var (
	marshalerType     = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[interface{ MarshalText() ([]byte, error) }]()
	timeTypeName      = "time.Time"
	durationTypeName  = "time.Duration"
)

// schema returns the schema of t: a $ref for a named struct (added to the
// components, once), else inline. In a request, nothing is required and
// unknown fields are refused (the APIs decode strictly); in a response,
// the fields without omitempty are required.
func (g *generator) schema(t reflect.Type, request bool) (map[string]any, error) {
	switch t.String() {
	case timeTypeName:
		return map[string]any{"type": "string", "format": "date-time"}, nil
	case durationTypeName:
		return map[string]any{"type": "integer", "description": "nanoseconds"}, nil
	}
	if t.Kind() != reflect.Pointer && (t.Implements(marshalerType) || t.Implements(textMarshalerType)) {
		if t.Kind() == reflect.String {
			return map[string]any{"type": "string"}, nil
		}
		return map[string]any{}, nil // its own encoding: anything
	}
	switch t.Kind() {
	case reflect.Pointer:
		s, err := g.schema(t.Elem(), request)
		if err != nil {
			return nil, err
		}
		return nullable(s), nil
	case reflect.String:
		return map[string]any{"type": "string"}, nil
	case reflect.Bool:
		return map[string]any{"type": "boolean"}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}, nil
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}, nil
	case reflect.Interface:
		return map[string]any{}, nil
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}, nil
		}
		items, err := g.schema(t.Elem(), request)
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "array", "items": items}, nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("map key %s is not a string", t.Key())
		}
		values, err := g.schema(t.Elem(), request)
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "object", "additionalProperties": values}, nil
	case reflect.Struct:
		return g.structSchema(t, request)
	}
	return nil, fmt.Errorf("type %s has no JSON schema", t)
}

// nullable lets s be null too.
func nullable(s map[string]any) map[string]any {
	if ref, ok := s["$ref"]; ok {
		return map[string]any{"oneOf": []any{map[string]any{"$ref": ref}, map[string]any{"type": "null"}}}
	}
	out := make(map[string]any, len(s))
	for k, v := range s {
		out[k] = v
	}
	if typ, ok := s["type"].(string); ok {
		out["type"] = []string{typ, "null"}
	} // else: a schema without a type takes null already
	return out
}

// structSchema is the schema of a struct, by reference when it has a name.
func (g *generator) structSchema(t reflect.Type, request bool) (map[string]any, error) {
	name := ""
	if t.Name() != "" {
		key := use{t, request}
		if known, ok := g.names[key]; ok {
			return map[string]any{"$ref": "#/components/schemas/" + known}, nil
		}
		suffix := ""
		if request {
			suffix = "Request"
		}
		name = schemaName(t) + suffix
		if _, taken := g.schemas[name]; taken { // another package's type of that name
			pkg := t.PkgPath()[strings.LastIndexByte(t.PkgPath(), '/')+1:]
			name = strings.ToUpper(pkg[:1]) + pkg[1:] + name
		}
		g.names[key] = name
		g.schemas[name] = map[string]any{} // a placeholder for recursive types
	}
	props := map[string]any{}
	var required []string
	if err := g.fields(t, request, props, &required); err != nil {
		return nil, err
	}
	s := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		slices.Sort(required)
		s["required"] = required
	}
	if request {
		s["additionalProperties"] = false
	}
	if name == "" {
		return s, nil
	}
	g.schemas[name] = s
	return map[string]any{"$ref": "#/components/schemas/" + name}, nil
}

// schemaName is the type's name, with its package's when the name alone
// is ambiguous (View, Job...).
func schemaName(t reflect.Type) string {
	name := t.Name()
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i]
	}
	pkg := t.PkgPath()[strings.LastIndexByte(t.PkgPath(), '/')+1:]
	switch name {
	case "View", "Job", "Spec", "Report", "Check", "Info", "VM", "Disk", "Limits", "Replica":
		return strings.ToUpper(pkg[:1]) + pkg[1:] + name
	}
	return strings.ToUpper(name[:1]) + name[1:]
}

// fields adds t's JSON fields to props, embedded structs' included, as
// encoding/json sees them.
func (g *generator) fields(t reflect.Type, request bool, props map[string]any, required *[]string) error {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				if err := g.fields(ft, request, props, required); err != nil {
					return err
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		s, err := g.schema(f.Type, request)
		if err != nil {
			return fmt.Errorf("%s.%s: %w", t.Name(), f.Name, err)
		}
		omitempty := strings.Contains(","+opts+",", ",omitempty,") || strings.Contains(","+opts+",", ",omitzero,")
		k := f.Type.Kind()
		if !omitempty && (k == reflect.Slice || k == reflect.Map) && !request {
			s = nullable(s) // a nil slice or map encodes as null
		}
		if request && (k == reflect.Slice || k == reflect.Map) {
			s = nullable(s)
		}
		key := t.Name() + "." + name
		if enum, ok := g.info.Enums[key]; ok {
			s = withEnum(s, enum, omitempty || request)
		}
		if d, ok := g.info.Descriptions[key]; ok {
			s = withDescription(s, d)
		}
		props[name] = s
		if !request && !omitempty {
			*required = append(*required, name)
		}
	}
	return nil
}

// withEnum fixes the values of a string schema; empty is one of them when
// the field may be left empty.
func withEnum(s map[string]any, enum []string, mayBeEmpty bool) map[string]any {
	out := map[string]any{}
	for k, v := range s {
		out[k] = v
	}
	values := slices.Clone(enum)
	if mayBeEmpty && !slices.Contains(values, "") {
		values = append(values, "")
	}
	if t, ok := s["type"].([]string); ok && slices.Contains(t, "null") {
		out["enum"] = append(anys(values), nil)
		return out
	}
	out["enum"] = values
	return out
}

func anys(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// withDescription adds a description, beside a $ref if it is one.
func withDescription(s map[string]any, d string) map[string]any {
	if ref, ok := s["$ref"]; ok {
		return map[string]any{"allOf": []any{map[string]any{"$ref": ref}}, "description": d}
	}
	out := map[string]any{"description": d}
	for k, v := range s {
		out[k] = v
	}
	return out
}
