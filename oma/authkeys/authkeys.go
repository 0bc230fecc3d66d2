package authkeys

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// FirstAPIPort is the OMA port the first VMA's API is reached at (the OMA
// holds it and forwards into the VMA's tunnel); the next VMAs get the ports
// after it.
const FirstAPIPort = 9081

// MinRSABits is the smallest RSA key accepted.
const MinRSABits = 3072

// Forwards is what a VMA may reach through its SSH connection. The zero
// value of each field means the OMA's default.
type Forwards struct {
	// NATS is the NATS address on the OMA; empty means 127.0.0.1:4222.
	// An unspecified host (0.0.0.0, ::, none) means 127.0.0.1. On a
	// cluster, every node's address, comma-separated: the VMA may use any.
	NATS string
	// NBDHost is the host VMAs are told to reach exports at; empty or
	// unspecified means 127.0.0.1.
	NBDHost string
	// FirstPort and LastPort bound the NBD port pool; zero means 10100-10199.
	FirstPort, LastPort int
}

// PublicKey parses one public key in authorized_keys form ("ssh-ed25519
// AAAA... comment") and returns it without its comment. Only ed25519 keys
// and RSA keys of MinRSABits or more are accepted; options, certificates
// and several keys are refused.
func PublicKey(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("no key given: want one line such as \"ssh-ed25519 AAAA... comment\"")
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", errors.New("want one key on one line")
	}
	key, _, options, rest, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return "", fmt.Errorf("not an SSH public key (want \"ssh-ed25519 AAAA... comment\"): %w", err)
	}
	if len(options) > 0 || len(rest) > 0 {
		return "", errors.New("want the bare public key, without authorized_keys options")
	}
	switch key.Type() {
	case ssh.KeyAlgoED25519:
	case ssh.KeyAlgoRSA:
		ck, ok := key.(ssh.CryptoPublicKey)
		if !ok {
			return "", errors.New("unreadable RSA key")
		}
		rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
		if !ok {
			return "", errors.New("unreadable RSA key")
		}
		if bits := rk.N.BitLen(); bits < MinRSABits {
			return "", fmt.Errorf("RSA key of %d bits: want %d or more, or an ed25519 key", bits, MinRSABits)
		}
	default:
		return "", fmt.Errorf("key type %s: want ssh-ed25519 or ssh-rsa (%d bits or more)", key.Type(), MinRSABits)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))), nil
}

// Line returns the authorized_keys line of a VMA: key (as PublicKey
// returns it) restricted to port forwarding, to the NATS address and every
// NBD pool port (permitopen). It names no TCP port to listen on: the VMA's
// one remote forward is its API on a Unix socket (OpenSSH has no
// permitlisten for those; the OMA checks the VMA's key on the socket, and
// sshd's PermitListen none refuses TCP ones, see scripts/sshd-godwit.conf).
// The comment is godwit-vma-<id>. Its command="/bin/false" is what runs
// for the one session command the VMA asks for per connection (to make an
// OpenSSH sshd before 10.1 set TCP_NODELAY; see vma/tunnel's noDelay).
func Line(fw Forwards, key, id string) (string, error) {
	pub, err := PublicKey(key)
	if err != nil {
		return "", fmt.Errorf("vma %s: %w", id, err)
	}
	type hp struct {
		host string
		port int
	}
	var nats []hp
	for _, addr := range strings.Split(fw.NATS, ",") {
		host, port, err := hostPort(strings.TrimSpace(addr), "127.0.0.1:4222")
		if err != nil {
			return "", fmt.Errorf("nats address: %w", err)
		}
		nats = append(nats, hp{host, port})
	}
	first, last := fw.FirstPort, fw.LastPort
	if first == 0 && last == 0 {
		first, last = 10100, 10199
	}
	if first < 1 || last > 65535 || first > last {
		return "", fmt.Errorf("nbd port pool %d-%d: want 1 <= first <= last <= 65535", first, last)
	}
	nbdHost := loopback(fw.NBDHost)
	var b strings.Builder
	b.WriteString(`restrict,command="/bin/false",port-forwarding`)
	permit := func(opt, host string, port int) {
		fmt.Fprintf(&b, ",%s=%q", opt, net.JoinHostPort(host, strconv.Itoa(port)))
	}
	for _, n := range nats {
		permit("permitopen", n.host, n.port)
	}
	for p := first; p <= last; p++ {
		permit("permitopen", nbdHost, p)
	}
	b.WriteString(" " + pub + " godwit-vma-" + id)
	return b.String(), nil
}

// hostPort splits addr (def when empty) into a host the VMA dials through
// its tunnel and a port.
func hostPort(addr, def string) (string, int, error) {
	if addr == "" {
		addr = def
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("%q: port %q: want 1-65535", addr, port)
	}
	return loopback(host), p, nil
}

// loopback returns host, or 127.0.0.1 when host is empty or unspecified
// (the OMA listens everywhere: the VMA dials its loopback).
func loopback(host string) string {
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return "127.0.0.1"
	}
	return host
}
