package vmdk

import (
	"container/list"
	"sync"
)

// lru is a small bounded least-recently-used map, safe for concurrent use. It holds grain tables
// and inflated stream grains so that a sequential read does not fetch the same metadata once
// per grain. Values MUST NOT be modified after put.
type lru[K comparable, V any] struct {
	max int

	mu    sync.Mutex
	order *list.List          // guarded by mu; front = most recently used; elements hold *lruItem
	items map[K]*list.Element // guarded by mu
}

type lruItem[K comparable, V any] struct {
	k K
	v V
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, order: list.New(), items: map[K]*list.Element{}}
}

func (c *lru[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*lruItem[K, V]).v, true
	}
	var zero V
	return zero, false
}

func (c *lru[K, V]) put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		e.Value.(*lruItem[K, V]).v = v
		c.order.MoveToFront(e)
		return
	}
	c.items[k] = c.order.PushFront(&lruItem[K, V]{k, v})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*lruItem[K, V]).k)
	}
}
