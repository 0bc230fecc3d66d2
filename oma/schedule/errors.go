package schedule

// FieldError is the error Parse returns: Field is the JSON field at fault
// ("sync", "sync.interval", "sync.cron", "sync.window.start",
// "sync.window.end" or "sync.window.tz") and Msg says what is wrong with it
// and how to fix it.
type FieldError struct {
	Field string
	Msg   string
}

// Error returns the field and the message, "sync.interval: ...".
func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// fieldError is a *FieldError for field with msg.
func fieldError(field, msg string) *FieldError {
	return &FieldError{Field: field, Msg: msg}
}
