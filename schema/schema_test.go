package schema_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/schema"
)

func newValidator(t testing.TB) *schema.Validator {
	t.Helper()
	v, err := schema.New()
	if err != nil {
		t.Fatalf("schema.New: %v", err)
	}
	return v
}

// TestExamplesValidateAndRoundTrip proves that every payload type has an
// example, that it validates, and that it survives decoding into the Go type
// (unknown fields refused) and encoding back unchanged.
func TestExamplesValidateAndRoundTrip(t *testing.T) {
	t.Parallel()
	v := newValidator(t)
	for _, typ := range events.Types() {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			examples, err := schema.Examples(typ)
			if err != nil {
				t.Fatal(err)
			}
			if len(examples) == 0 {
				t.Fatalf("schema of %s has no example", typ)
			}
			for i, ex := range examples {
				if err := v.Validate(typ, ex); err != nil {
					t.Fatalf("example %d: %v", i, err)
				}
				p, _ := events.NewPayload(typ)
				dec := json.NewDecoder(bytes.NewReader(ex))
				dec.DisallowUnknownFields()
				if err := dec.Decode(p); err != nil {
					t.Fatalf("example %d does not decode into %T: %v", i, p, err)
				}
				back, err := json.Marshal(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := v.Validate(typ, back); err != nil {
					t.Fatalf("re-encoded example %d: %v", i, err)
				}
				var a, b any
				_ = json.Unmarshal(ex, &a)
				_ = json.Unmarshal(back, &b)
				if !reflect.DeepEqual(a, b) {
					t.Errorf("example %d round trip:\n got %s\nwant %s", i, back, ex)
				}
			}
		})
	}
}

// TestGoTypesMatchSchemas walks every schema's properties and the Go type's
// JSON fields side by side: each side must have exactly the other's fields,
// and a field the Go type may omit (omitempty) must not be required.
func TestGoTypesMatchSchemas(t *testing.T) {
	t.Parallel()
	defs := loadDoc(t, "defs")
	for _, typ := range events.Types() {
		doc := loadDoc(t, typ)
		p, _ := events.NewPayload(typ)
		compare(t, typ, "$", reflect.TypeOf(p).Elem(), doc, doc, defs)
	}
}

func loadDoc(t *testing.T, name string) map[string]any {
	t.Helper()
	var b []byte
	var err error
	if name == "defs" {
		b, err = schema.SchemaFile(name)
	} else {
		b, err = schema.Document(name)
	}
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// resolve follows a $ref into the same document or defs.json.
func resolve(node, doc, defs map[string]any) (map[string]any, map[string]any) {
	for {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node, doc
		}
		file, ptr, _ := strings.Cut(ref, "#")
		if file == "defs.json" {
			doc = defs
		}
		node = doc
		for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
			node = node[tok].(map[string]any)
		}
	}
}

func compare(t *testing.T, typ, at string, gt reflect.Type, node, doc, defs map[string]any) {
	t.Helper()
	node, doc = resolve(node, doc, defs)
	if gt == reflect.TypeOf(time.Time{}) {
		if node["format"] != "date-time" {
			t.Errorf("%s %s: Go time.Time but schema is not a date-time", typ, at)
		}
		return
	}
	switch gt.Kind() {
	case reflect.Slice:
		items, ok := node["items"].(map[string]any)
		if !ok {
			t.Errorf("%s %s: Go slice but schema has no items", typ, at)
			return
		}
		compare(t, typ, at+"[]", gt.Elem(), items, doc, defs)
		return
	case reflect.Pointer:
		compare(t, typ, at, gt.Elem(), node, doc, defs)
		return
	case reflect.Struct:
	default:
		return
	}
	props, _ := node["properties"].(map[string]any)
	if node["additionalProperties"] != false {
		t.Errorf("%s %s: schema allows additional properties", typ, at)
	}
	var required []string
	for _, r := range node["required"].([]any) {
		required = append(required, r.(string))
	}
	goFields := map[string]bool{}
	for f := range gt.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		goFields[name] = true
		prop, ok := props[name].(map[string]any)
		if !ok {
			t.Errorf("%s %s: Go field %s (%q) is not in the schema", typ, at, f.Name, name)
			continue
		}
		omits := strings.Contains(opts, "omitempty") || f.Type.Kind() == reflect.Pointer
		if omits && slices.Contains(required, name) {
			t.Errorf("%s %s.%s: Go omits it when empty but the schema requires it", typ, at, name)
		}
		if !omits && !slices.Contains(required, name) {
			t.Errorf("%s %s.%s: Go always sends it but the schema does not require it", typ, at, name)
		}
		compare(t, typ, at+"."+name, f.Type, prop, doc, defs)
	}
	for name := range props {
		if !goFields[name] {
			t.Errorf("%s %s.%s: in the schema but not in the Go type", typ, at, name)
		}
	}
}

