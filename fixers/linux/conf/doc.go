// Package conf parses and rewrites the Linux configuration files the h2kvm Linux fixers touch:
// /etc/fstab and /etc/crypttab, /etc/default/grub and grub.cfg kernel lines, kernel command
// lines, kernel module lists (modules.dep, modules.builtin, initramfs-tools, dracut,
// mkinitcpio), ifupdown interfaces, netplan YAML, systemd .link/.network files, NetworkManager
// keyfiles, ifcfg files and udev persistent-net rules.
//
// Contract:
//   - Every function is pure: text in, text out. Nothing here touches a guest or the host.
//   - Rewrites are minimal and layout-preserving: untouched lines (comments, blank lines, odd
//     whitespace, unknown keys) come back byte for byte, so a before/after diff shows only
//     what a fixer meant to change.
//   - Rewrites are idempotent: applying one to its own output returns the output unchanged,
//     and reports changed == false.
//   - Input is untrusted guest data: malformed lines are kept verbatim and never cause a panic
//     (the parsers are fuzzed: FuzzFstab, FuzzGrubDefault, FuzzCmdline, FuzzNetworkConfig,
//     FuzzKeyfile, FuzzSystemdMatch, FuzzNetplan, FuzzModuleList, FuzzPackageStatus,
//     FuzzDracutConf; each finds its properties' faults within seconds, run one with
//     go test -run X -fuzz FuzzKeyfile -fuzztime 10s ./fixers/linux/conf).
//   - Kernel command lines are split into words at ASCII whitespace by one tokenizer, so a
//     value CmdlineValues finds is one CmdlineReplaceValues rewrites.
//
// Caveats: the netplan editor is line based (no YAML library is available to the project); it
// understands the block style netplan's own documentation and installers write, and leaves
// flow-style mappings ({ ... }) alone.
package conf
