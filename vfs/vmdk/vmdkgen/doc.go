// Package vmdkgen writes synthetic ESX snapshot links — ESX sparse ("COWD", createType
// vmfsSparse) and seSparse — for tests and benchmarks. Neither qemu-img nor any other tool at
// hand can create these formats, yet qemu reads both; tests write a link here and hold h2kvm's
// reader to `qemu-img convert -O raw` of the same files.
//
// A Link describes one link: its descriptor name, its parent (a descriptor file next to it, or
// none), the virtual size and the content as writes and zero-marked ranges. WriteCOWD and
// WriteSESparse write the descriptor NAME.vmdk and its extent (NAME-delta.vmdk or
// NAME-sesparse.vmdk) into a folder, laid out as qemu 7.2 accepts them:
//
//   - COWD: 2048-byte header (version 1, flags 3), grain directory at sector 4, grain tables of
//     4096 u32 entries allocated only where a grain is, grains after them. COWD has no
//     zero-grain marker: Zeros become allocated grains of zeros, and Unmapped is refused.
//   - seSparse: constant header (version 2.1, 4 KiB grains, 64-sector tables, flags and
//     reserved fields 0), volatile header (magic 0xcafecafe, no journal to replay), empty
//     journal, grain directory, grain tables, empty free bitmap and backmap, grains. Zeros
//     become type-2 entries and Unmapped type-1 entries (both read as zeros, hiding the parent).
//
// A grain that a write covers only in part is filled from Link.Parent when set (copy-on-write,
// as ESXi does), else with zeros. Link.Expected computes the bytes the link reads as over a
// given parent, so a test can compare any reader against it.
//
// The package is for tests: it builds metadata in memory (grain tables of the written areas)
// and holds every written grain in memory while writing.
package vmdkgen