func TestBrokenPayloadsNameTheField(t *testing.T) {
	t.Parallel()
	v := newValidator(t)
	example := func(typ string) map[string]any {
		ex, err := schema.Examples(typ)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(ex[0], &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		name   string
		typ    string
		break_ func(m map[string]any)
		path   string
	}{
		{"missing job id", events.TypeProgress, func(m map[string]any) { delete(m, "job_id") }, "$.job_id"},
		{"job id with a dot", events.TypeProgress, func(m map[string]any) { m["job_id"] = "a.b" }, "$.job_id"},
		{"vma id wildcard", events.TypeReplicateCommand, func(m map[string]any) { m["vma_id"] = ">" }, "$.vma_id"},
		{"negative bytes", events.TypeProgress, func(m map[string]any) { m["bytes_done"] = -1 }, "$.bytes_done"},
		{"unknown phase", events.TypeProgress, func(m map[string]any) { m["phase"] = "dreaming" }, "$.phase"},
		{"unknown field", events.TypeProgress, func(m map[string]any) { m["colour"] = "red" }, "$.colour"},
		{"seq zero", events.TypeProgress, func(m map[string]any) { m["seq"] = 0 }, "$.seq"},
		{"disk key is a string", events.TypeProgress, func(m map[string]any) {
			m["disks"].([]any)[0].(map[string]any)["key"] = "2000"
		}, "$.disks[0].key"},
		{"unknown replication state", events.TypeReplicationStatus, func(m map[string]any) { m["state"] = "dozing" }, "$.state"},
		{"change id empty", events.TypeReplicationStatus, func(m map[string]any) {
			m["disks"].([]any)[0].(map[string]any)["change_id"] = ""
		}, "$.disks[0].change_id"},
		{"plaintext password", events.TypeReplicateCommand, func(m map[string]any) { m["password"] = "hunter2" }, "$.password"},
		{"sealed box missing", events.TypeDiscoverRequest, func(m map[string]any) {
			delete(m["password"].(map[string]any), "box")
		}, "$.password.box"},
		{"sealed wrong scheme", events.TypeDiscoverRequest, func(m map[string]any) {
			m["password"].(map[string]any)["scheme"] = "rot13"
		}, "$.password.scheme"},
		{"thumbprint neither sha-1 nor sha-256", events.TypeDiscoverRequest, func(m map[string]any) {
			m["thumbprint"] = "AB:CD:EF"
		}, "$.thumbprint"},
		{"thumbprint without colons", events.TypeReplicateCommand, func(m map[string]any) {
			m["thumbprint"] = strings.Repeat("ab", 20)
		}, "$.thumbprint"},
		{"ca pem without a certificate", events.TypeReplicateCommand, func(m map[string]any) { m["ca_pem"] = "trust me" }, "$.ca_pem"},
		{"ca pem too large", events.TypeDiscoverRequest, func(m map[string]any) {
			m["ca_pem"] = "-----BEGIN CERTIFICATE-----\n" + strings.Repeat("A", 64<<10)
		}, "$.ca_pem"},
		{"no vm paths", events.TypeReplicateCommand, func(m map[string]any) { m["vm_paths"] = []any{} }, "$.vm_paths"},
		{"relative vm path", events.TypeReplicateCommand, func(m map[string]any) { m["vm_paths"] = []any{"vm/x"} }, "$.vm_paths[0]"},
		{"unknown replication type", events.TypeReplicateCommand, func(m map[string]any) { m["replication_type"] = "full" }, "$.replication_type"},
		{"oma url not http", events.TypeReplicateCommand, func(m map[string]any) { m["oma_url"] = "ftp://x" }, "$.oma_url"},
		{"deep disk capacity", events.TypeDiscoverResult, func(m map[string]any) {
			vm := m["vms"].([]any)[0].(map[string]any)
			vm["disks"].([]any)[0].(map[string]any)["capacity_bytes"] = "big"
		}, "$.vms[0].disks[0].capacity_bytes"},
		{"missing network mac", events.TypeDiscoverResult, func(m map[string]any) {
			vm := m["vms"].([]any)[0].(map[string]any)
			delete(vm["networks"].([]any)[0].(map[string]any), "mac_address")
		}, "$.vms[0].networks[0].mac_address"},
		{"hardware version zero (absent when unknown)", events.TypeDiscoverResult, func(m map[string]any) {
			m["vms"].([]any)[0].(map[string]any)["hardware_version"] = 0
		}, "$.vms[0].hardware_version"},
		{"negative snapshots", events.TypeDiscoverResult, func(m map[string]any) {
			m["vms"].([]any)[0].(map[string]any)["snapshots"] = -1
		}, "$.vms[0].snapshots"},
		{"rdm is a string", events.TypeDiscoverResult, func(m map[string]any) {
			vm := m["vms"].([]any)[0].(map[string]any)
			vm["disks"].([]any)[1].(map[string]any)["rdm"] = "yes"
		}, "$.vms[0].disks[1].rdm"},
		{"power state", events.TypeDiscoverResult, func(m map[string]any) {
			m["vms"].([]any)[0].(map[string]any)["power_state"] = "on"
		}, "$.vms[0].power_state"},
		{"failure code", events.TypeDiscoverResult, func(m map[string]any) {
			m["error"].(map[string]any)["code"] = "oops"
		}, "$.error.code"},
		{"page zero", events.TypeDiscoverResult, func(m map[string]any) { m["page"], m["pages"] = 0, 2 }, "$.page"},
		{"page without pages", events.TypeDiscoverResult, func(m map[string]any) { m["page"] = 1 }, "$.pages"},
		{"job state", events.TypeJobStateChanged, func(m map[string]any) { m["to"] = "done" }, "$.to"},
		{"bad time", events.TypeJobStateChanged, func(m map[string]any) { m["changed_at"] = "yesterday" }, "$.changed_at"},
		{"export port", events.TypeJobCreated, func(m map[string]any) {
			m["disks"].([]any)[0].(map[string]any)["export"].(map[string]any)["port"] = 70000
		}, "$.disks[0].export.port"},
		{"public key", events.TypeHeartbeat, func(m map[string]any) { m["public_key"] = "short" }, "$.public_key"},
		{"cancel missing vma", events.TypeReplicateCancel, func(m map[string]any) { delete(m, "vma_id") }, "$.vma_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := example(tt.typ)
			tt.break_(m)
			data, _ := json.Marshal(m)
			err := v.Validate(tt.typ, data)
			var se *schema.Error
			if !errors.As(err, &se) {
				t.Fatalf("Validate(%s) = %v, want *schema.Error", data, err)
			}
			if se.Path != tt.path {
				t.Errorf("Validate path = %q (%v), want %q", se.Path, err, tt.path)
			}
		})
	}
}

