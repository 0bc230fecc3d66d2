package schema

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Field checks value against the schema of one top-level property of the
// payload of eventType, so that an API can refuse a field at its edge with
// exactly the limits (length, pattern, items) the event will be held to.
// The returned *Error has paths relative to the property: "$" for the
// value itself, "$[0]" for an item of an array, "$.name" for a member. An
// unknown event type or property is an error wrapping ErrUnknownType.
func (v *Validator) Field(eventType, property string, value any) error {
	sch, err := v.field(eventType, property)
	if err != nil {
		return err
	}
	data, err := json.Marshal(value)
	if err != nil {
		return fmt.Errorf("check %s %s: %w", eventType, property, err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("check %s %s: %w", eventType, property, err)
	}
	return v.check(sch, eventType, inst)
}

// field compiles the schema of one property once.
func (v *Validator) field(eventType, property string) (*jsonschema.Schema, error) {
	if _, ok := v.payloads[eventType]; !ok {
		return nil, fmt.Errorf("check %q: %w", eventType, ErrUnknownType)
	}
	key := eventType + "#" + property
	v.mu.Lock()
	defer v.mu.Unlock()
	if sch, ok := v.fields[key]; ok {
		return sch, nil
	}
	sch, err := v.compiler.Compile(baseURL + eventType + ".json#/properties/" + property)
	if err != nil {
		return nil, fmt.Errorf("check %s property %q: %w (%v)", eventType, property, ErrUnknownType, err)
	}
	v.fields[key] = sch
	return sch, nil
}
