// Package problem writes RFC 9457 problem details (application/problem+json)
// that name the field at fault, and decodes JSON request bodies strictly:
// one object of at most MaxBody bytes, no unknown fields, errors that say
// which field is wrong.
package problem

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
)

// MaxBody is the largest request body Decode accepts.
const MaxBody = 1 << 20

// Problem is an RFC 9457 problem detail, with the field at fault.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Field  string `json:"field,omitempty"`
}

// Error is an error to answer with a given status.
type Error struct {
	Status int
	Field  string
	Detail string
}

// Error implements error.
func (e *Error) Error() string { return e.Detail }

// BadRequest returns a 400 about field.
func BadRequest(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Field: field, Detail: fmt.Sprintf(format, args...)}
}

// Write answers with a problem.
func Write(w http.ResponseWriter, status int, field, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Problem{
		Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail, Field: field,
	})
}

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// IsJSON reports whether a Content-Type header value is JSON:
// application/json or application/<anything>+json, with no charset or
// charset utf-8. Anything else, the empty value and curl's default
// application/x-www-form-urlencoded included, is not.
func IsJSON(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return false
	}
	sub, ok := strings.CutPrefix(mt, "application/")
	return ok && (sub == "json" || (strings.HasSuffix(sub, "+json") && len(sub) > len("+json")))
}

// tooLarge is the error of a body over MaxBody.
func tooLarge() *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Detail: fmt.Sprintf("request body is larger than %d bytes", MaxBody)}
}

// Decode reads one JSON object of at most MaxBody bytes into v, refusing
// unknown fields and trailing data. Its errors are *Error, naming the
// field where it can; a body whose Content-Type is not JSON (IsJSON) is
// 415, an empty one 400 (it needs no Content-Type), a larger one 413, and
// one whose read hit a deadline (httpserver's body timeout) 408.
func Decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); r.ContentLength != 0 && !IsJSON(ct) {
		return &Error{Status: http.StatusUnsupportedMediaType, Field: "Content-Type", Detail: fmt.Sprintf("Content-Type %q: send application/json", ct)}
	}
	var read bytes.Buffer // what the decoder read, to find an unknown field's path
	dec := json.NewDecoder(io.TeeReader(http.MaxBytesReader(w, r.Body, MaxBody), &read))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var (
		maxErr    *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case err == nil:
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &Error{Status: http.StatusRequestTimeout, Detail: "request body not received in time: send it whole, at once"}
	case errors.As(err, &maxErr):
		return tooLarge()
	case errors.Is(err, io.EOF):
		return BadRequest("", "empty request body: send a JSON object")
	case errors.As(err, &syntaxErr):
		return BadRequest("", "malformed JSON at byte %d: %v", syntaxErr.Offset, err)
	case errors.As(err, &typeErr):
		return BadRequest(typeErr.Field, "%s must be a JSON %s, not %s", typeErr.Field, typeErr.Type.Kind(), typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		if path := unknownField(read.Bytes(), v); path != "" {
			field = path
		}
		return BadRequest(field, "unknown field %q", field)
	default:
		return BadRequest("", "malformed JSON: %v", err)
	}
	if dec.More() {
		return BadRequest("", "request body holds more than one JSON value")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if errors.As(err, &maxErr) {
			return tooLarge()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return &Error{Status: http.StatusRequestTimeout, Detail: "request body not received in time: send it whole, at once"}
		}
		return BadRequest("", "request body holds data after the JSON object")
	}
	return nil
}
