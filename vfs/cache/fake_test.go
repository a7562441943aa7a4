package cache_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/h2kvm/h2kvm/vfs/cache"
)

// template is the content of every 4 KiB block of a fake source, except that the first 8 bytes
// of block k hold k: cheap to produce, different in every block.
var template = func() []byte {
	t := make([]byte, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range t {
		t[i] = byte(r.UintN(256))
	}
	return t
}()

// pattern fills p with the fake content at off.
func pattern(p []byte, off int64) {
	for n := 0; n < len(p); {
		o := off + int64(n)
		blk, in := o/4096, int(o%4096)
		var blkHead [8]byte
		binary.LittleEndian.PutUint64(blkHead[:], uint64(blk))
		c := min(len(p)-n, 4096-in)
		copy(p[n:n+c], template[in:])
		if in < 8 {
			copy(p[n:n+min(c, 8-in)], blkHead[in:])
		}
		n += c
	}
}

func expect(off int64, n int) []byte {
	p := make([]byte, n)
	pattern(p, off)
	return p
}

// remote is a fake slow source: it counts what is fetched and can delay and fail.
type remote struct {
	size  int64
	delay time.Duration

	requests atomic.Int64
	bytes    atomic.Int64

	mu     sync.Mutex
	failAt map[int64]error // offset of a read → error to return
	perOff map[int64]int   // offset of a read → reads
}

func newRemote(size int64) *remote {
	return &remote{size: size, failAt: map[int64]error{}, perOff: map[int64]int{}}
}

func (r *remote) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	r.requests.Add(1)
	r.mu.Lock()
	r.perOff[off]++
	ferr := r.failAt[off]
	r.mu.Unlock()
	if r.delay > 0 {
		select {
		case <-time.After(r.delay):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if ferr != nil {
		return 0, ferr
	}
	if off >= r.size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > r.size-off {
		p, eof = p[:r.size-off], io.EOF
	}
	pattern(p, off)
	r.bytes.Add(int64(len(p)))
	return len(p), eof
}

func (r *remote) Size() int64  { return r.size }
func (r *remote) Name() string { return "https://esx.example/folder/disk-flat.vmdk" }
func (r *remote) Close() error { return nil }

func (r *remote) setFail(off int64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.failAt, off)
	} else {
		r.failAt[off] = err
	}
}

func (r *remote) reads(off int64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.perOff[off]
}

// memIndex is an in-memory Index that behaves like a persistent one across Cache instances. When
// check is set, MarkPresent verifies that the chunk's bytes are already in the cache file.
type memIndex struct {
	mu     sync.Mutex
	layout cache.Layout
	chunks map[int64]cache.ChunkInfo
	check  func(cache.ChunkInfo) error
	marks  int
}

func newMemIndex() *memIndex { return &memIndex{chunks: map[int64]cache.ChunkInfo{}} }

func (m *memIndex) Load(ctx context.Context, l cache.Layout) ([]cache.ChunkInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l != m.layout {
		m.layout = l
		clear(m.chunks)
		return nil, nil
	}
	var out []cache.ChunkInfo
	for _, c := range m.chunks {
		out = append(out, c)
	}
	return out, nil
}

func (m *memIndex) MarkPresent(ctx context.Context, cs []cache.ChunkInfo) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	// Check every chunk before recording any: each call is one atomic update.
	for _, c := range cs {
		if m.check != nil {
			if err := m.check(c); err != nil {
				return err
			}
		}
	}
	for _, c := range cs {
		m.chunks[c.Index] = c
	}
	m.marks++
	return nil
}

func (m *memIndex) Touch(ctx context.Context, cs []cache.ChunkInfo) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range cs {
		if _, ok := m.chunks[c.Index]; ok {
			m.chunks[c.Index] = c
		}
	}
	return nil
}

func (m *memIndex) Evict(ctx context.Context, idx []int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, i := range idx {
		delete(m.chunks, i)
	}
	return nil
}

func (m *memIndex) present(i int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.chunks[i]
	return ok
}

func (m *memIndex) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.chunks)
}

func checkBytes(got []byte, off int64) error {
	want := expect(off, len(got))
	if !bytes.Equal(got, want) {
		i := 0
		for got[i] == want[i] {
			i++
		}
		return fmt.Errorf("byte at %d: got %#x, want %#x", off+int64(i), got[i], want[i])
	}
	return nil
}
