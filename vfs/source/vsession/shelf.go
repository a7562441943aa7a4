package vsession

import (
	"context"
	"errors"
	"strings"
	"sync"
)

// Shelf holds live sessions for others to use: the inventory resolver logs in once, puts its
// session on the shelf, and the datastore openers that read the VM's disks afterwards take it
// instead of logging in again. The shelf's owner logs the sessions out with Close. A nil
// *Shelf is empty. It is safe for concurrent use.
type Shelf struct {
	mu   sync.Mutex
	list []*Session
	kept map[*Session]bool // lent, not to be logged out (a session saved for reuse)
}

// NewShelf returns an empty shelf.
func NewShelf() *Shelf { return &Shelf{} }

// Put places s on the shelf; the shelf now logs it out at Close.
func (sh *Shelf) Put(s *Session) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.list = append(sh.list, s)
}

// Lend places s on the shelf for use only: Close leaves it logged in (its owner keeps it, e.g.
// saved in a session file for the next run).
func (sh *Shelf) Lend(s *Session) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.list = append(sh.list, s)
	if sh.kept == nil {
		sh.kept = map[*Session]bool{}
	}
	sh.kept[s] = true
}

// Get returns a live session of host (host[:port], as in a URL) for user, or nil. An empty
// user takes a session of any user.
func (sh *Shelf) Get(host, user string) *Session {
	if sh == nil {
		return nil
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, s := range sh.list {
		if _, closed := s.state(); closed {
			continue
		}
		if strings.EqualFold(s.Host(), host) && (user == "" || s.User() == user) {
			return s
		}
	}
	return nil
}

// Len is the number of sessions on the shelf.
func (sh *Shelf) Len() int {
	if sh == nil {
		return 0
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return len(sh.list)
}

// Close logs out every session put on the shelf (not those lent) and empties it.
func (sh *Shelf) Close(ctx context.Context) error {
	if sh == nil {
		return nil
	}
	sh.mu.Lock()
	list, kept := sh.list, sh.kept
	sh.list, sh.kept = nil, nil
	sh.mu.Unlock()
	var errs []error
	for _, s := range list {
		if !kept[s] {
			errs = append(errs, s.Logout(ctx))
		}
	}
	return errors.Join(errs...)
}
