package vcenters_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/oma/atrest"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/vcenters"
	"github.com/godwit/godwit/secret"
)

const (
	password = "Sup3r-Secr3t-vc"
	rotated  = "N3w-Secr3t-vc"
)

// loginTable is a Prover for the registry's own logic (validation, sealing,
// storage): the VMAs it lists log in to host with the one password it
// knows. The real Prover, a VMA logging in to the simulator over the bus,
// is tested where the OMA wires it.
type loginTable struct {
	host     string
	password string
	vmas     []string
	calls    int
}

func (l *loginTable) Prove(_ context.Context, c vcenters.Credentials) ([]string, error) {
	l.calls++
	if c.Host != l.host {
		return nil, fmt.Errorf("dial %s: %w", c.Host, vcenters.ErrUnreachable)
	}
	if c.Password.Reveal() != l.password {
		return nil, fmt.Errorf("login %s: %w", c.Username, vcenters.ErrRefused)
	}
	return l.vmas, nil
}

func newRegistry(t *testing.T, prover vcenters.Prover) (*vcenters.Registry, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, err := atrest.Load(filepath.Join(dir, "at-rest.key"))
	if err != nil {
		t.Fatal(err)
	}
	return vcenters.New(st, key, prover, nil), filepath.Join(dir, "state.db")
}

func good() vcenters.Spec {
	return vcenters.Spec{Name: "prod-vc1", Credentials: vcenters.Credentials{Host: "vc1.example.com",
		Username: "administrator@vsphere.local", Password: secret.New(password)}}
}

// wantFault checks err is a fault of kind about field.
func wantFault(t *testing.T, err error, kind fault.Kind, field string) {
	t.Helper()
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Kind != kind || fe.Field != field {
		t.Fatalf("err = %v, want a fault of kind %d naming %q", err, kind, field)
	}
	if strings.Contains(err.Error(), password) || strings.Contains(err.Error(), rotated) {
		t.Fatalf("the error %q shows a password", err)
	}
}

// TestCreateRefusesBadInput: each bad field is named, nothing is stored and
// nobody is asked to log in.
func TestCreateRefusesBadInput(t *testing.T) {
	prover := &loginTable{host: "vc1.example.com", password: password, vmas: []string{"vma-1"}}
	r, _ := newRegistry(t, prover)
	for _, tt := range []struct {
		field string
		edit  func(*vcenters.Spec)
	}{
		{"name", func(s *vcenters.Spec) { s.Name = "" }},
		{"name", func(s *vcenters.Spec) { s.Name = "has space" }},
		{"host", func(s *vcenters.Spec) { s.Host = "" }},
		{"host", func(s *vcenters.Spec) { s.Host = "https://vc1.example.com/sdk" }},
		{"host", func(s *vcenters.Spec) { s.Host = ":443" }},
		{"username", func(s *vcenters.Spec) { s.Username = "" }},
		{"password", func(s *vcenters.Spec) { s.Password = secret.New("") }},
		{"thumbprint", func(s *vcenters.Spec) { s.Thumbprint = "not-a-thumbprint" }},
		{"thumbprint", func(s *vcenters.Spec) {
			s.CAPEM, s.Thumbprint = "-----BEGIN CERTIFICATE-----\n", "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01"
		}},
		{"thumbprint", func(s *vcenters.Spec) { s.Thumbprint = strings.Repeat("AB:", 24) + "AB" }}, // 25 bytes: neither SHA-1 nor SHA-256
		{"ca_pem", func(s *vcenters.Spec) { s.CAPEM = "hello" }},
		{"ca_pem", func(s *vcenters.Spec) { s.CAPEM = "-----BEGIN CERTIFICATE-----\n" + strings.Repeat("A", 64<<10) }},
		{"datacenters[1]", func(s *vcenters.Spec) { s.Datacenters = []string{"DC0", " "} }},
		{"vmas[0]", func(s *vcenters.Spec) { s.VMAs = []string{""} }},
	} {
		s := good()
		tt.edit(&s)
		_, err := r.Create(context.Background(), s)
		wantFault(t, err, fault.Invalid, tt.field)
	}
	if list, err := r.List(); err != nil || len(list) != 0 {
		t.Errorf("List = %v, %v: want nothing stored", list, err)
	}
	if prover.calls != 0 {
		t.Errorf("the prover was asked %d times for invalid input", prover.calls)
	}
}

