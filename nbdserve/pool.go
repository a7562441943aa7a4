package nbdserve

import (
	"math/bits"
	"sync"
)

// Payload buffers are pooled by power-of-two size class so that the READ and WRITE paths do
// not allocate per request. Classes run from 4 KiB to MaxPayload.
const (
	minBufShift = 12
	maxBufShift = 25 // 32 MiB == MaxPayload
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// getBuf returns a buffer of length n (n <= MaxPayload). Its contents are undefined.
func getBuf(n int) *[]byte {
	cl := bufClass(n)
	if p, ok := bufPools[cl].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, 1<<(cl+minBufShift))
	return &b
}

// putBuf returns a buffer obtained from getBuf to its pool.
func putBuf(p *[]byte) {
	if p == nil {
		return
	}
	c := cap(*p)
	cl := bufClass(c)
	if c != 1<<(cl+minBufShift) || cl >= len(bufPools) {
		return
	}
	bufPools[cl].Put(p)
}
