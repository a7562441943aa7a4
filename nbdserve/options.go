package nbdserve

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

// This file holds the pure parsers of option data sent by clients during the handshake. They
// take untrusted bytes and never panic (see FuzzParseOptions).

// infoRequest is the data of NBD_OPT_INFO and NBD_OPT_GO.
type infoRequest struct {
	name  string
	infos []uint16
}

// parseInfoRequest decodes: u32 name length, name, u16 count, count × u16 info type.
func parseInfoRequest(data []byte) (infoRequest, error) {
	if len(data) < 6 {
		return infoRequest{}, fmt.Errorf("info request of %d bytes, need at least 6", len(data))
	}
	nl := binary.BigEndian.Uint32(data)
	if uint64(nl) > uint64(len(data))-6 {
		return infoRequest{}, fmt.Errorf("export name length %d exceeds option length %d", nl, len(data))
	}
	name, err := checkString(data[4:4+nl], "export name")
	if err != nil {
		return infoRequest{}, err
	}
	rest := data[4+nl:]
	n := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*n {
		return infoRequest{}, fmt.Errorf("%d info requests announced, %d bytes follow", n, len(rest))
	}
	req := infoRequest{name: name, infos: make([]uint16, n)}
	for i := range n {
		req.infos[i] = binary.BigEndian.Uint16(rest[2*i:])
	}
	return req, nil
}

// metaRequest is the data of NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT.
type metaRequest struct {
	name    string
	queries []string
}

// parseMetaRequest decodes: u32 name length, name, u32 query count, count × (u32 length, query).
func parseMetaRequest(data []byte) (metaRequest, error) {
	if len(data) < 8 {
		return metaRequest{}, fmt.Errorf("meta context request of %d bytes, need at least 8", len(data))
	}
	nl := binary.BigEndian.Uint32(data)
	if uint64(nl) > uint64(len(data))-8 {
		return metaRequest{}, fmt.Errorf("export name length %d exceeds option length %d", nl, len(data))
	}
	name, err := checkString(data[4:4+nl], "export name")
	if err != nil {
		return metaRequest{}, err
	}
	rest := data[4+nl:]
	n := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if uint64(n)*4 > uint64(len(rest)) {
		return metaRequest{}, fmt.Errorf("%d queries announced, only %d bytes follow", n, len(rest))
	}
	req := metaRequest{name: name, queries: make([]string, 0, n)}
	for i := uint32(0); i < n; i++ {
		if len(rest) < 4 {
			return metaRequest{}, fmt.Errorf("query %d: truncated length", i)
		}
		ql := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(ql) > uint64(len(rest)) {
			return metaRequest{}, fmt.Errorf("query %d: length %d exceeds the %d bytes left", i, ql, len(rest))
		}
		q, err := checkString(rest[:ql], "query")
		if err != nil {
			return metaRequest{}, err
		}
		if !strings.Contains(q, ":") {
			return metaRequest{}, fmt.Errorf("query %q has no namespace", q)
		}
		req.queries = append(req.queries, q)
		rest = rest[ql:]
	}
	if len(rest) != 0 {
		return metaRequest{}, fmt.Errorf("%d stray bytes after the queries", len(rest))
	}
	return req, nil
}

// checkString enforces the protocol's rules for strings: UTF-8, no NUL, at most 4096 bytes.
func checkString(b []byte, what string) (string, error) {
	if len(b) > maxString {
		return "", fmt.Errorf("%s of %d bytes exceeds %d", what, len(b), maxString)
	}
	if !utf8.Valid(b) || strings.IndexByte(string(b), 0) >= 0 {
		return "", fmt.Errorf("%s is not valid UTF-8 without NUL", what)
	}
	return string(b), nil
}

// metaContext is a context the server offers.
type metaContext struct {
	id   uint32
	name string
}

var knownContexts = []metaContext{
	{ctxBaseAllocation, nameBaseAllocation},
	{ctxAllocationDepth, nameAllocationDepth},
}

// matchContexts returns the contexts selected by queries, each once, in the order of the
// queries. For LIST (list=true) zero queries select everything and a bare namespace ("base:",
// "qemu:") selects every context in it; SET matches exact names only. Unknown names are ignored.
func matchContexts(queries []string, list bool) []metaContext {
	if list && len(queries) == 0 {
		return append([]metaContext(nil), knownContexts...)
	}
	var out []metaContext
	seen := map[uint32]bool{}
	for _, q := range queries {
		for _, c := range knownContexts {
			ok := q == c.name
			if list && strings.HasSuffix(q, ":") && strings.HasPrefix(c.name, q) {
				ok = true
			}
			if ok && !seen[c.id] {
				seen[c.id] = true
				out = append(out, c)
			}
		}
	}
	return out
}
