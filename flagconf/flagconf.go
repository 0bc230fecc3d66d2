// Package flagconf fills a flag.FlagSet from three places, in rising
// order of precedence: the environment (GODWIT_ and the flag name in upper
// case, '-' as '_'), a JSON config file named by the -config flag (keys are
// flag names), and the command line.
package flagconf

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
)

// EnvName returns the environment variable of a flag, such as
// GODWIT_API_ADDR for api-addr.
func EnvName(flagName string) string {
	return "GODWIT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// List splits a comma-separated flag value into its trimmed, non-empty
// items: " a, ,b " is [a b].
func List(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Parse parses args into fs after applying the environment and, when fs
// has a -config flag that is set, the config file. Arguments that are not
// flags are an error: fs takes flags only.
func Parse(fs *flag.FlagSet, args []string) error {
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("$%s: %w", EnvName(f.Name), err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %s takes only flags (-h lists them)", fs.Arg(0), fs.Name())
	}
	cf := fs.Lookup("config")
	if cf == nil || cf.Value.String() == "" {
		return nil
	}
	path := cf.Value.String()
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	// Numbers stay as written: 2147483648 must not become 2.147483648e+09.
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var file map[string]any
	if err := dec.Decode(&file); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for k, v := range file {
		f := fs.Lookup(k)
		if f == nil || k == "config" {
			return fmt.Errorf("config %s: unknown key %q", path, k)
		}
		if set[k] {
			continue
		}
		if err := f.Value.Set(fmt.Sprint(v)); err != nil {
			return fmt.Errorf("config %s: %s: %w", path, k, err)
		}
	}
	return nil
}
