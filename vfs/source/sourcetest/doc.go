// Package sourcetest is the contract suite of vfs.Source and vfs.Opener, run against every
// implementation (as restic runs its backend test suite against every backend): local files,
// OVA members (tarsrc), HTTP (httpsrc), SFTP (sftpsrc) and NBD (nbdsrc).
//
// An implementation's test calls Run with a constructor that serves given bytes as a file and
// returns a Fixture: the Opener, the file's name and, where the implementation allows, hooks
// that inject transient faults. Run checks, against the reference bytes:
//   - Size, and byte-exact reads at many offsets and lengths around 0, block edges and the end;
//   - a short read only at the end, with io.EOF itself; reads at or past the end return 0,
//     io.EOF; a negative offset is an error;
//   - parallel reads (run it with -race);
//   - a cancelled or expired context returns ctx.Err() unwrapped from ReadAt (and from Open,
//     unless Open succeeds without I/O), also while the server holds the read (Stall), and the
//     source still reads afterwards;
//   - fetched bytes are counted when the source reports statistics (stats.Reporter);
//   - retries: faults within the budget are absorbed, a spent budget wraps vfs.ErrTransient
//     and names the file and the offset, and the source recovers when the fault ends;
//   - Resolve refuses names that leave the Opener's tree with vfs.ErrChain; a file resolves
//     its own name; a missing file fails to open with vfs.ErrNotFound.
//
// It is for tests only (internal/layers forbids importing it from other code).
package sourcetest
