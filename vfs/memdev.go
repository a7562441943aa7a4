package vfs

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// MemDevice is a sparse in-memory Writable device, for tests and examples. It tracks state in
// blocks of MemBlockSize bytes: never written (Hole), zeroed (Zero) or written (Data).
type MemDevice struct {
	size int64

	mu     sync.RWMutex
	blocks map[int64][]byte // guarded by mu; block index → MemBlockSize bytes
	zeroed map[int64]bool   // guarded by mu; blocks zeroed by Zero, not written since
}

// MemBlockSize is the granularity of MemDevice's allocation map.
const MemBlockSize = 4096

var _ Writable = (*MemDevice)(nil)

// NewMemDevice returns an empty (all Hole) device of the given size.
func NewMemDevice(size int64) *MemDevice {
	return &MemDevice{size: size, blocks: map[int64][]byte{}, zeroed: map[int64]bool{}}
}

func (m *MemDevice) Size() int64 { return m.size }

func (m *MemDevice) check(off, n int64) error {
	if off < 0 || n < 0 || off > m.size || n > m.size-off {
		return fmt.Errorf("mem: %d bytes at %d beyond size %d: %w", n, off, m.size, ErrOutOfRange)
	}
	return nil
}

func (m *MemDevice) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("mem: negative offset: %w", ErrOutOfRange)
	}
	var eof error
	if off >= m.size {
		return 0, io.EOF
	}
	if int64(len(p)) > m.size-off {
		p = p[:m.size-off]
		eof = io.EOF
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for n := 0; n < len(p); {
		b, in := (off+int64(n))/MemBlockSize, (off+int64(n))%MemBlockSize
		c := min(len(p)-n, int(MemBlockSize-in))
		if blk, ok := m.blocks[b]; ok {
			copy(p[n:n+c], blk[in:])
		} else {
			clear(p[n : n+c])
		}
		n += c
	}
	return len(p), eof
}

func (m *MemDevice) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := m.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for n := 0; n < len(p); {
		b, in := (off+int64(n))/MemBlockSize, (off+int64(n))%MemBlockSize
		c := min(len(p)-n, int(MemBlockSize-in))
		blk, ok := m.blocks[b]
		if !ok {
			blk = make([]byte, MemBlockSize)
			m.blocks[b] = blk
		}
		copy(blk[in:], p[n:n+c])
		delete(m.zeroed, b)
		n += c
	}
	return len(p), nil
}

// zeroRange clears bytes; whole blocks are dropped and marked zeroed (Zero) or forgotten (Trim).
func (m *MemDevice) zeroRange(ctx context.Context, off, length int64, trim bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := m.check(off, length); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for pos, end := off, off+length; pos < end; {
		b, in := pos/MemBlockSize, pos%MemBlockSize
		c := min(end-pos, MemBlockSize-in)
		if c == MemBlockSize {
			delete(m.blocks, b)
			if trim {
				delete(m.zeroed, b)
			} else {
				m.zeroed[b] = true
			}
		} else if blk, ok := m.blocks[b]; ok {
			clear(blk[in : in+c])
		}
		pos += c
	}
	return nil
}

func (m *MemDevice) Zero(ctx context.Context, off, length int64) error {
	return m.zeroRange(ctx, off, length, false)
}

func (m *MemDevice) Trim(ctx context.Context, off, length int64) error {
	return m.zeroRange(ctx, off, length, true)
}

func (m *MemDevice) Flush(ctx context.Context) error { return ctx.Err() }

func (m *MemDevice) Extents(ctx context.Context, off, length int64) ([]Extent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := m.check(off, 0); err != nil {
		return nil, err
	}
	length = min(length, m.size-off)
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Extent
	for pos, end := off, off+length; pos < end; {
		b := pos / MemBlockSize
		c := min(end-pos, (b+1)*MemBlockSize-pos)
		k := Hole
		if _, ok := m.blocks[b]; ok {
			k = Data
		} else if m.zeroed[b] {
			k = Zero
		}
		if n := len(out); n > 0 && out[n-1].Kind == k {
			out[n-1].Len += c
		} else {
			out = append(out, Extent{Off: pos, Len: c, Kind: k})
		}
		pos += c
	}
	return out, nil
}
