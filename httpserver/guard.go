package httpserver

import (
	"mime"
	"net"
	"net/http"
	"strings"

	"github.com/godwit/godwit/problem"
)

// Guard refuses what a browser on another site could send, and bodies
// that are not JSON, before next sees the request:
//
//   - a request whose Origin header is neither the API's own origin
//     (scheme://Host of the request) nor one of allowOrigins, or that has
//     no Origin but Sec-Fetch-Site: cross-site, gets 403;
//   - a request with a body whose Content-Type is not JSON
//     (application/json, application/*+json, charset utf-8 if any) gets
//     415, so an HTML form can never post to the API;
//   - every body is bounded to problem.MaxBody bytes, whoever reads it.
//
// A request that came in on a loopback address must also name a loopback
// host (localhost, 127.0.0.1, [::1]) in its Host header, or it gets 403: a
// web page whose own name an attacker re-points at 127.0.0.1 (DNS
// rebinding) is same-origin to itself, so only the Host it sends gives it
// away.
//
// An allowed origin gets the CORS headers it needs, and its preflight
// (OPTIONS) is answered with 204. Origins compare without case and
// without a trailing slash. Answers are problem+json naming the header.
func Guard(allowOrigins []string, next http.Handler) http.Handler {
	return guard(allowOrigins, problem.IsJSON, "application/json", next)
}

// GuardForms is Guard for the pages of a web console: the same origin and
// host rules, but the bodies it lets through are HTML forms
// (application/x-www-form-urlencoded), which a page of another origin
// cannot send here with its Origin; the console adds a CSRF token of its
// own besides.
func GuardForms(allowOrigins []string, next http.Handler) http.Handler {
	return guard(allowOrigins, isForm, "application/x-www-form-urlencoded", next)
}

// isForm reports whether a Content-Type is an HTML form's.
func isForm(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// guard is Guard with the bodies it takes: those whose Content-Type
// bodyOK accepts (want names them in the refusal).
func guard(allowOrigins []string, bodyOK func(string) bool, want string, next http.Handler) http.Handler {
	allowed := map[string]bool{}
	for _, o := range allowOrigins {
		if o = normalizeOrigin(o); o != "" {
			allowed[o] = true
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && isLoopback(la) && !loopbackHost(r.Host) {
			problem.Write(w, http.StatusForbidden, "Host", "request for host "+r.Host+" on a loopback address refused (DNS rebinding?): use localhost or 127.0.0.1")
			return
		}
		origin := r.Header.Get("Origin")
		if origin != "" {
			o := normalizeOrigin(origin)
			switch {
			case o == ownOrigin(r):
			case allowed[o]:
				h := w.Header()
				h.Set("Access-Control-Allow-Origin", origin)
				h.Add("Vary", "Origin")
				if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
					h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
					h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
					h.Set("Access-Control-Max-Age", "600")
					w.WriteHeader(http.StatusNoContent)
					return
				}
			default:
				problem.Write(w, http.StatusForbidden, "Origin", "cross-origin request from "+origin+" refused: not this API's origin nor an allowed one (-api-allow-origin)")
				return
			}
		} else if strings.EqualFold(r.Header.Get("Sec-Fetch-Site"), "cross-site") {
			problem.Write(w, http.StatusForbidden, "Sec-Fetch-Site", "cross-site request refused")
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, problem.MaxBody)
		}
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			if ct := r.Header.Get("Content-Type"); !bodyOK(ct) {
				detail := "a request body needs Content-Type: " + want
				if ct != "" {
					detail = "Content-Type " + ct + " refused: send " + want
				}
				problem.Write(w, http.StatusUnsupportedMediaType, "Content-Type", detail)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// isLoopback reports whether a is a loopback TCP address.
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// loopbackHost reports whether the host of a Host header (with or without
// a port) names this machine's loopback.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ownOrigin is the origin a browser gives a page served by this request's
// host: scheme://host[:port], lower case.
func ownOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return strings.ToLower(scheme + "://" + r.Host)
}

func normalizeOrigin(o string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(o), "/"))
}

// BearerToken returns the token of an Authorization: Bearer header. The
// scheme matches without case (RFC 7235), and surrounding spaces are
// dropped; ok is false when there is no bearer token.
func BearerToken(r *http.Request) (token string, ok bool) {
	scheme, rest, found := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(rest)
	return token, token != ""
}
