package tunnel

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// proofMagic opens the challenge the OMA sends on every connection it makes to a VMA's API
// socket, and the data the VMA signs; nothing else is signed with it.
const proofMagic = "godwit-tunnel-proof-v1\n"

// nonceSize is the size of the challenge's random part.
const nonceSize = 32

// maxSignature bounds the answer's length: an RSA-8192 signature fits many times over.
const maxSignature = 4096

// proofTimeout bounds the VMA's half of the identity check.
const proofTimeout = 30 * time.Second

// Verify is the OMA's half of the identity check made on each new connection to a VMA's API
// socket, before any request is sent on it: it sends a fresh random challenge and checks the
// answer is signed by key, the VMA's SSH public key as registered. All VMAs log in as one user
// on the OMA, so any of them could bind another's socket path while that one is down; Verify
// is what tells them apart. It fails with an error wrapping ErrNotVMA when the answer is not
// key's signature, and with the I/O error when the peer closes or ctx ends first. conn's
// deadlines are set from ctx and cleared again when it succeeds.
func Verify(ctx context.Context, conn net.Conn, key ssh.PublicKey) error {
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("tunnel proof: nonce: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	challenge := append([]byte(proofMagic), nonce...)
	if _, err := conn.Write(challenge); err != nil {
		return fmt.Errorf("tunnel proof: send challenge: %w", ctxErr(ctx, err))
	}
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return fmt.Errorf("tunnel proof: read answer: %w", ctxErr(ctx, err))
	}
	n := binary.BigEndian.Uint32(size[:])
	if n == 0 || n > maxSignature {
		return fmt.Errorf("%w: answer of %d bytes", ErrNotVMA, n)
	}
	blob := make([]byte, n)
	if _, err := io.ReadFull(conn, blob); err != nil {
		return fmt.Errorf("tunnel proof: read answer: %w", ctxErr(ctx, err))
	}
	var sig ssh.Signature
	if err := ssh.Unmarshal(blob, &sig); err != nil {
		return fmt.Errorf("%w: answer is no SSH signature: %v", ErrNotVMA, err)
	}
	if err := key.Verify(challenge, &sig); err != nil {
		return fmt.Errorf("%w: not signed by %s: %v", ErrNotVMA, ssh.FingerprintSHA256(key), err)
	}
	if !stop() {
		return fmt.Errorf("tunnel proof: %w", ctx.Err())
	}
	return conn.SetDeadline(time.Time{})
}

// ctxErr returns ctx's error in place of err once ctx has ended (the deadline Verify set is
// how it was cut short).
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// prove is the VMA's half of the identity check: it reads the OMA's challenge from conn and
// answers with its signature by signer. It fails if the challenge does not come within
// timeout or is not one.
func prove(conn net.Conn, signer ssh.Signer, timeout time.Duration) error {
	conn.SetDeadline(time.Now().Add(timeout))
	challenge := make([]byte, len(proofMagic)+nonceSize)
	if _, err := io.ReadFull(conn, challenge); err != nil {
		return fmt.Errorf("tunnel proof: read challenge: %w", err)
	}
	if string(challenge[:len(proofMagic)]) != proofMagic {
		return errors.New("tunnel proof: not a challenge")
	}
	var sig *ssh.Signature
	var err error
	if as, ok := signer.(ssh.AlgorithmSigner); ok && signer.PublicKey().Type() == ssh.KeyAlgoRSA {
		sig, err = as.SignWithAlgorithm(rand.Reader, challenge, ssh.KeyAlgoRSASHA256)
	} else {
		sig, err = signer.Sign(rand.Reader, challenge)
	}
	if err != nil {
		return fmt.Errorf("tunnel proof: sign: %w", err)
	}
	blob := ssh.Marshal(sig)
	answer := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(blob)), uint32(len(blob)))
	if _, err := conn.Write(append(answer, blob...)); err != nil {
		return fmt.Errorf("tunnel proof: answer: %w", err)
	}
	return conn.SetDeadline(time.Time{})
}

// RemoveStale removes the Unix socket at path if nothing listens on it any more, and reports
// whether it did. The OMA's sshd leaves a VMA's socket behind when the VMA's session ends, and
// refuses to bind a path that exists (StreamLocalBindUnlink no, so that one VMA cannot replace
// another's live socket): the socket's owner removes stale ones so that the VMA's next forward
// can be made. Only a socket file that refuses connections twice, settle apart, counts as
// stale: while the file exists nobody else can bind there, and a live one refuses only in the
// instant between sshd's bind and listen. A missing file is not an error.
func RemoveStale(ctx context.Context, path string, settle time.Duration) (bool, error) {
	first, err := refusing(ctx, path)
	if first == nil || err != nil {
		return false, err
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return false, nil
	}
	again, err := refusing(ctx, path)
	if again == nil || err != nil || !os.SameFile(first, again) {
		return false, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return true, nil
}

// refusing returns the file at path if it is a Unix socket that refuses connections, else nil.
func refusing(ctx context.Context, path string) (os.FileInfo, error) {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != os.ModeSocket {
		return nil, nil
	}
	c, err := (&net.Dialer{}).DialContext(ctx, "unix", path)
	if err == nil {
		c.Close()
		return nil, nil
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return nil, nil
	}
	return fi, nil
}
