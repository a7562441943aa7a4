package linux

import (
	"fmt"
	"strings"

	"github.com/h2kvm/h2kvm/fixers/linux/conf"
)

// inspectFirmware decides BIOS or UEFI: an EFI system partition that the guest mounts (or that
// holds an EFI directory) means UEFI.
func inspectFirmware(x guest, f *Facts) error {
	f.Firmware = "bios"
	for _, fs := range f.Filesystems {
		if fs.GPTType == ESPType {
			f.ESP = fs.Device
		}
	}
	for _, e := range f.Fstab {
		if e.MountPoint == "/boot/efi" || e.MountPoint == "/efi" {
			if f.ESP == "" {
				f.ESP = e.Device
			}
			f.Firmware = "uefi"
		}
	}
	if f.ESP != "" && x.isDir("/boot/efi/EFI") {
		f.Firmware = "uefi"
	}
	return nil
}

// grubConfigs are the places grub.cfg lives, BIOS ones first.
var grubConfigs = []string{"/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"}

// inspectBoot reads the GRUB configuration: /etc/default/grub, every grub.cfg and BLS entry,
// device.map, and the tool that regenerates grub.cfg.
func inspectBoot(x guest, f *Facts) error {
	b := &f.Boot
	if t, found, err := x.readFile("/etc/default/grub"); err != nil {
		return fmt.Errorf("linux: inspect: %w", err)
	} else if found {
		b.DefaultFile = "/etc/default/grub"
		vars := conf.ShellVars(t)
		b.CmdlineLinux = vars["GRUB_CMDLINE_LINUX"]
		b.CmdlineDefault = vars["GRUB_CMDLINE_LINUX_DEFAULT"]
		b.DisableLinuxUUID = conf.IsTrue(vars["GRUB_DISABLE_LINUX_UUID"])
	}
	cfgs := append([]string{}, grubConfigs...)
	cfgs = append(cfgs, x.glob("/boot/efi/EFI/*/grub.cfg")...)
	for _, c := range cfgs {
		t, found, err := x.readFile(c)
		if err != nil || !found {
			continue
		}
		lines := conf.GrubKernelLines(t)
		if len(lines) == 0 && strings.Contains(t, "configfile") {
			// A UEFI stub that only chains to the real grub.cfg.
			continue
		}
		b.Configs = append(b.Configs, c)
		for _, kl := range lines {
			b.Entries = append(b.Entries, bootEntry(c, kl))
		}
	}
	for _, c := range x.glob("/boot/loader/entries/*.conf") {
		if t, found, _ := x.readFile(c); found {
			for _, kl := range conf.BLSOptions(t) {
				b.Entries = append(b.Entries, bootEntry(c, kl))
			}
		}
	}
	for _, d := range []string{"/boot/grub/device.map", "/boot/grub2/device.map"} {
		if x.isFile(d) {
			b.DeviceMap = d
		}
	}
	switch {
	case x.hasCommand("update-grub") != "":
		b.Mkconfig = []string{"update-grub"}
	case x.hasCommand("grub2-mkconfig") != "":
		out := "/boot/grub2/grub.cfg"
		if len(b.Configs) > 0 {
			out = b.Configs[0]
		}
		b.Mkconfig = []string{"grub2-mkconfig", "-o", out}
	case x.hasCommand("grub-mkconfig") != "":
		out := "/boot/grub/grub.cfg"
		if len(b.Configs) > 0 {
			out = b.Configs[0]
		}
		b.Mkconfig = []string{"grub-mkconfig", "-o", out}
	}
	switch {
	case len(b.Configs) > 0 || b.DefaultFile != "" || len(b.Mkconfig) > 0:
		b.Kind = "grub2"
	case x.isFile("/boot/grub/menu.lst"):
		b.Kind = "grub-legacy"
	case x.isFile("/boot/extlinux/extlinux.conf") || x.isFile("/boot/syslinux/syslinux.cfg"):
		b.Kind = "extlinux"
	case len(x.glob("/boot/loader/entries/*.conf")) > 0:
		b.Kind = "systemd-boot"
	}
	return nil
}

func bootEntry(file string, kl conf.KernelLine) BootEntry {
	e := BootEntry{File: file, Line: kl.Line, Kernel: kl.Kernel, Args: kl.Args}
	e.Root, _ = conf.CmdlineGet(kl.Args, "root")
	e.Resume, _ = conf.CmdlineGet(kl.Args, "resume")
	e.Console = conf.HasSerialConsole(kl.Args)
	return e
}
