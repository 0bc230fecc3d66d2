package api

import (
	"errors"
	"net/http"

	"github.com/godwit/godwit/oma/control"
	"github.com/godwit/godwit/problem"
)

// Problem is the problem detail the API answers errors with.
type Problem = problem.Problem

func badRequest(field, format string, args ...any) error {
	return problem.BadRequest(field, format, args...)
}

func writeProblem(w http.ResponseWriter, status int, field, detail string) {
	problem.Write(w, status, field, detail)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	return problem.WriteJSON(w, status, v)
}

func decode(w http.ResponseWriter, r *http.Request, v any) error { return problem.Decode(w, r, v) }

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
	var pe *problem.Error
	if errors.As(err, &pe) {
		return pe.Status, pe.Field
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
		case control.Limit:
			return http.StatusTooManyRequests, ce.Field
		}
	}
	return http.StatusInternalServerError, ""
}
