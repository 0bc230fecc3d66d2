// Package httpserver serves an HTTP handler the way both appliances do:
// with an access log (method, path, status, duration and the token's name;
// never bodies or headers, which may hold tokens and passwords), timeouts
// for slow and idle clients (headers, bodies, idle keep-alives), a cap on
// connections, optional TLS, and a graceful shutdown that drains requests
// when the context ends. Guard and BearerToken are the request checks both
// APIs share.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// DrainTimeout bounds how long Serve waits for requests in flight.
const DrainTimeout = 10 * time.Second

// DefaultIdleTimeout is how long a keep-alive connection may stay idle
// when Config.IdleTimeout is zero.
const DefaultIdleTimeout = 120 * time.Second

// Config configures Serve. Its zero value serves plain HTTP with the
// default timeouts and no access log.
type Config struct {
	// Logger receives the access log; nil logs nothing.
	Logger *slog.Logger
	// IdleTimeout closes keep-alive connections idle this long; 0 means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// BodyTimeout is how long a request body may take to arrive after its
	// headers; 0 means DefaultBodyTimeout. A body still arriving then is
	// cut (ErrBodyTimeout) and the connection closed.
	BodyTimeout time.Duration
	// MaxConns caps the connections held at once; one more is answered
	// 503 and closed. 0 means DefaultMaxConns.
	MaxConns int
	// TLSCertFile and TLSKeyFile, both set, serve HTTPS with this PEM
	// certificate (chain) and key; both empty serve plain HTTP.
	TLSCertFile, TLSKeyFile string
}

// Validate reports a configuration Serve would refuse.
func (c Config) Validate() error {
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("TLS needs both a certificate file and a key file, or neither")
	}
	if c.IdleTimeout < 0 {
		return fmt.Errorf("idle timeout %s is negative", c.IdleTimeout)
	}
	if c.BodyTimeout < 0 {
		return fmt.Errorf("body timeout %s is negative", c.BodyTimeout)
	}
	if c.MaxConns < 0 {
		return fmt.Errorf("max connections %d is negative", c.MaxConns)
	}
	return nil
}

// Serve serves h on l until ctx ends, then drains requests for up to
// DrainTimeout. It returns nil after a clean shutdown, and an error when
// cfg is invalid, the TLS certificate or key cannot be loaded, or l fails.
func Serve(ctx context.Context, l net.Listener, h http.Handler, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("serve http: %w", err)
	}
	idle := cfg.IdleTimeout
	if idle == 0 {
		idle = DefaultIdleTimeout
	}
	body := cfg.BodyTimeout
	if body == 0 {
		body = DefaultBodyTimeout
	}
	maxConns := cfg.MaxConns
	if maxConns == 0 {
		maxConns = DefaultMaxConns
	}
	l = newLimitListener(l, maxConns, cfg.TLSCertFile == "", cfg.Logger)
	srv := &http.Server{
		Handler:           limitBody(body, LogRequests(cfg.Logger, h)),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       idle,
	}
	if cfg.Logger != nil { // TLS handshake and other connection errors
		srv.ErrorLog = slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)
	}
	errc := make(chan error, 1)
	go func() {
		if cfg.TLSCertFile != "" {
			errc <- srv.ServeTLS(l, cfg.TLSCertFile, cfg.TLSKeyFile)
			return
		}
		errc <- srv.Serve(l)
	}()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve http on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), DrainTimeout)
	defer cancel()
	return srv.Shutdown(sctx)
}

// statusRecorder remembers the status written.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// tokenKey is the context key of the slot SetToken fills.
type tokenKey struct{}

// SetToken records the name of the token that authenticated r, for the
// access log's "token" attribute. It does nothing outside LogRequests.
func SetToken(r *http.Request, name string) {
	if slot, ok := r.Context().Value(tokenKey{}).(*string); ok {
		*slot = name
	}
}

// LogRequests logs each request's method, path, status, duration and, when
// a handler called SetToken, the token's name.
func LogRequests(log *slog.Logger, next http.Handler) http.Handler {
	if log == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		token := new(string)
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), tokenKey{}, token)))
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", rec.status, "took", time.Since(start)}
		if *token != "" {
			attrs = append(attrs, "token", *token)
		}
		log.InfoContext(r.Context(), "http", attrs...)
	})
}
