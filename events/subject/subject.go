package subject

import (
	"errors"
	"fmt"
	"strings"
)

// Root is the first token of every godwit subject.
const Root = "godwit"

// MaxIDLen is the longest id accepted as a subject token.
const MaxIDLen = 128

// Subject prefixes, each followed by the ids named in its builder.
const (
	discoverRequest  = Root + ".discover.request"
	discoverResult   = Root + ".discover.result"
	discoverSubmit   = Root + ".discover.submit"
	replicateCommand = Root + ".replicate.command"
	replicateCancel  = Root + ".replicate.cancel"
	progress         = Root + ".progress"
	status           = Root + ".status"
	jobCreated       = Root + ".job.created"
	jobState         = Root + ".job.state"
	jobQueue         = Root + ".job.queue"
	jobLimits        = Root + ".job.limits"
	cutover          = Root + ".job.cutover"
	heartbeat        = Root + ".vma.heartbeat"
	tunnel           = Root + ".tunnel"
	exportRequest    = Root + ".export.request"
	verifyRequest    = Root + ".verify.request"
	startRequest     = Root + ".start.request"
	alert            = Root + ".alert"
	planCreated      = Root + ".plan.created"
	planChanged      = Root + ".plan.changed"
	planVM           = Root + ".plan.vm"
	planScheduled    = Root + ".plan.scheduled"
	planSynced       = Root + ".plan.synced"
)

// Wildcard filters over every VMA, used by streams and subscribers.
const (
	AllDiscover = Root + ".discover.>"
	// AllDiscoverRequest and AllDiscoverResult split AllDiscover.
	AllDiscoverRequest = discoverRequest + ".>"
	AllDiscoverResult  = discoverResult + ".>"
	AllDiscoverSubmit  = discoverSubmit + ".*"
	AllAlert           = alert + ".>"
	AllReplicate       = Root + ".replicate.>"
	AllProgress        = progress + ".>"
	AllStatus          = status + ".>"
	AllJobs            = Root + ".job.>"
	AllVMA             = Root + ".vma.>"
	AllTunnel          = tunnel + ".>"
	AllExport          = exportRequest + ".>"
	AllVerify          = verifyRequest + ".>"
	AllStart           = startRequest + ".>"
	AllPlans           = Root + ".plan.>"
	All                = Root + ".>"
)

// ErrInvalidID is wrapped by every error about an id that cannot be a subject token.
var ErrInvalidID = errors.New("invalid id")

// ErrNotSubject is wrapped by every error about a subject that is not of the
// form a parse function expects.
var ErrNotSubject = errors.New("not the expected subject")

// ValidID reports whether id can stand as one subject token: 1 to MaxIDLen
// characters from A-Z, a-z, 0-9, '-' and '_'. Dots, wildcards ('*', '>'),
// white space and every other character are refused, so an id can never add,
// widen or split a token of the subject it is put in.
func ValidID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidID)
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("%w: %d characters, at most %d", ErrInvalidID, len(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return fmt.Errorf("%w: %q has %q at byte %d (allowed: letters, digits, '-', '_')", ErrInvalidID, id, c, i)
		}
	}
	return nil
}

// join validates every id, naming the one at fault, and appends them to prefix.
func join(prefix string, ids ...namedID) (string, error) {
	s := prefix
	for _, id := range ids {
		if err := ValidID(id.value); err != nil {
			return "", fmt.Errorf("%s: %w", id.name, err)
		}
		s += "." + id.value
	}
	return s, nil
}

type namedID struct{ name, value string }

func vma(id string) namedID     { return namedID{"vma id", id} }
func job(id string) namedID     { return namedID{"job id", id} }
func request(id string) namedID { return namedID{"request id", id} }
func plan(name string) namedID  { return namedID{"plan name", name} }
func vm(id string) namedID      { return namedID{"vm id", id} }

// PlanCreated is godwit.plan.created.<plan>: a migration plan was created.
func PlanCreated(name string) (string, error) { return join(planCreated, plan(name)) }

// PlanChanged is godwit.plan.changed.<plan>: a plan was changed, paused,
// resumed or deleted.
func PlanChanged(name string) (string, error) { return join(planChanged, plan(name)) }

// PlanVM is godwit.plan.vm.<plan>.<vm>: a VM of a plan changed state.
func PlanVM(name, vmID string) (string, error) { return join(planVM, plan(name), vm(vmID)) }

// PlanScheduled is godwit.plan.scheduled.<plan>: a plan's sync is due.
func PlanScheduled(name string) (string, error) { return join(planScheduled, plan(name)) }

