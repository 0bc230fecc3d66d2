package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/godwit/godwit/oma/control"
)

// maxBody is the largest request body accepted.
const maxBody = 1 << 20

// Problem is an RFC 9457 problem detail, with the field at fault.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Field  string `json:"field,omitempty"`
}

// httpError is an error with the status to answer it with.
type httpError struct {
	status int
	field  string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(field, format string, args ...any) error {
	return &httpError{status: http.StatusBadRequest, field: field, msg: fmt.Sprintf(format, args...)}
}

// detailOf is what a problem says about err.
func detailOf(err error) string {
	var ce *control.Error
	if errors.As(err, &ce) {
		if ce.Err != nil {
			return ce.Msg + ": " + ce.Err.Error()
		}
		return ce.Msg
	}
	return err.Error()
}

// statusOf maps an error to its status and field.
func statusOf(err error) (int, string) {
	var he *httpError
	if errors.As(err, &he) {
		return he.status, he.field
	}
	var ce *control.Error
	if errors.As(err, &ce) {
		switch ce.Kind {
		case control.Invalid:
			return http.StatusBadRequest, ce.Field
		case control.NotFound:
			return http.StatusNotFound, ce.Field
		case control.Conflict:
			return http.StatusConflict, ce.Field
		case control.Unavailable:
			return http.StatusServiceUnavailable, ce.Field
		case control.Timeout:
			return http.StatusGatewayTimeout, ce.Field
		case control.Upstream:
			return http.StatusBadGateway, ce.Field
		case control.Unauthorized:
			return http.StatusUnauthorized, ce.Field
		}
	}
	return http.StatusInternalServerError, ""
}

func writeProblem(w http.ResponseWriter, status int, field, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Problem{
		Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail, Field: field,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// decode reads one JSON object of at most maxBody bytes into v, refusing
// unknown fields and trailing data, with errors that name the field.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	// curl -d sends application/x-www-form-urlencoded unless told otherwise:
	// take its body as JSON too.
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") &&
		!strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return &httpError{status: http.StatusUnsupportedMediaType, msg: fmt.Sprintf("Content-Type %q: send application/json", ct)}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var (
		maxErr    *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case err == nil:
	case errors.As(err, &maxErr):
		return badRequest("", "request body is larger than %d bytes", maxBody)
	case errors.Is(err, io.EOF):
		return badRequest("", "empty request body: send a JSON object")
	case errors.As(err, &syntaxErr):
		return badRequest("", "malformed JSON at byte %d: %v", syntaxErr.Offset, err)
	case errors.As(err, &typeErr):
		return badRequest(typeErr.Field, "%s must be a JSON %s, not %s", typeErr.Field, typeErr.Type.Kind(), typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badRequest(field, "unknown field %q", field)
	default:
		return badRequest("", "malformed JSON: %v", err)
	}
	if dec.More() {
		return badRequest("", "request body holds more than one JSON value")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return badRequest("", "request body is larger than %d bytes", maxBody)
		}
		return badRequest("", "request body holds data after the JSON object")
	}
	return nil
}
