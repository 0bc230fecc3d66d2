package tunnel

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"slices"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeyCheck returns the callback that checks the OMA's host key against cfg.KnownHosts, and
// the host key algorithms to ask for: those of the keys known_hosts holds for cfg.Addr, so a
// server with several host keys offers the one we know.
func hostKeyCheck(cfg Config) (ssh.HostKeyCallback, []string, error) {
	if cfg.InsecureIgnoreHostKey {
		return ssh.InsecureIgnoreHostKey(), nil, nil
	}
	check, err := knownhosts.New(cfg.KnownHosts)
	if err != nil {
		return nil, nil, fmt.Errorf("read known_hosts: %w", err)
	}
	callback := func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := check(host, remote, key)
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			return &HostKeyError{Addr: host, KnownHosts: cfg.KnownHosts, Fingerprint: ssh.FingerprintSHA256(key),
				Type: key.Type(), Unknown: len(ke.Want) == 0}
		}
		if err != nil {
			return fmt.Errorf("check host key of %s against %s: %w", host, cfg.KnownHosts, err)
		}
		return nil
	}
	var algos []string // those known for any of the OMAs
	for _, addr := range append([]string{cfg.Addr}, cfg.Alternates...) {
		for _, a := range knownAlgorithms(check, addr) {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	return callback, algos, nil
}

// knownAlgorithms asks check about a throwaway key to learn which key types known_hosts holds
// for addr; nil lets the library choose.
func knownAlgorithms(check ssh.HostKeyCallback, addr string) []string {
	probe, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		return nil
	}
	tcp := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	var ke *knownhosts.KeyError
	if !errors.As(check(addr, tcp, probe), &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, k := range ke.Want {
		t := k.Key.Type()
		names := []string{t}
		if t == ssh.KeyAlgoRSA {
			names = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		}
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				algos = append(algos, n)
			}
		}
	}
	return algos
}
