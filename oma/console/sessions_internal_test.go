package console

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/godwit/godwit/oma/tokens"
)

// TestSessionsExpire: a session ends after SessionIdle unused, however
// often it was used before, and after SessionMax, however busy; its cookie
// is HttpOnly, SameSite=Strict, Secure over TLS, and never the token.
func TestSessionsExpire(t *testing.T) {
	now := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	ss := newSessions(time.Hour, 12*time.Hour, func() time.Time { return now })
	s := ss.start("the-token", "ops", tokens.Read)
	req := httptest.NewRequest(http.MethodGet, "https://oma.example/", nil)
	c := ss.cookie(req, s)
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || !c.Secure || c.Value == "the-token" || c.Value != s.id {
		t.Fatalf("cookie = %+v", c)
	}
	req.AddCookie(c)
	for range 11 { // used every 59 minutes: alive for 11 hours
		now = now.Add(59 * time.Minute)
		if ss.of(req) == nil {
			t.Fatalf("the session ended at %s, used every 59 minutes", now)
		}
	}
	now = now.Add(90 * time.Minute) // past 12 hours since it began
	if ss.of(req) != nil {
		t.Fatal("the session outlived SessionMax")
	}
	s = ss.start("the-token", "ops", tokens.Read)
	req = httptest.NewRequest(http.MethodGet, "http://localhost/", nil)
	if c := ss.cookie(req, s); c.Secure {
		t.Error("a cookie over plain HTTP is Secure: the browser would not send it back")
	}
	req.AddCookie(ss.cookie(req, s))
	now = now.Add(61 * time.Minute)
	if ss.of(req) != nil {
		t.Fatal("the session outlived SessionIdle unused")
	}
}
