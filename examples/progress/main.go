// Command progress shows how another service follows godwit's replication
// progress: it connects to the OMA's NATS as the read-only observer, subscribes
// to every job's progress events and prints one line per event.
//
// Run it while the OMA runs (make run), with the observer's NKey seed file:
//
//	go run ./examples/progress -nats nats://127.0.0.1:4222 -nkey data/oma/observer.nk
//
// The subscription is a plain core NATS one: it sees the events published from
// now on (the observer may subscribe to godwit.> but may not publish). To replay
// what the PROGRESS stream kept, use JetStream (see the README's nats CLI part).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/godwit/godwit/events"
)

func main() {
	url := flag.String("nats", "nats://127.0.0.1:4222", "the OMA's NATS URL")
	nkey := flag.String("nkey", "data/oma/observer.nk", "the observer's NKey seed file")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *url, *nkey); err != nil {
		fmt.Fprintln(os.Stderr, "progress:", err)
		os.Exit(1)
	}
}

// run prints every progress event until ctx ends.
func run(ctx context.Context, url, seedFile string) error {
	auth, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		return fmt.Errorf("observer key: %w", err)
	}
	// A long-lived subscriber never gives up reconnecting, not even on an
	// authorization error: an OMA that restarts refuses clients until it
	// has loaded its users.
	nc, err := nats.Connect(url, auth, nats.Name("godwit progress example"),
		nats.MaxReconnects(-1), nats.IgnoreAuthErrorAbort(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			fmt.Fprintln(os.Stderr, "progress:", err) // such as a permissions violation
		}))
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	_, err = nc.Subscribe("godwit.progress.>", func(m *nats.Msg) {
		var ev events.Event
		var p events.Progress
		err := json.Unmarshal(m.Data, &ev) // the CloudEvents envelope
		if err == nil {
			err = ev.Decode(&p) // its data, checked to be a progress event
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "progress: %s: %v\n", m.Subject, err)
			return
		}
		fmt.Println(format(p))
	})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	<-ctx.Done()
	return nil
}

// format makes the line printed for p.
func format(p events.Progress) string {
	if p.Phase == events.PhaseVerifying {
		pct := 0.0
		if p.VerifyBytesTotal > 0 {
			pct = float64(1000*p.VerifyBytesDone/p.VerifyBytesTotal) / 10
		}
		return fmt.Sprintf("%s %-12s %5.1f%% %s of %s checked at %s/s", p.JobID, p.Phase, pct,
			iec(p.VerifyBytesDone), iec(p.VerifyBytesTotal), iec(p.VerifyRateBytesPerSecond))
	}
	return fmt.Sprintf("%s %-12s %5.1f%% %s of %s at %s/s", p.JobID, p.Phase, p.Percent,
		iec(p.BytesDone), iec(p.BytesTotal), iec(p.RateBytesPerSecond))
}

// iec writes n bytes in binary units: 512 B, 1.5 KiB, 40.0 GiB.
func iec(n int64) string {
	f, u := float64(n), 0
	for ; f >= 1024 && u < 6; u++ {
		f /= 1024
	}
	if u == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTPE"[u-1])
}
