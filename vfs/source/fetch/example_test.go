package fetch_test

import (
	"context"
	"fmt"

	"github.com/h2kvm/h2kvm/vfs/source/fetch"
	"github.com/h2kvm/h2kvm/vfs/source/retry"
	"github.com/h2kvm/h2kvm/vfs/source/stats"
)

// A remote source writes only its one-chunk fetch; Reader bounds, chunks, retries and counts.
func ExampleReader() {
	file := []byte("0123456789abcdefghij")
	var st stats.Counter
	r := fetch.Reader{
		Subsystem: "mem", Name: "mem://file", Size: int64(len(file)), Chunk: 8, Stats: &st,
		Retry: retry.Policy{Attempts: 3},
		Fetch: func(ctx context.Context, p []byte, off int64) (int, error) {
			fmt.Printf("fetch %d bytes at %d\n", len(p), off)
			return copy(p, file[off:]), nil
		},
	}
	p := make([]byte, 32)
	n, err := r.ReadAt(context.Background(), p, 3)
	fmt.Printf("%d %q %v, %d bytes counted\n", n, p[:n], err, st.Snapshot().BytesFetched)
	// Output:
	// fetch 8 bytes at 3
	// fetch 8 bytes at 11
	// fetch 1 bytes at 19
	// 17 "3456789abcdefghij" EOF, 17 bytes counted
}

// A pool of at most two connections: the second Get reuses the first connection handed back.
func ExamplePool() {
	dials := 0
	p := fetch.NewPool(fetch.PoolConfig[int]{
		Size:  2,
		Dial:  func(ctx context.Context) (int, error) { dials++; return dials, nil },
		Close: func(c int) { fmt.Println("close", c) },
	})
	ctx := context.Background()
	c, _ := p.Get(ctx)
	p.Put(c)
	c, _ = p.Get(ctx)
	fmt.Println("conn", c, "dials", dials)
	p.Put(c)
	p.Close()
	// Output:
	// conn 1 dials 1
	// close 1
}
