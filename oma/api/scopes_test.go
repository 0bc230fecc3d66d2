package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/tokens"
)

// scopedProblem is a 403 answer: the problem and the scope needed.
type scopedProblem struct {
	problem
	Scope string `json:"scope"`
}

// TestTokenScopes: a read token may GET (but not list tokens), an operate
// token may also run discovery and jobs, an admin token may do all;
// anything else is 403 naming the scope needed. Tokens are made operate
// unless asked otherwise. NBD export names reach admin tokens only, and
// the access log names the token.
func TestTokenScopes(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 2)
	v := o.addVMA("vma-1")
	o.learn(v, testVM("vm-1", 1<<20))
	secrets := map[tokens.Scope]string{tokens.Admin: o.token}
	for name, scope := range map[string]string{"reader": "read", "operator": "", "boss": "admin"} {
		var created struct {
			Token string `json:"token"`
			Scope string `json:"scope"`
		}
		body := map[string]string{"name": name}
		if scope != "" {
			body["scope"] = scope
		}
		if code := o.do("POST", "/api/v1/tokens", body, &created); code != 201 {
			t.Fatalf("create %s = %d", name, code)
		}
		if want := map[string]string{"reader": "read", "operator": "operate", "boss": "admin"}[name]; created.Scope != want {
			t.Errorf("token %s made with scope %q, want %q", name, created.Scope, want)
		}
		if name != "boss" {
			secrets[tokens.Scope(created.Scope)] = created.Token
		}
	}
	var p problem
	if code := o.do("POST", "/api/v1/tokens", map[string]string{"name": "x", "scope": "root"}, &p); code != 400 || p.Field != "scope" {
		t.Errorf("create with scope root = %d %+v, want 400 naming scope", code, p)
	}

	for _, ep := range []struct {
		method, path string
		need         tokens.Scope
	}{
		{"GET", "/api/v1/replications", tokens.Read}, {"GET", "/api/v1/replications/x", tokens.Read},
		{"GET", "/api/v1/vms", tokens.Read}, {"GET", "/api/v1/vmas", tokens.Read},
		{"POST", "/api/v1/replications", tokens.Operate}, {"DELETE", "/api/v1/replications/x", tokens.Operate},
		{"POST", "/api/v1/replications/x/start", tokens.Operate}, {"POST", "/api/v1/discover", tokens.Operate},
		{"POST", "/api/v1/vmas", tokens.Admin}, {"POST", "/api/v1/tokens", tokens.Admin},
		{"GET", "/api/v1/tokens", tokens.Admin}, {"DELETE", "/api/v1/tokens/nope", tokens.Admin},
		{"GET", "/api/v1/vms/x/cutover", tokens.Read}, {"GET", "/api/v1/vms/x/cutover/console", tokens.Read},
		{"POST", "/api/v1/vms/x/cutover", tokens.Operate}, {"POST", "/api/v1/vms/x/cutover/rollback", tokens.Operate},
		{"POST", "/api/v1/vms/x/cutover/commit", tokens.Operate}, {"POST", "/api/v1/plans/x/cutover", tokens.Operate},
		{"POST", "/api/v1/plans/x/cutover/rollback", tokens.Operate},
	} {
		for _, have := range tokens.Scopes {
			var body []byte
			if ep.method == "POST" {
				body = []byte(`{}`) // refused as incomplete when allowed: nothing changes
			}
			var p scopedProblem
			code := o.doRaw(ep.method, ep.path, "Bearer "+secrets[have], body, &p)
			switch {
			case have.Allows(ep.need) && (code == 401 || code == 403):
				t.Errorf("%s %s with a %s token = %d %+v, want it allowed", ep.method, ep.path, have, code, p)
			case !have.Allows(ep.need) && (code != 403 || p.Scope != string(ep.need) || p.Field != "Authorization" || !strings.Contains(p.Detail, "scope "+string(ep.need))):
				t.Errorf("%s %s with a %s token = %d %+v, want 403 naming scope %s", ep.method, ep.path, have, code, p, ep.need)
			}
		}
	}

	// Export names: admin only.
	var created job
	req, _ := json.Marshal(createBody("vm-1", "initial"))
	if code := o.doRaw("POST", "/api/v1/replications", "Bearer "+secrets[tokens.Operate], req, &created); code != 201 {
		t.Fatalf("create a job with the operate token = %d", code)
	}
	var full struct {
		Disks []struct {
			Export struct{ Name string } `json:"export"`
			NBDURL string                `json:"nbd_url"`
		} `json:"disks"`
	}
	o.do("GET", "/api/v1/replications/"+created.JobID, nil, &full)
	if len(full.Disks) != 1 || full.Disks[0].Export.Name == "" || !strings.HasSuffix(full.Disks[0].NBDURL, "/"+full.Disks[0].Export.Name) {
		t.Fatalf("an admin token sees %+v, want the export name and NBD URL", full)
	}
	name := full.Disks[0].Export.Name
	for _, have := range []tokens.Scope{tokens.Read, tokens.Operate} {
		for _, path := range []string{"/api/v1/replications/" + created.JobID, "/api/v1/replications"} {
			raw := o.getWith(t, path, secrets[have])
			if bytes.Contains(raw, []byte(name)) || bytes.Contains(raw, []byte("nbd_url")) || !bytes.Contains(raw, []byte(created.JobID)) {
				t.Errorf("a %s token's GET %s shows the export name or the NBD URL: %s", have, path, raw)
			}
		}
	}
	if code := o.doRaw("DELETE", "/api/v1/replications/"+created.JobID, "Bearer "+secrets[tokens.Operate], nil, nil); code != 200 {
		t.Errorf("cancel with the operate token = %d", code)
	}
	if logs := o.Logs.String(); !strings.Contains(logs, "token=reader") || !strings.Contains(logs, "token=operator") ||
		strings.Contains(logs, secrets[tokens.Read]) {
		t.Error("the access log does not name the tokens, or shows a secret")
	}
}

// getWith GETs path with the token secret and returns the 200 answer's body.
func (o *omaUnderTest) getWith(t *testing.T, path, secret string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", o.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s = %d %s", path, resp.StatusCode, b.Bytes())
	}
	return b.Bytes()
}

// TestTokensFromBeforeScopesAreAdmin: a token stored without a scope (an
// OMA from before scopes made it) is an admin token after the start, as it
// was in effect, and the OMA says so.
func TestTokensFromBeforeScopesAreAdmin(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 1)
	o.editStore(func(tx *bbolt.Tx) error {
		tok, err := store.GetToken(tx, "initial")
		if err != nil {
			return err
		}
		tok.Scope = ""
		return store.PutToken(tx, tok)
	})
	var list struct {
		Tokens []struct{ Name, Scope string } `json:"tokens"`
	}
	if code := o.do("GET", "/api/v1/tokens", nil, &list); code != 200 || len(list.Tokens) != 1 || list.Tokens[0].Scope != "admin" {
		t.Errorf("tokens = %d %+v, want initial as admin", code, list)
	}
	if !strings.Contains(o.Logs.String(), "API tokens from before scopes are admin tokens") {
		t.Error("the migration is not logged")
	}
	o.Stop() // the store holds the scope now
	s, err := appliance.OpenStore(o.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.View(func(tx *bbolt.Tx) error {
		if tok, err := store.GetToken(tx, "initial"); err != nil || tok.Scope != "admin" {
			t.Errorf("stored initial token = %+v, %v, want scope admin", tok, err)
		}
		return nil
	})
}
