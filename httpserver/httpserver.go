// Package httpserver serves an HTTP handler the way both appliances do:
// with an access log (method, path, status, duration; never bodies or
// headers, which may hold tokens and passwords), timeouts for slow and
// idle clients, optional TLS, and a graceful shutdown that drains requests
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
	srv := &http.Server{
		Handler:           LogRequests(cfg.Logger, h),
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

// LogRequests logs each request's method, path, status and duration.
func LogRequests(log *slog.Logger, next http.Handler) http.Handler {
	if log == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		log.InfoContext(r.Context(), "http", "method", r.Method, "path", r.URL.Path, "status", rec.status, "took", time.Since(start))
	})
}
