package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Settings of the pulls of a confined connection (ClientConfig.Confined).
const (
	// pullExpires is how long one pull request waits for a message.
	pullExpires = 30 * time.Second
	// pullHeartbeat is how often the server says a waiting pull is alive;
	// a pull that has said nothing for three of them is asked again.
	pullHeartbeat = 5 * time.Second
	// consumerAckWait is the ack wait of the durables EnsureConsumer makes.
	consumerAckWait = 30 * time.Second
)

// pullRequest is the body of a pull: one message at a time, so nothing
// waits in the client while the handler runs.
type pullRequest struct {
	Batch     int           `json:"batch"`
	Expires   time.Duration `json:"expires"`
	Heartbeat time.Duration `json:"idle_heartbeat"`
}

// pull delivers the messages of the durable consumer of stream to deliver,
// one at a time, until ctx ends. It uses plain pull requests on
// $JS.API.CONSUMER.MSG.NEXT and acks on the messages' reply subjects, the
// only JetStream subjects a VMA's account imports, so it never asks the
// JetStream API anything else (not even the consumer's info, which
// nats.go's consumers ask first).
func (c *Conn) pull(ctx context.Context, stream, durable string, deliver func(jetstream.Msg), log *slog.Logger) error {
	ch := make(chan *nats.Msg, 16)
	// Not NewRespInbox: a pulled message arrives with its stream subject,
	// and one under the request inbox would be taken by nats.go for the
	// answer to the request in flight (see TestPulledMessagesNeverAnswerARequest).
	inbox := c.nc.NewInbox()
	sub, err := c.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return fmt.Errorf("consume %s/%s: %w", stream, durable, err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // best effort on the way out
	body, err := json.Marshal(pullRequest{Batch: 1, Expires: pullExpires, Heartbeat: pullHeartbeat})
	if err != nil {
		return fmt.Errorf("consume %s/%s: %w", stream, durable, err)
	}
	ask := func() {
		if err := c.nc.PublishRequest(pullSubject(stream, durable), inbox, body); err != nil {
			log.Debug("pull", "err", err)
		}
	}
	ask()
	silence := time.NewTimer(3 * pullHeartbeat)
	defer silence.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-silence.C:
			// The pull is lost (a reconnect, an expiry we missed): ask again.
			ask()
		case m := <-ch:
			if status := m.Header.Get("Status"); status != "" && len(m.Data) == 0 {
				switch status {
				case "100": // idle heartbeat: the pull waits
				case "409": // asked again when the silence ends, not at once
					log.Warn("pull refused", "status", status, "description", m.Header.Get("Description"))
				default: // 408 and the like: the pull ended
					ask()
				}
			} else {
				deliver(ackable{m, c.nc})
				ask()
			}
		}
		if !silence.Stop() {
			select {
			case <-silence.C:
			default:
			}
		}
		silence.Reset(3 * pullHeartbeat)
	}
}

// ackable is a pulled message as a jetstream.Msg, acked through its reply
// subject with the nats package's JetStream message methods.
type ackable struct {
	m  *nats.Msg
	nc *nats.Conn
}

var _ jetstream.Msg = ackable{}

func (a ackable) Data() []byte         { return a.m.Data }
func (a ackable) Headers() nats.Header { return a.m.Header }
func (a ackable) Subject() string      { return a.m.Subject }
func (a ackable) Reply() string        { return a.m.Reply }
func (a ackable) Ack() error           { return a.m.Ack() }
func (a ackable) Nak() error           { return a.m.Nak() }
func (a ackable) InProgress() error    { return a.m.InProgress() }
func (a ackable) Term() error          { return a.m.Term() }

func (a ackable) DoubleAck(ctx context.Context) error { return a.m.AckSync(nats.Context(ctx)) }

func (a ackable) NakWithDelay(d time.Duration) error { return a.m.NakWithDelay(d) }

func (a ackable) TermWithReason(reason string) error {
	return a.nc.Publish(a.m.Reply, []byte("+TERM "+reason))
}

func (a ackable) Metadata() (*jetstream.MsgMetadata, error) {
	md, err := a.m.Metadata()
	if err != nil {
		return nil, err
	}
	return &jetstream.MsgMetadata{
		Sequence:     jetstream.SequencePair{Consumer: md.Sequence.Consumer, Stream: md.Sequence.Stream},
		NumDelivered: md.NumDelivered,
		NumPending:   md.NumPending,
		Timestamp:    md.Timestamp,
		Stream:       md.Stream,
		Consumer:     md.Consumer,
		Domain:       md.Domain,
	}, nil
}
