package appliance

import (
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/godwit/godwit/problem"
	"github.com/godwit/godwit/vma/tunnel"
)

// swapHandler serves with whichever handler was set last.
type swapHandler struct{ h atomic.Pointer[http.Handler] }

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// starting is the API while the VMA connects to the OMA's bus: 503 to
// everything, health saying what the VMA waits for and, when showTunnel
// (no API token is configured, as the full health would show it), how its
// tunnel fares. After a bus connection was lost for good, lost says so and
// health's status is reconnecting.
func starting(vmaID, natsURL string, tn *tunnel.Tunnel, showTunnel bool, lost error) http.Handler {
	status := "starting"
	wait := fmt.Sprintf("the VMA is starting: connecting to the OMA's bus at %s", natsURL)
	if lost != nil {
		status = "reconnecting"
		wait = fmt.Sprintf("the VMA is reconnecting to the OMA's bus at %s: %v", natsURL, lost)
	}
	if tn != nil {
		wait += " through its SSH tunnel"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/health" {
			w.Header().Set("Retry-After", "5")
			problem.Write(w, http.StatusServiceUnavailable, "", wait+"; try again shortly")
			return
		}
		h := map[string]any{"status": status, "vma_id": vmaID, "version": Version, "detail": wait}
		if tn != nil && showTunnel {
			ts := tn.State()
			h["tunnel"] = map[string]any{"connected": ts.Connected, "forwarding": ts.Forwarding, "since": ts.Since,
				"reconnects": ts.Reconnects, "last_error": ts.LastError, "rtt_ms": float64(ts.RTT.Microseconds()) / 1000,
				"min_rtt_ms": float64(ts.MinRTT.Microseconds()) / 1000, "no_delay": ts.NoDelay}
		}
		_ = problem.WriteJSON(w, http.StatusServiceUnavailable, h)
	})
}
