package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/godwit/godwit/bytesize"
	"github.com/godwit/godwit/events"
	jobwatch "github.com/godwit/godwit/oma/watch"
	"github.com/godwit/godwit/printable"
)

// tokenEnv is the environment variable the operator commands read the API
// token from; never a flag, so that it stays off command lines.
const tokenEnv = "GODWIT_TOKEN"

// tokenFiles returns the files in -data an operator command reads the
// token from when $GODWIT_TOKEN is unset: make run's, then a new OMA's
// first.
func tokenFiles() []string { return []string{"make-run.token", "initial-token"} }

// apiClient calls the running OMA's REST API as an operator.
type apiClient struct {
	base  string // http(s)://host:port, no trailing slash
	token string
	hc    *http.Client
}

// operatorFlags declares the flags of the commands that read the OMA's API.
type operatorFlags struct {
	cfg       config
	apiURL    string
	apiCA     string
	tokenFile string
	json      bool
}

func newOperatorFlagSet(name string, of *operatorFlags, stderr io.Writer) *flag.FlagSet {
	fs := newFlagSet(name, &of.cfg, stderr)
	fs.StringVar(&of.apiURL, "api-url", "http://127.0.0.1:8082", "the running OMA's API URL")
	fs.StringVar(&of.apiCA, "api-ca", "", "PEM file of CA certificates to trust for an https -api-url, besides the system's")
	fs.StringVar(&of.tokenFile, "token-file", "", "file holding the API token (default: $"+tokenEnv+", else make-run.token or initial-token in -data)")
	fs.BoolVar(&of.json, "json", false, "print the API's JSON answer instead of text")
	return fs
}

// client returns the API client the flags describe: its URL checked, its
// token found.
func (of *operatorFlags) client() (*apiClient, error) {
	u, err := url.Parse(of.apiURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-api-url %q: want http(s)://host:port, such as http://127.0.0.1:8082", of.apiURL)
	}
	tok, err := of.findToken()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if of.apiCA != "" {
		pem, err := os.ReadFile(of.apiCA)
		if err != nil {
			return nil, fmt.Errorf("-api-ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-api-ca %s: no PEM certificate in it", of.apiCA)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &apiClient{base: strings.TrimSuffix(u.String(), "/"), token: tok, hc: &http.Client{Transport: tr}}, nil
}

// findToken returns the API token: $GODWIT_TOKEN, -token-file, or the
// first of tokenFiles in -data.
func (of *operatorFlags) findToken() (string, error) {
	if t := strings.TrimSpace(os.Getenv(tokenEnv)); t != "" {
		return t, nil
	}
	if of.tokenFile != "" {
		b, err := os.ReadFile(of.tokenFile)
		if err != nil {
			return "", fmt.Errorf("-token-file: %w", err)
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
		return "", fmt.Errorf("-token-file %s is empty", of.tokenFile)
	}
	for _, name := range tokenFiles() {
		b, err := os.ReadFile(filepath.Join(of.cfg.state(), name))
		if t := strings.TrimSpace(string(b)); err == nil && t != "" {
			return t, nil
		}
	}
	return "", fmt.Errorf("no API token: set $%s, or -token-file FILE, or -data to the OMA's data dir holding %s (make run writes data/oma/make-run.token)",
		tokenEnv, strings.Join(tokenFiles(), " or "))
}

// call sends a request to the API and decodes a 2xx answer's JSON into
// out (raw, when out is *json.RawMessage). Any other answer is an error
// saying what the OMA said.
func (c *apiClient) call(ctx context.Context, method, path string, out any) error {
	return c.callWith(ctx, method, path, nil, out)
}

// callWith is call with a JSON body (none when body is nil).
func (c *apiClient) callWith(ctx context.Context, method, path string, body, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the OMA's API at %s: %w (is the OMA running? -api-url or $GODWIT_API_URL names it)", c.base, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var p struct {
			Detail string `json:"detail"`
			Field  string `json:"field"`
		}
		msg := strings.TrimSpace(string(answer))
		if json.Unmarshal(answer, &p) == nil && p.Detail != "" {
			msg = p.Detail
		}
		msg = printable.Quote(msg)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("the OMA at %s refused the API token (401 %s): set $%s or -token-file to a token of this OMA (oma token create, POST /api/v1/tokens)", c.base, msg, tokenEnv)
		case http.StatusForbidden:
			return fmt.Errorf("the OMA at %s refused this token the call %s %s (403): %s", c.base, method, path, msg)
		}
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, msg)
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = answer
		return nil
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not what this oma understands: %w", method, path, err)
	}
	return nil
}