// PlanSynced is godwit.plan.synced.<plan>.<vm>: a plan's VM completed a copy.
func PlanSynced(name, vmID string) (string, error) { return join(planSynced, plan(name), vm(vmID)) }

// DiscoverRequest is godwit.discover.request.<vma>: discovery asked of one VMA.
func DiscoverRequest(vmaID string) (string, error) { return join(discoverRequest, vma(vmaID)) }

// DiscoverResult is godwit.discover.result.<vma>.<request>: the inventory a VMA found.
func DiscoverResult(vmaID, requestID string) (string, error) {
	return join(discoverResult, vma(vmaID), request(requestID))
}

// DiscoverSubmit is godwit.discover.submit.<vma>: a VMA asks the OMA,
// request/reply, to publish a discover request of its own making, so that
// its result reaches the OMA's inventory. It is not stored.
func DiscoverSubmit(vmaID string) (string, error) { return join(discoverSubmit, vma(vmaID)) }

// ParseDiscoverSubmit returns the VMA id of a DiscoverSubmit subject. It
// fails with an error wrapping ErrNotSubject when subj has another form,
// or ErrInvalidID when the id is not one DiscoverSubmit accepts.
func ParseDiscoverSubmit(subj string) (string, error) {
	id, ok := strings.CutPrefix(subj, discoverSubmit+".")
	if !ok {
		return "", fmt.Errorf("%w: %q is not %s.<vma>", ErrNotSubject, subj, discoverSubmit)
	}
	if err := ValidID(id); err != nil {
		return "", fmt.Errorf("discover submit %q: vma id: %w", subj, err)
	}
	return id, nil
}

// ReplicateCommand is godwit.replicate.command.<vma>: a job for one VMA to run.
func ReplicateCommand(vmaID string) (string, error) { return join(replicateCommand, vma(vmaID)) }

// ReplicateCancel is godwit.replicate.cancel.<vma>: a job for one VMA to stop.
func ReplicateCancel(vmaID string) (string, error) { return join(replicateCancel, vma(vmaID)) }

// Progress is godwit.progress.<vma>.<job>: copy progress of one job.
func Progress(vmaID, jobID string) (string, error) { return join(progress, vma(vmaID), job(jobID)) }

// Status is godwit.status.<vma>.<job>: the replication status of one job.
func Status(vmaID, jobID string) (string, error) { return join(status, vma(vmaID), job(jobID)) }

// JobCreated is godwit.job.created.<vma>.<job>: the OMA created a job.
func JobCreated(vmaID, jobID string) (string, error) {
	return join(jobCreated, vma(vmaID), job(jobID))
}

// JobState is godwit.job.state.<vma>.<job>: a job moved from one state to another.
func JobState(vmaID, jobID string) (string, error) { return join(jobState, vma(vmaID), job(jobID)) }

// JobQueue is godwit.job.queue.<vma>.<job>: the OMA's queue took a job in
// or dispatched it. It is in the JOBS stream, in order with the job's state
// changes.
func JobQueue(vmaID, jobID string) (string, error) { return join(jobQueue, vma(vmaID), job(jobID)) }

// JobLimits is godwit.job.limits.<object>: limits the OMA's queue applies
// changed (object: global, vma, vcenter, job; the event names which one).
// It is in the JOBS stream, in order with what they bound.
func JobLimits(object string) (string, error) { return join(jobLimits, namedID{"object", object}) }

// Cutover is godwit.job.cutover.<vm>: the steps of a VM's cutover, in
// the JOBS stream with the jobs of its final sync.
func Cutover(vmID string) (string, error) { return join(cutover, vm(vmID)) }

// Heartbeat is godwit.vma.heartbeat.<vma>: a VMA's periodic presence.
func Heartbeat(vmaID string) (string, error) { return join(heartbeat, vma(vmaID)) }

// Tunnel is godwit.tunnel.<vma>: the outages of a VMA's SSH connection.
func Tunnel(vmaID string) (string, error) { return join(tunnel, vma(vmaID)) }

// StreamAlert is godwit.alert.stream.<stream>: the OMA's alert about one
// JetStream stream nearing or leaving its limits.
func StreamAlert(stream string) (string, error) {
	return join(alert+".stream", namedID{"stream", stream})
}

// ExportRequest is godwit.export.request.<vma>.<job>: a VMA asks the OMA,
// request/reply, for the NBD exports of a job.
func ExportRequest(vmaID, jobID string) (string, error) {
	return join(exportRequest, vma(vmaID), job(jobID))
}

