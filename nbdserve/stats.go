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