// TestCreate: proved credentials are registered, the VMAs that proved them
// allowed; the password is in bbolt only as ciphertext and in no read; a
// taken name is a conflict; a refused password names password, an
// unreachable host names host, and neither stores anything.
func TestCreate(t *testing.T) {
	prover := &loginTable{host: "vc1.example.com", password: password, vmas: []string{"vma-2", "vma-1"}}
	r, db := newRegistry(t, prover)
	v, err := r.Create(context.Background(), good())
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "prod-vc1" || strings.Join(v.VMAs, ",") != "vma-1,vma-2" || v.PasswordAt.IsZero() {
		t.Errorf("created %+v: want the proving VMAs, sorted, and when the password was set", v)
	}
	if got, err := r.Password("prod-vc1"); err != nil || got.Reveal() != password {
		t.Errorf("Password = %v, %v", got, err)
	}
	list, err := r.List()
	if err != nil || len(list) != 1 || list[0].Host != "vc1.example.com" {
		t.Errorf("List = %+v, %v", list, err)
	}
	if s := fmt.Sprintf("%+v %#v", list, v); strings.Contains(s, password) {
		t.Errorf("a read shows the password: %s", s)
	}

	_, err = r.Create(context.Background(), good())
	wantFault(t, err, fault.Conflict, "name")

	wrong := good()
	wrong.Name, wrong.Password = "other", secret.New("nope")
	_, err = r.Create(context.Background(), wrong)
	wantFault(t, err, fault.Invalid, "password")
	away := good()
	away.Name, away.Host = "away", "vc9.example.com"
	_, err = r.Create(context.Background(), away)
	wantFault(t, err, fault.Invalid, "host")
	if _, err := r.Get("other"); fault.KindOf(err) != fault.NotFound {
		t.Errorf("Get of a refused vCenter = %v, want not found", err)
	}

	explicit := good()
	explicit.Name, explicit.VMAs = "pinned", []string{"vma-7"}
	if v, err := r.Create(context.Background(), explicit); err != nil || strings.Join(v.VMAs, ",") != "vma-7" {
		t.Errorf("Create with vmas = %+v, %v: want vma-7 kept", v, err)
	}

	data, err := os.ReadFile(db) // bbolt writes each commit to the file
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(password)) {
		t.Error("state.db holds the password in the clear")
	}
	if !bytes.Contains(data, []byte("vc1.example.com")) {
		t.Error("state.db does not hold the vCenter at all: the check above proves nothing")
	}
}

// TestRotateAndDelete: a new password is proved before it replaces the
// old one; a refused one changes nothing. A vCenter in use is not deleted.
func TestRotateAndDelete(t *testing.T) {
	prover := &loginTable{host: "vc1.example.com", password: password, vmas: []string{"vma-1"}}
	r, _ := newRegistry(t, prover)
	if _, err := r.Create(context.Background(), good()); err != nil {
		t.Fatal(err)
	}
	_, err := r.Rotate(context.Background(), "prod-vc1", secret.New(rotated))
	wantFault(t, err, fault.Invalid, "password")
	if got, _ := r.Password("prod-vc1"); got.Reveal() != password {
		t.Error("a refused rotation changed the password")
	}
	prover.password = rotated // changed in vCenter
	before, _ := r.Get("prod-vc1")
	v, err := r.Rotate(context.Background(), "prod-vc1", secret.New(rotated))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Password("prod-vc1"); got.Reveal() != rotated || v.PasswordAt.Before(before.PasswordAt) {
		t.Errorf("after rotation: password %q, set at %v (was %v)", got.Reveal(), v.PasswordAt, before.PasswordAt)
	}
	_, err = r.Rotate(context.Background(), "nope", secret.New(rotated))
	wantFault(t, err, fault.NotFound, "name")

	inUse := func(_ *bbolt.Tx, name string) (string, bool) { return "plan wave-1", name == "prod-vc1" }
	wantFault(t, r.Delete("prod-vc1", inUse), fault.Conflict, "name")
	if err := r.Delete("prod-vc1", nil); err != nil {
		t.Fatal(err)
	}
	wantFault(t, r.Delete("prod-vc1", nil), fault.NotFound, "name")
	_, err = r.Password("prod-vc1")
	wantFault(t, err, fault.NotFound, "name")
}