// ParseExportRequest returns the VMA and job ids of an export request
// subject, godwit.export.request.<vma>.<job>. It fails with an error
// wrapping ErrNotSubject when subj has another form, or ErrInvalidID when an
// id is not one that ExportRequest accepts.
func ParseExportRequest(subj string) (vmaID, jobID string, err error) {
	return parseVMAJob(subj, exportRequest, "export request")
}

// VerifyRequest is godwit.verify.request.<vma>.<job>: a VMA asks the OMA,
// request/reply, for the digests of blocks of one of a job's volumes.
func VerifyRequest(vmaID, jobID string) (string, error) {
	return join(verifyRequest, vma(vmaID), job(jobID))
}

// ParseVerifyRequest returns the VMA and job ids of a verify request
// subject, godwit.verify.request.<vma>.<job>. It fails as
// ParseExportRequest does.
func ParseVerifyRequest(subj string) (vmaID, jobID string, err error) {
	return parseVMAJob(subj, verifyRequest, "verify request")
}

// StartRequest is godwit.start.request.<vma>.<job>: a VMA asks the OMA,
// request/reply, to queue a job its API was asked to start (the VMA's
// POST /api/v1/replicate), with the job's replicate command.
func StartRequest(vmaID, jobID string) (string, error) {
	return join(startRequest, vma(vmaID), job(jobID))
}

// ParseStartRequest returns the VMA and job ids of a start request
// subject, godwit.start.request.<vma>.<job>. It fails as
// ParseExportRequest does.
func ParseStartRequest(subj string) (vmaID, jobID string, err error) {
	return parseVMAJob(subj, startRequest, "start request")
}

// parseVMAJob returns the ids of subj, prefix.<vma>.<job>; what names the
// request in errors.
func parseVMAJob(subj, prefix, what string) (vmaID, jobID string, err error) {
	rest, ok := strings.CutPrefix(subj, prefix+".")
	if !ok {
		return "", "", fmt.Errorf("%w: %q is not %s.<vma>.<job>", ErrNotSubject, subj, prefix)
	}
	vmaID, jobID, ok = strings.Cut(rest, ".")
	if !ok {
		return "", "", fmt.Errorf("%w: %q is not %s.<vma>.<job>", ErrNotSubject, subj, prefix)
	}
	if err := ValidID(vmaID); err != nil {
		return "", "", fmt.Errorf("%s %q: vma id: %w", what, subj, err)
	}
	if err := ValidID(jobID); err != nil { // refuses a dot: no extra token
		return "", "", fmt.Errorf("%s %q: job id: %w", what, subj, err)
	}
	return vmaID, jobID, nil
}

// VMAPublish lists the subjects a VMA may publish on: only those carrying its own id.
func VMAPublish(vmaID string) ([]string, error) {
	if err := ValidID(vmaID); err != nil {
		return nil, fmt.Errorf("vma id: %w", err)
	}
	return []string{
		discoverSubmit + "." + vmaID,
		discoverResult + "." + vmaID + ".*",
		replicateCommand + "." + vmaID,
		replicateCancel + "." + vmaID,
		progress + "." + vmaID + ".*",
		status + "." + vmaID + ".*",
		heartbeat + "." + vmaID,
		tunnel + "." + vmaID,
		exportRequest + "." + vmaID + ".*",
		verifyRequest + "." + vmaID + ".*",
		startRequest + "." + vmaID + ".*",
	}, nil
}

// VMASubscribe lists the plain subjects a VMA may subscribe to: the results of
// its own discoveries. Commands reach it through its JetStream consumers.
func VMASubscribe(vmaID string) ([]string, error) {
	if err := ValidID(vmaID); err != nil {
		return nil, fmt.Errorf("vma id: %w", err)
	}
	return []string{discoverResult + "." + vmaID + ".*"}, nil
}

// VMACommands lists the subjects a VMA's command consumer delivers.
func VMACommands(vmaID string) ([]string, error) {
	if err := ValidID(vmaID); err != nil {
		return nil, fmt.Errorf("vma id: %w", err)
	}
	return []string{replicateCommand + "." + vmaID, replicateCancel + "." + vmaID}, nil
}

// InboxPrefix is the reply-inbox prefix of a VMA's connection, so that its
// replies are kept apart from everybody else's.
func InboxPrefix(vmaID string) (string, error) {
	if err := ValidID(vmaID); err != nil {
		return "", fmt.Errorf("vma id: %w", err)
	}
	return "_INBOX_VMA." + vmaID, nil
}
