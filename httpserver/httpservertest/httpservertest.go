// Package httpservertest holds what tests of an HTTP server share: a
// self-signed certificate for TLS on loopback, and a client that trickles
// its body over a real TCP connection. It uses the standard library only.
package httpservertest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// SelfSigned writes a self-signed certificate for 127.0.0.1, valid for an
// hour either side of now, to certFile and its key to keyFile, and returns
// a pool that trusts it.
func SelfSigned(tb testing.TB, certFile, keyFile string) *x509.CertPool {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "godwit test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// Trickle writes body to c one byte every interval until it is written or
// a write fails. The channel it returns gets how many bytes were written.
func Trickle(c net.Conn, body string, interval time.Duration) <-chan int {
	sent := make(chan int, 1)
	go func() {
		n := 0
		for ; n < len(body); n++ {
			if _, err := c.Write([]byte{body[n]}); err != nil {
				break
			}
			time.Sleep(interval)
		}
		sent <- n
	}()
	return sent
}

// ReadAnswer reads one response from br, reading c, and its body, and then
// expects the server to close the connection: the test fails unless the
// next read is EOF or a reset (the server closed with the client's latest
// bytes unread). It fails the test when no answer came within a minute.
func ReadAnswer(tb testing.TB, c net.Conn, br *bufio.Reader) *http.Response {
	tb.Helper()
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatalf("read the answer: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		tb.Errorf("after a %d: read = %v, want EOF or a reset (the server closes)", resp.StatusCode, err)
	}
	return resp
}

// PostTrickled sends a POST of a JSON body to path on the server at addr
// over a TCP connection of its own, with header (whole lines, each ending
// in "\r\n", or "") after Host, Content-Type and Content-Length. The head
// goes at once, the body one byte every interval. It returns the answer
// (read by ReadAnswer: the test fails unless the server closes the
// connection after it) and a channel that gets how many bytes of the body
// were written. The connection is closed when the test ends.
func PostTrickled(tb testing.TB, addr, path, header, body string, interval time.Duration) (*http.Response, <-chan int) {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	_, _ = io.WriteString(c, "POST "+path+" HTTP/1.1\r\nHost: localhost\r\n"+header+
		"Content-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n")
	sent := Trickle(c, body, interval)
	return ReadAnswer(tb, c, bufio.NewReader(c)), sent
}
