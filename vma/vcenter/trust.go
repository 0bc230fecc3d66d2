package vcenter

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// trust makes tc, the TLS config of a login's connections, trust what cfg
// says. cfg.CAFile, loaded by setRootCAs (the soap client's SetRootCAs),
// replaces the system's roots as before; cfg.CAPEM adds its certificates
// to those, in memory only; cfg.Thumbprint accepts only a certificate with
// that fingerprint, whatever its chain, even when cfg.Insecure. Errors
// wrap ErrTrust for a CAPEM or Thumbprint that cannot be used.
//
// govmomi's own soap.Client.SetThumbprint is not used: it takes SHA-1 and
// SHA-256 but checks the thumbprint only when the usual verification
// fails, so a certificate the CA file trusts would pass any pin.
func (cfg Config) trust(tc *tls.Config, setRootCAs func(file string) error) error {
	if cfg.CAPEM != "" && cfg.Thumbprint != "" {
		return fmt.Errorf("%w: give a CA certificate or a thumbprint, not both", ErrTrust)
	}
	var want []byte
	if cfg.Thumbprint != "" {
		var err error
		if want, err = parseThumbprint(cfg.Thumbprint); err != nil {
			return err
		}
	}
	if cfg.CAFile != "" {
		if err := setRootCAs(cfg.CAFile); err != nil {
			return fmt.Errorf("vCenter CA file %s: %w", cfg.CAFile, err)
		}
	}
	if cfg.CAPEM != "" {
		pool := tc.RootCAs
		if pool == nil {
			sys, err := x509.SystemCertPool()
			if err != nil {
				sys = x509.NewCertPool()
			}
			pool = sys
		} else {
			pool = pool.Clone()
		}
		if !pool.AppendCertsFromPEM([]byte(cfg.CAPEM)) {
			return fmt.Errorf("%w: the CA PEM holds no certificate", ErrTrust)
		}
		tc.RootCAs = pool
	}
	if want != nil {
		// The pin stands for the chain: the certificate is vCenter's own,
		// whoever signed it, so the usual verification is skipped and
		// VerifyConnection, which runs regardless, checks the fingerprint.
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("vCenter presented no certificate to check against the pinned thumbprint")
			}
			got := fingerprint(cs.PeerCertificates[0].Raw, len(want))
			if !bytes.Equal(got, want) {
				return fmt.Errorf("vCenter's certificate has the %s fingerprint %s, not the pinned %s",
					algorithm(len(want)), hexPairs(got), hexPairs(want))
			}
			return nil
		}
	}
	return nil
}

// parseThumbprint decodes a fingerprint given as colon-separated hex pairs,
// 20 (SHA-1) or 32 (SHA-256) of them, in either case. Errors wrap ErrTrust.
func parseThumbprint(s string) ([]byte, error) {
	pairs := strings.Split(s, ":")
	b := make([]byte, 0, len(pairs))
	for _, p := range pairs {
		v, err := hex.DecodeString(p)
		if len(p) != 2 || err != nil {
			return nil, fmt.Errorf("%w: thumbprint %q: want the certificate's SHA-1 or SHA-256 as hex pairs separated by colons", ErrTrust, s)
		}
		b = append(b, v...)
	}
	if len(b) != sha1.Size && len(b) != sha256.Size {
		return nil, fmt.Errorf("%w: thumbprint %q has %d bytes: want 20 (SHA-1) or 32 (SHA-256)", ErrTrust, s, len(b))
	}
	return b, nil
}

// fingerprint is the SHA-1 (size 20) or SHA-256 digest of der.
func fingerprint(der []byte, size int) []byte {
	if size == sha1.Size {
		sum := sha1.Sum(der)
		return sum[:]
	}
	sum := sha256.Sum256(der)
	return sum[:]
}

func algorithm(size int) string {
	if size == sha1.Size {
		return "SHA-1"
	}
	return "SHA-256"
}

// hexPairs writes b as upper-case hex pairs separated by colons.
func hexPairs(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, ":")
}
