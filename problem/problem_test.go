package problem_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/godwit/godwit/problem"
)

func TestIsJSON(t *testing.T) {
	t.Parallel()
	for ct, want := range map[string]bool{
		"application/json":                  true,
		"Application/JSON":                  true,
		"application/json; charset=utf-8":   true,
		"application/json;charset=UTF-8":    true,
		"application/problem+json":          true,
		"application/json; charset=latin1":  false,
		"application/x-www-form-urlencoded": false,
		"multipart/form-data; boundary=x":   false,
		"text/plain":                        false,
		"text/json":                         false,
		"application/+json":                 false,
		"application/jsonp":                 false,
		"":                                  false,
		"application/json; charset":         false,
	} {
		if got := problem.IsJSON(ct); got != want {
			t.Errorf("IsJSON(%q) = %v, want %v", ct, got, want)
		}
	}
}

// TestDecodeContentType: a form post is 415; an empty body needs no
// content type and is 400.
func TestDecodeContentType(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v struct{ Name string }
		if err := problem.Decode(w, r, &v); err != nil {
			pe := err.(*problem.Error)
			problem.Write(w, pe.Status, pe.Field, pe.Detail)
			return
		}
		_ = problem.WriteJSON(w, 200, v)
	}))
	t.Cleanup(srv.Close)
	for _, c := range []struct {
		ct, body string
		status   int
	}{
		{"application/json", `{"Name":"x"}`, 200},
		{"application/x-www-form-urlencoded", `{"Name":"x"}`, 415},
		{"", `{"Name":"x"}`, 415},
		{"", ``, 400},
		{"application/json", ``, 400},
	} {
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(c.body))
		if c.ct != "" {
			req.Header.Set("Content-Type", c.ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var p problem.Problem
		_ = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("POST %q as %q = %d %+v, want %d", c.body, c.ct, resp.StatusCode, p, c.status)
		}
	}
}