func TestMalformedAndUnknown(t *testing.T) {
	t.Parallel()
	v := newValidator(t)
	var se *schema.Error
	if err := v.Validate(events.TypeProgress, []byte(`{"job_id":`)); !errors.As(err, &se) || se.Path != "$" {
		t.Errorf("malformed JSON = %v, want an *Error at $", err)
	}
	if err := v.Validate(events.TypeProgress, []byte(`[]`)); !errors.As(err, &se) || se.Path != "$" {
		t.Errorf("array payload = %v, want an *Error at $", err)
	}
	if err := v.Validate("io.godwit.nope.v1", []byte(`{}`)); !errors.Is(err, schema.ErrUnknownType) {
		t.Errorf("unknown type = %v, want ErrUnknownType", err)
	}
}

func TestValidateEvent(t *testing.T) {
	t.Parallel()
	v := newValidator(t)
	good := &events.ReplicateCancel{JobID: "repl-vm-1-1", VMAID: "vma-1", Reason: "operator"}
	ev, err := events.New("/godwit/oma", good, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(ev)
	got, err := v.ValidateEvent(raw)
	if err != nil || got.ID != ev.ID {
		t.Fatalf("ValidateEvent(good) = %+v, %v", got, err)
	}
	mutate := func(f func(m map[string]any)) []byte {
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	tests := []struct {
		name string
		raw  []byte
		path string
	}{
		{"spec version", mutate(func(m map[string]any) { m["specversion"] = "0.3" }), "$.specversion"},
		{"no id", mutate(func(m map[string]any) { delete(m, "id") }), "$.id"},
		{"no source", mutate(func(m map[string]any) { m["source"] = "" }), "$.source"},
		{"content type", mutate(func(m map[string]any) { m["datacontenttype"] = "text/plain" }), "$.datacontenttype"},
		{"unknown type", mutate(func(m map[string]any) { m["type"] = "io.godwit.nope.v1" }), "$.type"},
		{"foreign type", mutate(func(m map[string]any) { m["type"] = "com.example.x" }), "$.type"},
		{"bad time", mutate(func(m map[string]any) { m["time"] = "now" }), "$.time"},
		{"data field", mutate(func(m map[string]any) { m["data"].(map[string]any)["job_id"] = "a b" }), "$.data.job_id"},
		{"data missing", mutate(func(m map[string]any) { delete(m, "data") }), "$.data"},
		{"extra attribute", mutate(func(m map[string]any) { m["password"] = "x" }), "$.password"},
		{"not json", []byte("PUB x"), "$"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.ValidateEvent(tt.raw)
			var se *schema.Error
			if !errors.As(err, &se) || se.Path != tt.path {
				t.Errorf("ValidateEvent(%s) = %v, want an *Error at %s", tt.raw, err, tt.path)
			}
		})
	}
}
