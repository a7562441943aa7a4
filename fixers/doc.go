// Package fixers holds what every guest fixer shares: the record of a change made to a guest
// (Change) and the report of one run of fixes (Report). The fixers themselves live in
// sub-packages: fixers/linux for Linux guests, fixers/windows for Windows guests (the two never
// import each other), fixers/gfs for opening libguestfs sessions.
//
// Each fixer implements Fixer and is listed explicitly in fixers/all (no init registration).
// The pipeline detects the guest's OS once (Select: libguestfs inspection, then the first
// fixer whose Detect accepts it), and keeps the chosen fixer's name, facts and plan (opaque
// JSON only that fixer decodes) in its job record. A guest no fixer handles, or one a fixer
// refuses, gets an error wrapping ErrNoOS, ErrUnsupported or ErrNotBootable (IsRefusal).
//
// Contract for every fixer:
//   - It is offline: it changes the guest's disks through libguestfs, never a running guest.
//   - It is idempotent: running it on its own output records no change.
//   - It records every file it writes, creates or deletes, and every guest command it runs,
//     as a Change with the content before and after, so a report can be reviewed and a change
//     undone by hand. Report.Add redacts the values of secret settings in that content
//     (Redact): Wi-Fi PSKs, 802.1x, VPN and WireGuard secrets never reach a report.
package fixers
