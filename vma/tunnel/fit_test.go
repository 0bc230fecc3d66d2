package tunnel_test

import (
	"github.com/godwit/godwit/vma/nbd"
	"github.com/godwit/godwit/vma/tunnel"
	"github.com/nats-io/nats.go"
)

// The tunnel plugs into nats.go and the NBD client as they are.
var (
	_ nats.CustomDialer = tunnel.Dialer{}
	_                   = nbd.Config{Dial: (*tunnel.Tunnel)(nil).DialContext}
)
