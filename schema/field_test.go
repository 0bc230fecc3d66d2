package schema_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/schema"
)

func TestField(t *testing.T) {
	t.Parallel()
	v, err := schema.New()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, typ, property string
		value               any
		path                string // "" when valid
	}{
		{"username fits", events.TypeDiscoverRequest, "username", "administrator@vsphere.local", ""},
		{"username at the limit", events.TypeDiscoverRequest, "username", strings.Repeat("u", 4096), ""},
		{"username too long", events.TypeDiscoverRequest, "username", strings.Repeat("u", 4097), "$"},
		{"username empty", events.TypeDiscoverRequest, "username", "", "$"},
		{"filter empty is fine", events.TypeDiscoverRequest, "filter", "", ""},
		{"filter too long", events.TypeDiscoverRequest, "filter", strings.Repeat("f", 5000), "$"},
		{"vm path", events.TypeReplicateCommand, "vm_paths", []string{"/dc/vm/a"}, ""},
		{"vm path relative", events.TypeReplicateCommand, "vm_paths", []string{"/dc/vm/a", "b"}, "$[1]"},
		{"vm name too long", events.TypeJobCreated, "vm", map[string]string{"id": "vm-1", "name": strings.Repeat("n", 4097), "path": ""}, "$.name"},
		{"id pattern", events.TypeDiscoverRequest, "vma_id", "a.b", "$"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := v.Field(tt.typ, tt.property, tt.value)
			var se *schema.Error
			switch {
			case tt.path == "" && err != nil:
				t.Errorf("Field(%s, %s) = %v, want nil", tt.typ, tt.property, err)
			case tt.path != "" && (!errors.As(err, &se) || se.Path != tt.path):
				t.Errorf("Field(%s, %s) = %v, want a problem at %s", tt.typ, tt.property, err, tt.path)
			}
		})
	}
	if err := v.Field(events.TypeDiscoverRequest, "colour", "red"); !errors.Is(err, schema.ErrUnknownType) {
		t.Errorf("unknown property = %v, want ErrUnknownType", err)
	}
	if err := v.Field("io.godwit.nope.v1", "x", "red"); !errors.Is(err, schema.ErrUnknownType) {
		t.Errorf("unknown type = %v, want ErrUnknownType", err)
	}
}
