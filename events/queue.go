package events

import (
	"time"

	"github.com/godwit/godwit/events/subject"
)

// QueueQueued announces a started job that waits in the OMA's queue: the
// first time the queue sees it waiting, with its place and why it waits.
// A job that is dispatched at once gets only a QueueDispatched.
type QueueQueued struct {
	JobID    string `json:"job_id"`
	VMAID    string `json:"vma_id"`
	Plan     string `json:"plan,omitempty"`
	Priority int    `json:"priority"`
	// Position is its place in the queue's order, from 1.
	Position int `json:"position"`
	// WaitingFor names the limit that keeps it waiting, such as
	// "esxi host esx-21: 4 of 4 running".
	WaitingFor string    `json:"waiting_for"`
	QueuedAt   time.Time `json:"queued_at"`
}

// EventType implements Payload.
func (*QueueQueued) EventType() string { return TypeQueueQueued }

// NATSSubject implements Payload.
func (q *QueueQueued) NATSSubject() (string, error) { return subject.JobQueue(q.VMAID, q.JobID) }

// EventSubject implements Payload: the job id.
func (q *QueueQueued) EventSubject() string { return q.JobID }

// QueueDispatched announces that the OMA's queue sent a job to its VMA: a
// slot was free under every limit. The job holds its slots until it ends.
type QueueDispatched struct {
	JobID string `json:"job_id"`
	VMAID string `json:"vma_id"`
	Plan  string `json:"plan,omitempty"`
	// Position was its place in the queue's order when it was picked.
	Position      int       `json:"position"`
	WaitedSeconds float64   `json:"waited_seconds"`
	DispatchedAt  time.Time `json:"dispatched_at"`
}

// EventType implements Payload.
func (*QueueDispatched) EventType() string { return TypeQueueDispatched }

// NATSSubject implements Payload.
func (q *QueueDispatched) NATSSubject() (string, error) { return subject.JobQueue(q.VMAID, q.JobID) }

// EventSubject implements Payload: the job id.
func (q *QueueDispatched) EventSubject() string { return q.JobID }
