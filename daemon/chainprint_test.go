package daemon

import (
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/store"
)

// TestChainChanges: every difference between a recorded chain and the chain now is named.
func TestChainChanges(t *testing.T) {
	was := &store.Chain{
		Links:    []store.ChainLink{{File: "top.vmdk", CID: "0000000a"}, {File: "base.vmdk", CID: "0000000b"}},
		Versions: map[string]string{"top.vmdk": "size=1", "base.vmdk": "size=2", "base-flat.vmdk": "size=3 etag=x"},
	}
	same := &store.Chain{Links: was.Links, Versions: map[string]string{"top.vmdk": "size=1", "base.vmdk": "size=2", "base-flat.vmdk": "size=3 etag=x"}}
	if c := chainChanges(same, was); len(c) != 0 {
		t.Errorf("same chain: %q", c)
	}
	for _, tc := range []struct {
		now  *store.Chain
		want string
	}{
		{&store.Chain{Links: []store.ChainLink{{File: "top.vmdk", CID: "0000000c"}, was.Links[1]}, Versions: same.Versions},
			"top.vmdk: CID 0000000c, it was 0000000a"},
		{&store.Chain{Links: []store.ChainLink{was.Links[0], {File: "other.vmdk"}}, Versions: same.Versions},
			"link 1 is other.vmdk, it was base.vmdk"},
		{&store.Chain{Links: was.Links[:1], Versions: same.Versions}, "the chain has 1 links, it had 2"},
		{&store.Chain{Links: was.Links, Versions: map[string]string{"top.vmdk": "size=1", "base.vmdk": "size=2", "base-flat.vmdk": "size=3 etag=y"}},
			`base-flat.vmdk: version "size=3 etag=y", it was "size=3 etag=x"`},
		{&store.Chain{Links: was.Links, Versions: map[string]string{"top.vmdk": "size=1", "base.vmdk": "size=2"}},
			"base-flat.vmdk is no longer read"},
	} {
		got := chainChanges(tc.now, was)
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("changes %q, want [%q]", strings.Join(got, "; "), tc.want)
		}
	}
}
