package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/godwit/godwit/oma/appliance"
)

// clusterKeys implements `oma cluster-keys -dir DIR`: the keys a new
// cluster's nodes and OMAs share, made once.
func clusterKeys(args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := newFlagSet("oma cluster-keys", &cfg, stderr)
	dir := fs.String("dir", "", "directory to make the keys in (required; mode 0700); copy it to every machine of the cluster")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("cluster-keys: -dir is required")
	}
	k, err := appliance.CreateClusterKeys(*dir)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "made the cluster's keys in %s: give every node and OMA -cluster-keys %s\n", k.Dir, k.Dir)
	return err
}

// node implements `oma node`: a NATS node of an OMA cluster and nothing
// else, until ctx ends.
func node(ctx context.Context, args []string, stderr io.Writer) error {
	var cfg config
	fs := newFlagSet("oma node", &cfg, stderr)
	fs.StringVar(&cfg.natsAddr, "nats-addr", "127.0.0.1:4222", "NATS listen address")
	fs.IntVar(&cfg.natsMonitorPort, "nats-monitor-port", 0, "NATS HTTP monitoring port on the NATS host; 0 turns it off")
	declareClusterFlags(fs, &cfg.cluster)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := cfg.cluster.check(); err != nil {
		return err
	}
	if cfg.cluster.name == "" || cfg.cluster.keysDir == "" {
		return errors.New("node: -cluster-name, -cluster-listen, -routes, -server-name and -cluster-keys are required")
	}
	return appliance.RunNode(ctx, appliance.NodeConfig{DataDir: cfg.dataDir, NATSAddr: cfg.natsAddr, MonitorPort: cfg.natsMonitorPort,
		Name: cfg.cluster.serverName, Cluster: cfg.cluster.bus(), KeysDir: cfg.cluster.keysDir,
		Logger: slog.New(slog.NewTextHandler(stderr, nil))})
}
