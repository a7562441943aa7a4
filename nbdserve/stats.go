package nbdserve

import (
	"fmt"
	"sync/atomic"
)

// ExportStats are the counters of one export since it was added.
type ExportStats struct {
	// Connections is the number of clients in transmission phase now.
	Connections int64
	// Requests counts every request read (DISC excluded); Errors those answered with an error.
	Requests, Errors uint64
	// BytesRead and BytesWritten count payload bytes of successful READs and WRITEs.
	BytesRead, BytesWritten uint64
}

type counters struct {
	conns                 atomic.Int64
	requests, errors      atomic.Uint64
	readBytes, writeBytes atomic.Uint64
}

// Stats returns the counters of the named export.
func (s *Server) Stats(name string) (ExportStats, error) {
	s.mu.Lock()
	e, ok := s.exports[name]
	s.mu.Unlock()
	if !ok {
		return ExportStats{}, fmt.Errorf("nbd: stats of %q: %w", name, ErrNoExport)
	}
	return ExportStats{
		Connections:  e.stats.conns.Load(),
		Requests:     e.stats.requests.Load(),
		Errors:       e.stats.errors.Load(),
		BytesRead:    e.stats.readBytes.Load(),
		BytesWritten: e.stats.writeBytes.Load(),
	}, nil
}

// ServerStats are the server-wide counters since New.
type ServerStats struct {
	// Connections is the number of clients connected now (negotiating or transmitting).
	Connections int64
	// Refused counts connections closed on accept because Options.MaxConns were open.
	Refused uint64
	// Dropped counts connections cut because a reply could not be written within
	// Options.WriteTimeout (a client that stopped reading its replies) or failed to write.
	Dropped uint64
	// BufferedBytes is the READ and WRITE payload bytes held by requests in flight now;
	// PeakBufferedBytes is its highest value. Neither exceeds Options.MaxBufferedBytes.
	BufferedBytes, PeakBufferedBytes int64
}

type serverCounters struct {
	refused, dropped atomic.Uint64
}

// ServerStats returns the server-wide counters.
func (s *Server) ServerStats() ServerStats {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	return ServerStats{
		Connections:       int64(n),
		Refused:           s.stats.refused.Load(),
		Dropped:           s.stats.dropped.Load(),
		BufferedBytes:     s.budget.held.Load(),
		PeakBufferedBytes: s.budget.peak.Load(),
	}
}
