package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"

	"github.com/godwit/godwit/oma/tokens"
)

// cookieName is the session cookie's name.
const cookieName = "godwit_session"

// session is a signed-in browser. The API token it signed in with stays
// in the OMA's memory, never in the cookie, a page or a log: the console
// sends it to the API on the browser's behalf, so a token revoked ends its
// sessions at their next request.
type session struct {
	id    string
	token string
	name  string
	scope tokens.Scope
	// csrf is the token every form of the session carries.
	csrf    string
	created time.Time

	mu   sync.Mutex
	seen time.Time
}

// canOperate says the token may change things (scope operate or admin).
func (s *session) canOperate() bool { return s.scope.Allows(tokens.Operate) }

// sessions holds the signed-in sessions, in memory: an OMA restart signs
// everyone out.
type sessions struct {
	idle, max time.Duration
	now       func() time.Time

	mu   sync.Mutex
	byID map[string]*session
}

func newSessions(idle, max time.Duration, now func() time.Time) *sessions {
	return &sessions{idle: idle, max: max, now: now, byID: map[string]*session{}}
}

// randomID is 32 random bytes, base64url.
func randomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// start makes a session for a valid token.
func (ss *sessions) start(token, name string, scope tokens.Scope) *session {
	now := ss.now()
	s := &session{id: randomID(), token: token, name: name, scope: scope, csrf: randomID(), created: now, seen: now}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id, old := range ss.byID { // forget the expired ones as new ones come
		if ss.expired(old, now) {
			delete(ss.byID, id)
		}
	}
	ss.byID[s.id] = s
	return s
}

// expired reports whether s is past its idle or absolute limit.
func (ss *sessions) expired(s *session, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return now.Sub(s.seen) > ss.idle || now.Sub(s.created) > ss.max
}

// of returns r's session, nil when it has none or it expired; a session
// found counts as used now.
func (ss *sessions) of(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	ss.mu.Lock()
	s := ss.byID[c.Value]
	ss.mu.Unlock()
	if s == nil {
		return nil
	}
	now := ss.now()
	if ss.expired(s, now) {
		ss.end(s)
		return nil
	}
	s.mu.Lock()
	s.seen = now
	s.mu.Unlock()
	return s
}

// end forgets s.
func (ss *sessions) end(s *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.byID, s.id)
}

// cookie is the session cookie of s for r: HttpOnly, SameSite=Strict,
// Secure when r came over TLS, for the session's absolute lifetime.
func (ss *sessions) cookie(r *http.Request, s *session) *http.Cookie {
	return &http.Cookie{Name: cookieName, Value: s.id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, MaxAge: int(ss.max.Seconds())}
}

// cleared is the cookie that signs a browser out.
func cleared(r *http.Request) *http.Cookie {
	return &http.Cookie{Name: cookieName, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: -1}
}

// validCSRF reports whether a form's csrf field is s's.
func (s *session) validCSRF(r *http.Request) bool {
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}
