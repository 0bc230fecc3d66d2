package events

// Event types, each versioned. A breaking change to a payload is a new type.
const (
	TypeDiscoverRequest    = "io.godwit.discover.request.v1"
	TypeDiscoverResult     = "io.godwit.discover.result.v1"
	TypeReplicateCommand   = "io.godwit.replicate.command.v1"
	TypeReplicateCancel    = "io.godwit.replicate.cancel.v1"
	TypeReplicatePause     = "io.godwit.replicate.pause.v1"
	TypeReplicateRate      = "io.godwit.replicate.rate.v1"
	TypeProgress           = "io.godwit.progress.v1"
	TypeReplicationStatus  = "io.godwit.replication.status.v1"
	TypeJobCreated         = "io.godwit.job.created.v1"
	TypeJobStateChanged    = "io.godwit.job.state.v1"
	TypeHeartbeat          = "io.godwit.vma.heartbeat.v1"
	TypeTunnelOutage       = "io.godwit.tunnel.outage.v1"
	TypeStreamAlert        = "io.godwit.alert.stream.v1"
	TypePlanCreated        = "io.godwit.plan.created.v1"
	TypePlanChanged        = "io.godwit.plan.changed.v1"
	TypePlanVMStateChanged = "io.godwit.plan.vm.state.v1"
	TypePlanSyncScheduled  = "io.godwit.plan.sync.scheduled.v1"
	TypePlanSyncDone       = "io.godwit.plan.sync.done.v1"
	TypeQueueQueued        = "io.godwit.queue.queued.v1"
	TypeQueueDispatched    = "io.godwit.queue.dispatched.v1"
	TypeQueueLimits        = "io.godwit.queue.limits.v1"
	TypeQueueMoved         = "io.godwit.queue.moved.v1"
	TypePowerCommand       = "io.godwit.power.command.v1"
	TypePowerReport        = "io.godwit.power.report.v1"
	TypeCutoverState       = "io.godwit.cutover.state.v1"
	TypeCutoverDone        = "io.godwit.cutover.done.v1"
)

// Types lists every event type, in a fixed order.
func Types() []string {
	return []string{
		TypeDiscoverRequest, TypeDiscoverResult, TypeReplicateCommand, TypeReplicateCancel,
		TypeProgress, TypeReplicationStatus, TypeJobCreated, TypeJobStateChanged, TypeHeartbeat,
		TypeTunnelOutage, TypeStreamAlert,
		TypePlanCreated, TypePlanChanged, TypePlanVMStateChanged, TypePlanSyncScheduled, TypePlanSyncDone,
		TypeQueueQueued, TypeQueueDispatched, TypeReplicatePause, TypeReplicateRate, TypeQueueLimits, TypeQueueMoved,
		TypePowerCommand, TypePowerReport, TypeCutoverState, TypeCutoverDone,
	}
}

// NewPayload returns a new zero payload of the given event type, ready to be
// decoded into, and false when the type is unknown.
func NewPayload(eventType string) (Payload, bool) {
	switch eventType {
	case TypeDiscoverRequest:
		return new(DiscoverRequest), true
	case TypeDiscoverResult:
		return new(DiscoverResult), true
	case TypeReplicateCommand:
		return new(ReplicateCommand), true
	case TypeReplicateCancel:
		return new(ReplicateCancel), true
	case TypeProgress:
		return new(Progress), true
	case TypeReplicationStatus:
		return new(ReplicationStatus), true
	case TypeJobCreated:
		return new(JobCreated), true
	case TypeJobStateChanged:
		return new(JobStateChanged), true
	case TypeHeartbeat:
		return new(Heartbeat), true
	case TypeTunnelOutage:
		return new(TunnelOutage), true
	case TypeStreamAlert:
		return new(StreamAlert), true
	case TypePlanCreated:
		return new(PlanCreated), true
	case TypePlanChanged:
		return new(PlanChanged), true
	case TypePlanVMStateChanged:
		return new(PlanVMStateChanged), true
	case TypePlanSyncScheduled:
		return new(PlanSyncScheduled), true
	case TypePlanSyncDone:
		return new(PlanSyncDone), true
	case TypeQueueQueued:
		return new(QueueQueued), true
	case TypeQueueDispatched:
		return new(QueueDispatched), true
	case TypeReplicatePause:
		return new(ReplicatePause), true
	case TypeReplicateRate:
		return new(ReplicateRate), true
	case TypeQueueLimits:
		return new(QueueLimits), true
	case TypeQueueMoved:
		return new(QueueMoved), true
	case TypePowerCommand:
		return new(PowerCommand), true
	case TypePowerReport:
		return new(PowerReport), true
	case TypeCutoverState:
		return new(CutoverStateChanged), true
	case TypeCutoverDone:
		return new(CutoverDone), true
	}
	return nil, false
}
