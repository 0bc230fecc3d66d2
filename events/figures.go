package events

// Figures are a job's copy figures as the APIs show them: the OMA's job
// view, the VMA's progress and the operator commands that read them.
type Figures struct {
	// BytesTotal is what the job copies in all (the disks' areas), and
	// BytesDone what it has; Percent is that in percent (0 to 100).
	BytesTotal int64   `json:"bytes_total"`
	BytesDone  int64   `json:"bytes_done"`
	Percent    float64 `json:"percent"`
	// RateBytesPerSecond is the recent rate; AverageRateBytesPerSecond the
	// rate since the copy began.
	RateBytesPerSecond        int64 `json:"rate_bytes_per_second"`
	AverageRateBytesPerSecond int64 `json:"average_rate_bytes_per_second"`
	// ETASeconds is what the rest takes at the recent rate (while
	// verifying, the rest of the read-back); nil when unknown.
	ETASeconds *int64 `json:"eta_seconds"`
	// VerifyBytesTotal is what the job reads back from its exports and
	// checks after copying (0 until known, and without verification),
	// VerifyBytesDone what it has, VerifyPercent that in percent and
	// VerifyRateBytesPerSecond its recent rate.
	VerifyBytesTotal         int64   `json:"verify_bytes_total"`
	VerifyBytesDone          int64   `json:"verify_bytes_done"`
	VerifyPercent            float64 `json:"verify_percent"`
	VerifyRateBytesPerSecond int64   `json:"verify_rate_bytes_per_second"`
}
