package vcenter

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"fmt"
	"net"
)

// Thumbprint returns the SHA-1 fingerprint of the certificate vCenter
// presents, as VDDK wants it ("AB:CD:..."), read over a TLS connection
// with the session's own trust (its CA file and the request's pin, or none
// when insecure).
func (s *Session) Thumbprint(ctx context.Context) (string, error) {
	u := s.Client.URL()
	host := u.Host
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "443")
	}
	cfg := s.Client.DefaultTransport().TLSClientConfig.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return "", fmt.Errorf("%w: certificate of %s: %v", ErrUnreachable, host, err)
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", fmt.Errorf("%w: %s presented no certificate", ErrUnreachable, host)
	}
	sum := sha1.Sum(certs[0].Raw)
	return hexPairs(sum[:]), nil
}
