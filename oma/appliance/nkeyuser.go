package appliance

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/nats-io/nkeys"
)

// nkeyUser is an NKey user whose seed lives in a 0600 file.
type nkeyUser struct {
	path      string
	publicKey string
}

// loadOrCreateUser reads the NKey user seed in path, creating it (mode
// 0600) on first start, so the observer keeps its identity across restarts.
func loadOrCreateUser(path string) (nkeyUser, error) {
	seed, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return nkeyUser{}, fmt.Errorf("create nkey %s: %w", path, err)
		}
		if seed, err = kp.Seed(); err != nil {
			return nkeyUser{}, fmt.Errorf("create nkey %s: %w", path, err)
		}
		if err := os.WriteFile(path, seed, 0o600); err != nil {
			return nkeyUser{}, fmt.Errorf("write nkey %s: %w", path, err)
		}
	} else if err != nil {
		return nkeyUser{}, fmt.Errorf("read nkey %s: %w", path, err)
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		return nkeyUser{}, fmt.Errorf("read nkey %s: %w", path, err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nkeyUser{}, fmt.Errorf("read nkey %s: %w", path, err)
	}
	return nkeyUser{path: path, publicKey: pub}, nil
}
