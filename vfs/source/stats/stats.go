// Package stats counts what a remote source fetched: bytes, requests, retries, reconnects.
//
// A Counter may be shared by every file one Opener opens, so a daemon can show per-export
// statistics. All methods are safe for concurrent use; a nil *Counter counts nothing.
package stats

import "sync/atomic"

// Snapshot is a point-in-time copy of a Counter.
type Snapshot struct {
	// BytesFetched is the number of payload bytes received and handed to readers.
	BytesFetched int64 `json:"bytes_fetched"`
	// Requests is the number of read requests sent (each attempt counts).
	Requests int64 `json:"requests"`
	// Retries is the number of attempts that repeated a failed one.
	Retries int64 `json:"retries"`
	// Reconnects is the number of sessions, connections or logins re-established.
	Reconnects int64 `json:"reconnects"`
}

// Counter accumulates fetch statistics. The zero value is ready to use.
type Counter struct {
	bytes, requests, retries, reconnects atomic.Int64
}

// Reporter is the ability to report fetch statistics (sources and openers implement it).
type Reporter interface {
	Stats() Snapshot
}

// AddBytes records n payload bytes received.
func (c *Counter) AddBytes(n int64) {
	if c != nil {
		c.bytes.Add(n)
	}
}

// AddRequest records one request sent.
func (c *Counter) AddRequest() {
	if c != nil {
		c.requests.Add(1)
	}
}

// AddRetry records one retried attempt.
func (c *Counter) AddRetry() {
	if c != nil {
		c.retries.Add(1)
	}
}

// AddReconnect records one re-established connection or session.
func (c *Counter) AddReconnect() {
	if c != nil {
		c.reconnects.Add(1)
	}
}

// Snapshot returns the current values.
func (c *Counter) Snapshot() Snapshot {
	if c == nil {
		return Snapshot{}
	}
	return Snapshot{
		BytesFetched: c.bytes.Load(),
		Requests:     c.requests.Load(),
		Retries:      c.retries.Load(),
		Reconnects:   c.reconnects.Load(),
	}
}
