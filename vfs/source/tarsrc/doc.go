// Package tarsrc reads members of a tar archive (an OVA) in place: a member is a vfs.Source
// over a byte range of the archive's own Source, local or remote. Nothing is extracted and
// nothing is copied; a member read is a ranged read of the archive.
//
// Walk builds the member index by reading only headers: one 512-byte block per member (plus
// the data of GNU long-name and PAX extended headers, at most MaxMetaSize bytes each), then
// jumping over the member's data. It understands ustar, GNU (long names 'L'/'K', base-256
// sizes) and PAX ('x' per-member path and size, 'g' global headers ignored).
//
// Untrusted input: Walk refuses, with ErrUnsafeMember naming the member and its header offset,
// any member whose name is absolute, contains a ".." element or a backslash-dotdot, any link
// (hard or symbolic), device, FIFO, GNU sparse or unknown member type, and any name used
// twice (an archive where a manifest could vouch for one copy while a reader reads another).
// A header with a bad checksum or an unreadable size is ErrCorrupt. An archive cut inside a
// member's data is not refused by Walk: the member is indexed with its declared size and
// Available bytes, and reading past what is there fails with vfs.ErrTruncated naming the
// member and offset.
//
// Locations: a member is named "ova:" + ARCHIVE + "#" + MEMBER, where ARCHIVE is any location
// the block layer opens (a local path, an https datastore URL, ssh://…) and MEMBER is the
// member's name, percent-escaped with url.PathEscape (so it holds no '#'); the last '#'
// separates the two. Example: ova:/srv/in/web.ova#web-disk1.vmdk. Location and Split build and
// take apart such names; Opener opens them through the Opener of the archive's own location.
//
// Verification: a random-access reader cannot verify a digest over bytes it reads partly and
// out of order. Digest reads a member completely, in order, and returns its hash; callers
// (package resolve) verify small members (the OVF, the manifest) eagerly and disks only when
// asked, and say which were verified.
package tarsrc
