package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/godwit/godwit/problem"
)

// apiError is an answer of the API that is not 2xx: its status and its
// problem's detail and field.
type apiError struct {
	Status int
	Field  string
	Detail string
}

func (e *apiError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s (%s)", e.Detail, e.Field)
	}
	return e.Detail
}

// errSignedOut says the API refused the session's token (revoked): the
// browser must sign in again.
var errSignedOut = errors.New("the token was refused: sign in again")

// recorder is the ResponseWriter of a call to the API inside the OMA.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

// call sends a request to the API, in the process, with token, and decodes
// a JSON answer into out (when not nil). The API decides everything: scope,
// validation, the answer; a non-2xx answer is an *apiError, a 401
// errSignedOut.
func (c *Console) call(ctx context.Context, token, method, path string, body, out any) error {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Host = "localhost"
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{header: http.Header{}}
	c.cfg.API.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status == http.StatusUnauthorized {
		return errSignedOut
	}
	if rec.status/100 != 2 {
		var p problem.Problem
		if err := json.Unmarshal(rec.body.Bytes(), &p); err != nil || p.Detail == "" {
			p.Detail = fmt.Sprintf("%s %s answered %d", method, path, rec.status)
		}
		return &apiError{Status: rec.status, Field: p.Field, Detail: p.Detail}
	}
	if out != nil && rec.body.Len() > 0 {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}
