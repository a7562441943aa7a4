package source

import (
	"net/url"
	"sort"
	"strings"

	"github.com/h2kvm/h2kvm/vfs/source/tarsrc"
)

// publicParams are the query parameters whose values Redact keeps: they say which datacenter,
// datastore, VM or snapshot a location names and grant nothing. Every other parameter (a
// presigned URL's signature, an access token, a session id) keeps its name and loses its value.
var publicParams = map[string]bool{"dcPath": true, "dsName": true, "moref": true, "snapshot": true}

// Redacted is what Redact puts in place of a query value.
const Redacted = "REDACTED"

// Redact returns location fit for a log line or an NBD export description, which anybody who
// can list the exports reads: user information removed from URLs (a password entirely, and the
// user name too), and the value of every query parameter but dcPath, dsName, moref and
// snapshot replaced by REDACTED. The path is kept: it is what a person recognises. A local path
// comes back as it is; an ova:ARCHIVE#MEMBER location has its archive redacted. A URL that does
// not parse loses everything from its first '?' or '#'.
func Redact(location string) string {
	if tarsrc.IsLocation(location) {
		if archive, member, err := tarsrc.Split(location); err == nil {
			return tarsrc.Location(Redact(archive), member)
		}
	}
	if !strings.Contains(location, "://") {
		return location
	}
	u, err := url.Parse(location)
	if err != nil {
		if i := strings.IndexAny(location, "?#@"); i >= 0 {
			return location[:i]
		}
		return location
	}
	u.User = nil
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			u.RawQuery = Redacted
		} else {
			keys := make([]string, 0, len(q))
			for k := range q {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var b strings.Builder
			for _, k := range keys {
				for _, v := range q[k] {
					if b.Len() > 0 {
						b.WriteByte('&')
					}
					if !publicParams[k] {
						v = Redacted
					}
					b.WriteString(url.QueryEscape(k) + "=" + url.QueryEscape(v))
				}
			}
			u.RawQuery = b.String()
		}
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}