// jobView is what the operator commands show of the OMA's job view.
type jobView struct {
	JobID    string `json:"job_id"`
	VMAID    string `json:"vma_id"`
	SourceVM struct {
		ID   string `json:"id"`
		Name string `json:"name"`
		Path string `json:"path"`
	} `json:"source_vm"`
	VCenter         string `json:"vcenter"`
	ReplicationType string `json:"replication_type"`
	State           string `json:"state"`
	BaseJobID       string `json:"base_job_id"`
	Verified        bool   `json:"verified"`
	Generation      int    `json:"generation"`
	events.Figures
	LastError        string     `json:"last_error"`
	RateLimit        int64      `json:"rate_limit"`
	PauseRequestedAt *time.Time `json:"pause_requested_at"`
	Queue            *struct {
		Position   int    `json:"position"`
		WaitingFor string `json:"waiting_for"`
	} `json:"queue"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Disks      []struct {
		Key        int32  `json:"key"`
		Label      string `json:"label"`
		Capacity   int64  `json:"capacity_bytes"`
		VolumePath string `json:"volume_path"`
		BytesTotal int64  `json:"bytes_total"`
		BytesDone  int64  `json:"bytes_done"`
		Verified   bool   `json:"verified"`
		Digest     string `json:"digest"`
		FullCopy   bool   `json:"full_copy"`
	} `json:"disks"`
}

// progress is the job's progress in a few words: "copying 45.3 % of 2.0
// GiB", "verifying 20.0 % of 2.0 GiB", "2.0 GiB".
func (j jobView) progress() string {
	switch {
	case j.State == events.JobVerifying:
		return fmt.Sprintf("%.1f %% of %s checked", j.VerifyPercent, jobwatch.Bytes(j.VerifyBytesTotal))
	case j.BytesTotal == 0:
		return "-"
	case j.BytesDone == j.BytesTotal:
		return jobwatch.Bytes(j.BytesTotal)
	}
	return fmt.Sprintf("%.1f %% of %s", j.Percent, jobwatch.Bytes(j.BytesTotal))
}

// operand takes the object `oma command verb OBJECT [flags]` names from
// the front of args (what it is, and its placeholder in the usage); -h
// there prints the command's usage.
func operand(command, verb, what, placeholder string, args []string, stderr io.Writer) (string, []string, error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && isHelp(args[0]) {
			fmt.Fprint(stderr, usageOf(command))
			return "", nil, flag.ErrHelp
		}
		return "", nil, fmt.Errorf("oma %s %s needs %s: oma %s %s %s [flags]", command, verb, what, command, verb, placeholder)
	}
	return args[0], args[1:], nil
}

// jobsCmd implements `oma jobs list|show|cancel`.
func jobsCmd(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) error {
	var of operatorFlags
	var id string
	if verb != "list" {
		var err error
		if id, args, err = operand("jobs", verb, "the job's id", "JOB", args, stderr); err != nil {
			return err
		}
	}
	fs := newOperatorFlagSet("oma jobs "+verb, &of, stderr)
	var state, vm, rate string
	switch verb {
	case "list":
		fs.StringVar(&state, "state", "", "only the jobs in this state (pending, copying, completed, ...)")
		fs.StringVar(&vm, "vm", "", "only the jobs of this VM id")
	case "rate":
		fs.StringVar(&rate, "rate", "", "the job's bandwidth limit in bytes per second, with K, M or G (powers of 1024); 0: none (required)")
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	var bytesPerSecond int64
	if verb == "rate" {
		if rate == "" {
			return errors.New("oma jobs rate needs -rate: bytes per second such as 50M, or 0 for no limit")
		}
		n, err := bytesize.Parse(rate)
		if err != nil {
			return fmt.Errorf("jobs rate: -rate: %w", err)
		}
		bytesPerSecond = n
	}
	c, err := of.client()
	if err != nil {
		return fmt.Errorf("jobs %s: %w", verb, err)
	}
	switch verb {
	case "list":
		q := url.Values{}
		if state != "" {
			q.Set("state", state)
		}
		if vm != "" {
			q.Set("vm", vm)
		}
		path := "/api/v1/replications"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		return c.show(ctx, http.MethodGet, path, of.json, stdout, func(body []byte) error {
			var list struct {
				Replications []jobView `json:"replications"`
			}
			if err := json.Unmarshal(body, &list); err != nil {
				return err
			}
			return printJobs(stdout, list.Replications)
		})
	case "show":
		return c.show(ctx, http.MethodGet, "/api/v1/replications/"+url.PathEscape(id), of.json, stdout, func(body []byte) error {
			var j jobView
			if err := json.Unmarshal(body, &j); err != nil {
				return err
			}
			return printJob(stdout, j)
		})
	case "cancel":
		return c.show(ctx, http.MethodDelete, "/api/v1/replications/"+url.PathEscape(id), of.json, stdout, func(body []byte) error {
			var j jobView
			if err := json.Unmarshal(body, &j); err != nil {
				return err
			}
			_, err := fmt.Fprintf(stdout, "job %s: %s\n", printable.Quote(j.JobID), j.State)
			return err
		})
	case "pause", "resume":
		return c.show(ctx, http.MethodPost, "/api/v1/replications/"+url.PathEscape(id)+"/"+verb, of.json, stdout, func(body []byte) error {
			var j jobView
			if err := json.Unmarshal(body, &j); err != nil {
				return err
			}
			state := j.State
			if verb == "pause" && j.PauseRequestedAt != nil {
				state += ", pausing: its VMA stops it at a checkpoint"
			}
			_, err := fmt.Fprintf(stdout, "job %s: %s\n", printable.Quote(j.JobID), state)
			return err
		})
	case "rate":
		return c.showWith(ctx, http.MethodPatch, "/api/v1/replications/"+url.PathEscape(id), map[string]int64{"rate": bytesPerSecond}, of.json, stdout, func(body []byte) error {
			var j jobView
			if err := json.Unmarshal(body, &j); err != nil {
				return err
			}
			limit := "none"
			if j.RateLimit > 0 {
				limit = jobwatch.Bytes(j.RateLimit) + "/s"
			}
			_, err := fmt.Fprintf(stdout, "job %s: %s, rate limit %s\n", printable.Quote(j.JobID), j.State, limit)
			return err
		})
	}
	return fmt.Errorf("unknown command %q", "jobs "+verb)
}

// show calls the API and prints its answer: indented JSON with asJSON,
// else as text.
func (c *apiClient) show(ctx context.Context, method, path string, asJSON bool, stdout io.Writer, text func([]byte) error) error {
	return c.showWith(ctx, method, path, nil, asJSON, stdout, text)
}

// showWith is show with a JSON body (none when body is nil).
func (c *apiClient) showWith(ctx context.Context, method, path string, body any, asJSON bool, stdout io.Writer, text func([]byte) error) error {
	var raw json.RawMessage
	if err := c.callWith(ctx, method, path, body, &raw); err != nil {
		return err
	}
	if asJSON {
		var b bytes.Buffer
		if err := json.Indent(&b, raw, "", "  "); err != nil {
			return fmt.Errorf("%s %s: the answer is not JSON: %w", method, path, err)
		}
		b.WriteByte('\n')
		_, err := stdout.Write(b.Bytes())
		return err
	}
	if err := text(raw); err != nil {
		return fmt.Errorf("%s %s: the answer is not what this oma understands: %w", method, path, err)
	}
	return nil
}

func printJobs(w io.Writer, list []jobView) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no jobs")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tVM\tVMA\tTYPE\tSTATE\tPROGRESS\tUPDATED")
	for _, j := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", printable.Quote(j.JobID), printable.Quote(j.SourceVM.Name), printable.Quote(j.VMAID),
			j.ReplicationType, j.State, j.progress(), j.UpdatedAt.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

func printJob(w io.Writer, j jobView) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	row("job", "%s", printable.Quote(j.JobID))
	row("vm", "%s (%s, %s)", printable.Quote(j.SourceVM.Name), printable.Quote(j.SourceVM.ID), printable.Quote(j.SourceVM.Path))
	row("vma", "%s, vCenter %s", printable.Quote(j.VMAID), printable.Quote(j.VCenter))
	typ := fmt.Sprintf("%s, generation %d", j.ReplicationType, j.Generation)
	if j.BaseJobID != "" {
		typ += ", on job " + printable.Quote(j.BaseJobID)
	}
	row("type", "%s", typ)
	row("state", "%s", j.State)
	if j.Queue != nil {
		row("queue", "%d in line, waiting for %s", j.Queue.Position, printable.Quote(j.Queue.WaitingFor))
	}
	if j.RateLimit > 0 {
		row("rate limit", "%s/s", jobwatch.Bytes(j.RateLimit))
	}
	copied := fmt.Sprintf("%s of %s (%.1f %%)", jobwatch.Bytes(j.BytesDone), jobwatch.Bytes(j.BytesTotal), j.Percent)
	if j.RateBytesPerSecond > 0 && j.State != events.JobVerifying {
		copied += fmt.Sprintf(" at %s/s", jobwatch.Bytes(j.RateBytesPerSecond))
		if j.ETASeconds != nil {
			copied += fmt.Sprintf(", %s to go", time.Duration(*j.ETASeconds)*time.Second)
		}
	}
	row("copied", "%s", copied)
	if j.VerifyBytesTotal > 0 || j.State == events.JobVerifying {
		v := fmt.Sprintf("%s of %s (%.1f %%)", jobwatch.Bytes(j.VerifyBytesDone), jobwatch.Bytes(j.VerifyBytesTotal), j.VerifyPercent)
		if j.State == events.JobVerifying && j.VerifyRateBytesPerSecond > 0 {
			v += fmt.Sprintf(" at %s/s", jobwatch.Bytes(j.VerifyRateBytesPerSecond))
			if j.ETASeconds != nil {
				v += fmt.Sprintf(", %s to go", time.Duration(*j.ETASeconds)*time.Second)
			}
		}
		row("checked", "%s", v)
	}
	if j.State == events.JobCompleted {
		row("verified", "%t", j.Verified)
	}
	if j.LastError != "" {
		row("error", "%s", printable.Quote(j.LastError))
	}
	row("created", "%s", j.CreatedAt.Local().Format(time.DateTime))
	row("updated", "%s", j.UpdatedAt.Local().Format(time.DateTime))
	if j.FinishedAt != nil {
		row("finished", "%s", j.FinishedAt.Local().Format(time.DateTime))
	}
	for _, d := range j.Disks {
		s := fmt.Sprintf("%s, %s of %s copied", jobwatch.Bytes(d.Capacity), jobwatch.Bytes(d.BytesDone), jobwatch.Bytes(d.BytesTotal))
		if d.FullCopy {
			s += " (whole)"
		}
		if d.Verified {
			s += ", verified " + printable.Quote(d.Digest)
		}
		s += ", " + printable.Quote(d.VolumePath)
		row(fmt.Sprintf("disk %d", d.Key), "%s: %s", printable.Quote(d.Label), s)
	}
	return tw.Flush()
}

// vmsCmd implements `oma vms`: the inventory.
func vmsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var of operatorFlags
	fs := newOperatorFlagSet("oma vms", &of, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := of.client()
	if err != nil {
		return fmt.Errorf("vms: %w", err)
	}
	return c.show(ctx, http.MethodGet, "/api/v1/vms", of.json, stdout, func(body []byte) error {
		var inv struct {
			VMs []struct {
				events.VM
				VMAID          string    `json:"vma_id"`
				VCenter        string    `json:"vcenter"`
				Seen           time.Time `json:"discovered_at"`
				CurrentReplica *struct {
					JobID string `json:"job_id"`
				} `json:"current_replica"`
			} `json:"vms"`
		}
		if err := json.Unmarshal(body, &inv); err != nil {
			return err
		}
		if len(inv.VMs) == 0 {
			_, err := fmt.Fprintln(stdout, "no VMs: run a discovery (POST /api/v1/discover)")
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tVMA\tVCENTER\tPOWER\tCPU\tMEMORY\tDISKS\tREPLICA")
		for _, v := range inv.VMs {
			var size int64
			for _, d := range v.Disks {
				size += d.CapacityBytes
			}
			replica := "-"
			if v.CurrentReplica != nil {
				replica = "job " + printable.Quote(v.CurrentReplica.JobID)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d, %s\t%s\n", printable.Quote(v.ID), printable.Quote(v.Name), printable.Quote(v.VMAID), printable.Quote(v.VCenter),
				printable.Quote(v.PowerState), v.NumCPU, jobwatch.Bytes(int64(v.MemoryMB)<<20), len(v.Disks), jobwatch.Bytes(size), replica)
		}
		return tw.Flush()
	})
}
