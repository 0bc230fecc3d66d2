package api

import (
	"github.com/godwit/godwit/problem"
	"github.com/godwit/godwit/seal"
)

// probeKey is an X25519 public key nobody holds. A password is sealed to
// it only to measure the box against the event schema before the real
// sealing to a VMA's key, deep in control: a box's length depends only on
// the password's.
const probeKey = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="

// field is a request field and the event property it is published as.
type field struct {
	property, name string
	value          any
}

// optional is a field checked only when it is set.
func optional(name, value string) field {
	if value == "" {
		return field{}
	}
	return field{name, name, value}
}

// checkFields checks fields against the schema of eventType: a field the
// event would be refused for is a 400 naming it, before anything is
// stored, sealed or published.
func (a *API) checkFields(eventType string, fields ...field) error {
	v, err := a.validator()
	if err != nil {
		return err
	}
	for _, f := range fields {
		if f.property == "" {
			continue
		}
		if err := problem.CheckField(v, eventType, f.property, f.name, f.value); err != nil {
			return err
		}
	}
	return nil
}

// checkCredentials checks a username and password (sealed to probeKey)
// and then fields, against the schema of eventType.
func (a *API) checkCredentials(eventType string, c credentialsRequest, fields ...field) error {
	if err := a.checkFields(eventType, field{"username", "username", c.Username}); err != nil {
		return err
	}
	v, err := a.validator()
	if err != nil {
		return err
	}
	box, err := seal.Seal(probeKey, []byte(c.Password.Reveal()))
	if err != nil {
		return err
	}
	if err := problem.CheckSealed(v, eventType, "password", "password", box); err != nil {
		return err
	}
	return a.checkFields(eventType, fields...)
}
