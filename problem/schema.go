package problem

import (
	"errors"
	"strings"

	"github.com/godwit/godwit/schema"
)

// CheckField checks a request field against the schema of the event
// property it will be published as (schema.Validator.Field), so a field
// the event schema would refuse is a 400 naming the field, not a failed
// publish. An index or member the schema names is added to field
// ("vm_paths[1]", "source_vm.name"). Other errors (an unknown property)
// come back wrapped, for a 500.
func CheckField(v *schema.Validator, eventType, property, field string, value any) error {
	err := v.Field(eventType, property, value)
	var se *schema.Error
	if !errors.As(err, &se) {
		return err
	}
	name := field + strings.TrimPrefix(se.Path, "$")
	return BadRequest(name, "%s: %s", name, se.Reason)
}

// CheckSealed is CheckField for a secret sealed from field: a box the
// schema refuses is a 400 saying that the secret is too long, without the
// box's details.
func CheckSealed(v *schema.Validator, eventType, property, field string, sealed any) error {
	err := v.Field(eventType, property, sealed)
	var se *schema.Error
	if !errors.As(err, &se) {
		return err
	}
	return BadRequest(field, "%s is too long: %s", field, se.Reason)
}
