package vcenter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/seal"
	"github.com/godwit/godwit/vma/vcenter"
)

// TestLoginSealed opens a password sealed to the VMA's key and logs in
// with it; a box sealed to another key is refused as ErrSealed (invalid),
// naming the key to seal to, before any connection.
func TestLoginSealed(t *testing.T) {
	sim := startSim(t)
	ctx := context.Background()
	kp, err := seal.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := seal.NewKeyPair()
	box := func(to seal.KeyPair, pw string) events.Sealed {
		s, err := seal.Seal(seal.EncodeKey(to.Public), []byte(pw))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cfg := vcenter.Config{Host: sim.Host, Username: sim.Username, CAFile: sim.CAFile}

	s, err := vcenter.LoginSealed(ctx, cfg, kp, box(kp, sim.Password))
	if err != nil {
		t.Fatalf("LoginSealed = %v", err)
	}
	defer s.Close()
	if got := s.Config(); got.Host != sim.Host || got.Username != sim.Username || got.Password.Reveal() != sim.Password {
		t.Errorf("Session.Config() = %+v, want the host, user and opened password", got)
	}

	for _, tc := range []struct {
		name string
		box  events.Sealed
		want error
		code string
	}{
		{"another key", box(other, sim.Password), vcenter.ErrSealed, events.FailureInvalid},
		{"tampered", func() events.Sealed { b := box(kp, sim.Password); b.Box = b.Box[:len(b.Box)-4] + "AAA="; return b }(), vcenter.ErrSealed, events.FailureInvalid},
		{"wrong password", box(kp, "wrong-password"), vcenter.ErrAuth, events.FailureAuth},
	} {
		_, err := vcenter.LoginSealed(ctx, cfg, kp, tc.box)
		if !errors.Is(err, tc.want) || vcenter.FailureCode(err) != tc.code {
			t.Errorf("%s: LoginSealed = %v (code %s), want %v (%s)", tc.name, err, vcenter.FailureCode(err), tc.want, tc.code)
			continue
		}
		if strings.Contains(err.Error(), sim.Password) {
			t.Errorf("%s: the error holds the password: %v", tc.name, err)
		}
		if tc.want == vcenter.ErrSealed && !strings.Contains(err.Error(), seal.EncodeKey(kp.Public)) {
			t.Errorf("%s: %v does not name the key to seal to", tc.name, err)
		}
	}
}

// TestConfigNeverPrintsPassword prints a Config, as a value, a pointer and
// inside another struct, through fmt, slog's text and JSON handlers and
// encoding/json: the password never shows.
func TestConfigNeverPrintsPassword(t *testing.T) {
	t.Parallel()
	const pw = "Pl41n-vCenter-pw"
	kp, _ := seal.NewKeyPair()
	sealed, _ := seal.Seal(seal.EncodeKey(kp.Public), []byte(pw))
	// The password comes out of the box the way LoginSealed takes it; the
	// login itself fails at once (nothing listens on port 1).
	cfg := vcenter.Config{Host: "127.0.0.1:1", Username: "administrator@vsphere.local", Timeout: 1}
	if _, err := vcenter.LoginSealed(context.Background(), cfg, kp, sealed); err == nil || strings.Contains(err.Error(), pw) {
		t.Fatalf("LoginSealed to a closed port = %v", err)
	}
	var opened vcenter.Config
	if err := json.Unmarshal([]byte(`{"Host":"vc","Password":"`+pw+`"}`), &opened); err != nil || opened.Password.Reveal() != pw {
		t.Fatalf("unmarshal a Config = %v, %v", opened, err)
	}
	wrapped := struct {
		Job string
		VC  vcenter.Config
		Ptr *vcenter.Config
	}{"job-1", opened, &opened}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		out = append(out, fmt.Sprintf(verb, opened), fmt.Sprintf(verb, &opened), fmt.Sprintf(verb, wrapped))
	}
	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var b bytes.Buffer
		slog.New(h(&b)).Info("login", "cfg", opened, "ptr", &opened, "wrapped", wrapped, "password", opened.Password)
		out = append(out, b.String())
	}
	for _, v := range []any{opened, &opened, wrapped} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	for _, s := range out {
		if strings.Contains(s, pw) || strings.Contains(s, fmt.Sprintf("%x", pw)) {
			t.Errorf("the password shows in %s", s)
		}
		if !strings.Contains(s, "REDACTED") {
			t.Errorf("no REDACTED in %s", s)
		}
	}
}
