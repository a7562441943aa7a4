// Package overlay is the copy-on-write layer of h2kvm: a vfs.Writable over a read-only base
// vfs.Device (a flattened VMDK chain). The base is never written.
//
// # Contract
//
//   - Writes, zeroes and trims land in a sparse local overlay file (offset in the file = offset
//     in the device) at block granularity (Config.BlockSize, default 64 KiB). Every block is in
//     one state: Absent (reads fall through to the base), Data (bytes in the overlay file), Zeroed
//     or Trimmed (reads zeros, hiding the base).
//   - A write that covers part of an Absent block first copies the block from the base (or zeros
//     for a Zeroed/Trimmed block), applies the write, and writes the whole block: a block in
//     state Data always holds a complete block in the overlay file.
//   - Reads merge the overlay over the base. Extents report Data (Depth 0) for overlay data, Zero
//     (Depth 0) for zeroed and trimmed blocks (they hide the base, so a copy may skip them), and
//     the base's extents with Depth+1 elsewhere. A trim of whole blocks that are Absent where the
//     base already reads as a hole or zeros leaves them Absent (reported as the base reports them).
//   - The block map is kept as runs of blocks in one state (a sorted run map), so zeroing or
//     trimming a whole multi-TiB disk costs a run, not a map entry per block; whole blocks are
//     zeroed or trimmed a run at a time, Data blocks among them one at a time (each is punched).
//   - The block map is persisted through the MapStore interface (package store implements it over
//     bbolt; vfs imports no bbolt). Flush first fdatasyncs the overlay file, then commits every
//     block-state change made before Flush was called, as runs, in one MapStore Commit (which
//     the store may split into bounded transactions: atomic per block, see MapStore), and
//     advances the generation. After a crash (kill -9) and reopen, every write acknowledged
//     before a completed Flush reads back; later writes may be lost, a block at a time; a block
//     the map calls Data holds a whole block of bytes some client write put there (never a
//     half-copied block).
//   - Config.Discard removes the overlay file and the map on Close (a scratch overlay); otherwise
//     Close flushes and Open restores the overlay.
//
// All methods may be called concurrently. Writes to one block are serialized (striped per-block
// locks); reads are not serialized against anything and see each block before or after a
// concurrent write to it.
package overlay
