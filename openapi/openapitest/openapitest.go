// Package openapitest checks an API against its OpenAPI document in
// tests: a Checker is an http.RoundTripper that validates every request a
// test sends and every answer it gets (status, content type, body, problem
// bodies) with kin-openapi's openapi3filter, records the operations
// exercised, and compares the document with a gorilla/mux router.
package openapitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/gorilla/mux"
)

// Checker validates the traffic through it against a document.
type Checker struct {
	tb     testing.TB
	doc    *openapi3.T
	router routers.Router
	next   http.RoundTripper

	mu   sync.Mutex
	seen map[string]map[int]bool // "METHOD path" -> statuses answered
}

// registerDecoders teaches openapi3filter the binary content types the
// APIs answer: their bodies are checked as opaque bytes.
var registerDecoders = sync.OnceFunc(func() {
	openapi3filter.RegisterBodyDecoder("image/png", openapi3filter.FileBodyDecoder)
})

// New loads and validates the document doc (JSON), and returns a Checker
// that sends through http.DefaultTransport.
func New(tb testing.TB, doc []byte) *Checker {
	tb.Helper()
	registerDecoders()
	loader := openapi3.NewLoader()
	d, err := loader.LoadFromData(doc)
	if err != nil {
		tb.Fatalf("load the OpenAPI document: %v", err)
	}
	if !d.IsOpenAPI31OrLater() {
		tb.Fatalf("the document is OpenAPI %s, want 3.1", d.OpenAPI)
	}
	if err := d.Validate(loader.Context); err != nil {
		tb.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	r, err := gorillamux.NewRouter(d)
	if err != nil {
		tb.Fatalf("route the OpenAPI document: %v", err)
	}
	return &Checker{tb: tb, doc: d, router: r, next: http.DefaultTransport, seen: map[string]map[int]bool{}}
}

// Client returns an http.Client whose requests go through c.
func (c *Checker) Client() *http.Client { return &http.Client{Transport: c} }

// invalidKey marks a request a test sends invalid on purpose.
type invalidKey struct{}

// Invalid marks req as invalid on purpose (to see the API refuse it): its
// request is not checked, only the answer.
func Invalid(req *http.Request) *http.Request {
	return req.WithContext(context.WithValue(req.Context(), invalidKey{}, true))
}

// RoundTrip implements http.RoundTripper: it checks req against the
// document (unless Invalid), sends it, and checks the answer. A request
// or answer the document does not allow fails the test, naming the
// operation.
func (c *Checker) RoundTrip(req *http.Request) (*http.Response, error) {
	c.tb.Helper()
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.tb.Errorf("openapi: %s %s is not in the document: %v", req.Method, req.URL.Path, err)
		return c.next.RoundTrip(req)
	}
	key := req.Method + " " + route.Path
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: bearerPresent, MultiError: true}}
	if req.Context().Value(invalidKey{}) == nil {
		if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil && !isSecurity(err) {
			c.tb.Errorf("openapi: the request %s does not fit the document: %v", key, err)
		}
	}
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read the answer to %s: %w", key, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(req.Context(), out); err != nil {
		c.tb.Errorf("openapi: the answer %d to %s does not fit the document: %v\nbody: %.600s", resp.StatusCode, key, err, body)
	}
	c.mu.Lock()
	if c.seen[key] == nil {
		c.seen[key] = map[int]bool{}
	}
	c.seen[key][resp.StatusCode] = true
	c.mu.Unlock()
	return resp, nil
}

// bearerPresent passes a request that carries a bearer token; the API
// decides whether it is valid (its 401 is in the document).
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if strings.HasPrefix(strings.ToLower(in.RequestValidationInput.Request.Header.Get("Authorization")), "bearer ") {
		return nil
	}
	return in.NewError(errors.New("no bearer token"))
}

// isSecurity reports whether err is only about the missing token: tests
// send such requests to see the 401.
func isSecurity(err error) bool {
	var me openapi3.MultiError
	if errors.As(err, &me) {
		for _, e := range me {
			if !isSecurity(e) {
				return false
			}
		}
		return len(me) > 0
	}
	var se *openapi3filter.SecurityRequirementsError
	return errors.As(err, &se)
}

// Operations lists the document's operations, "METHOD /path", sorted.
func (c *Checker) Operations() []string {
	var out []string
	for path, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	slices.Sort(out)
	return out
}

// Covered fails the test for every operation of the document that no
// request got a 2xx answer from.
func (c *Checker) Covered(tb testing.TB) {
	tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, key := range c.Operations() {
		ok := false
		for status := range c.seen[key] {
			ok = ok || status/100 == 2
		}
		if !ok {
			tb.Errorf("openapi: no request of the test got a 2xx from %s (statuses seen: %v)", key, statusesOf(c.seen[key]))
		}
	}
}

func statusesOf(m map[int]bool) []int {
	var out []int
	for s := range m {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// MatchesRouter fails the test for every route of r (with methods) that
// the document lacks, and every operation of the document r lacks.
func (c *Checker) MatchesRouter(tb testing.TB, r *mux.Router) {
	tb.Helper()
	var routes []string
	err := r.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := route.GetPathTemplate()
		if err != nil {
			return nil
		}
		methods, err := route.GetMethods()
		if err != nil {
			return nil // a subrouter's node
		}
		for _, m := range methods {
			routes = append(routes, m+" "+tpl)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	slices.Sort(routes)
	doc := c.Operations()
	for _, r := range routes {
		if _, found := slices.BinarySearch(doc, r); !found {
			tb.Errorf("openapi: the router has %s, the document does not", r)
		}
	}
	for _, d := range doc {
		if _, found := slices.BinarySearch(routes, d); !found {
			tb.Errorf("openapi: the document has %s, the router does not", d)
		}
	}
}

// Client sends JSON requests to an API through its Checker.
type Client struct {
	tb    testing.TB
	base  string
	token string
	hc    *http.Client
}

// NewClient returns a Client of the API at base (such as
// http://127.0.0.1:8082) that sends token, unless "".
func (c *Checker) NewClient(base, token string) *Client {
	return &Client{tb: c.tb, base: base, token: token, hc: c.Client()}
}

// Send sends a request with token (none when "") and body (nil, a string
// sent as it is, or a value sent as JSON), and decodes a JSON answer into
// out when out is not nil. invalid marks a request sent wrong on purpose:
// only its answer is checked. It returns the status.
func (c *Client) Send(method, path, token string, body, out any, invalid bool) int {
	c.tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			c.tb.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if invalid {
		req = Invalid(req)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.tb.Fatal(err)
	}
	if out != nil && len(data) > 0 && strings.Contains(resp.Header.Get("Content-Type"), "json") {
		if err := json.Unmarshal(data, out); err != nil {
			c.tb.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

// Do is Send with the client's token, of a valid request.
func (c *Client) Do(method, path string, body, out any) int {
	c.tb.Helper()
	return c.Send(method, path, c.token, body, out, false)
}

// Must is Do, failing the test unless the answer's status is want.
func (c *Client) Must(want int, method, path string, body, out any) {
	c.tb.Helper()
	var answer map[string]any
	if out == nil {
		out = &answer
	}
	if code := c.Do(method, path, body, out); code != want {
		c.tb.Fatalf("%s %s = %d, want %d (%+v)", method, path, code, want, out)
	}
}
