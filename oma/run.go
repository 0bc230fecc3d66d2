package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/godwit/godwit/oma/appliance"
)

// run runs the OMA with the flags in args until ctx ends.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	var cfg config
	fs := newFlagSet("oma", &cfg, stderr)
	declareRunFlags(fs, &cfg)
	if err := parse(fs, args); err != nil {
		return err
	}
	ac, err := cfg.appliance()
	if err != nil {
		return err
	}
	ac.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	o, err := appliance.New(ac)
	if err != nil {
		return err
	}
	return o.Run(ctx)
}
