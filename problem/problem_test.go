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

// TestDecodeNamesTheUnknownFieldWithItsPath: an unknown member is named
// where it stands, as encoding/json names a member of the wrong type.
func TestDecodeNamesTheUnknownFieldWithItsPath(t *testing.T) {
	t.Parallel()
	type Disk struct {
		Key  int   `json:"key"`
		Size int64 `json:"size"`
	}
	type Base struct {
		Note string `json:"note"`
	}
	type body struct {
		Base
		Name   string `json:"name"`
		Secret string `json:"-"`
		VM     struct {
			ID string `json:"id"`
		} `json:"source_vm"`
		Disks  []Disk          `json:"disks"`
		Labels map[string]Disk `json:"labels"`
		Any    any             `json:"any"`
	}
	for _, c := range []struct{ body, field string }{
		{`{"nmae":"x"}`, "nmae"},
		{`{"name":"x","source_vm":{"idd":"vm-1"}}`, "source_vm.idd"},
		{`{"disks":[{"key":1},{"key":2,"sise":3}]}`, "disks[1].sise"},
		{`{"labels":{"a":{"key":1,"x":2}}}`, "labels.a.x"},
		{`{"any":{"deep":[{"x":1}]},"name":"x","oops":1}`, "oops"},
		{`{"NAME":"x","Note":"n","secret":"s"}`, "secret"},
		{`{"source_vm":{"ID":"vm-1"},"disks":[],"z":{"a":[1,{"b":2}]}}`, "z"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(c.body))
		r.Header.Set("Content-Type", "application/json")
		var v body
		err := problem.Decode(httptest.NewRecorder(), r, &v)
		pe, ok := err.(*problem.Error)
		if !ok || pe.Status != http.StatusBadRequest || pe.Field != c.field || !strings.Contains(pe.Detail, `"`+c.field+`"`) {
			t.Errorf("Decode(%s) = %#v, want 400 naming %s", c.body, err, c.field)
		}
	}
}
