package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// naiveFixScript is what a careful admin runs inside a VMware Debian guest copied to KVM
// (virt-customize --run, or guestfish sh): fstab by UUID, virtio in the initramfs, GRUB by
// UUID, and the NIC name re-pinned to the KVM NIC's MAC. Inside the appliance the guest's disk
// is /dev/sda. @MAC@ is replaced by the MAC the boot check gives the guest.
const naiveFixScript = `#!/bin/sh
set -eu
# 1. fstab: /dev/disk/by-path/...-partN and /dev/sdXN -> UUID= (the appliance sees /dev/sda).
cp /etc/fstab /etc/fstab.vmware
while read -r dev rest; do
	n=
	case "$dev" in
	/dev/disk/by-path/*-part[0-9]*) n=${dev##*-part} ;;
	/dev/sd[a-z][0-9]*) n=${dev#/dev/sd?} ;;
	esac
	if [ -n "$n" ]; then echo "UUID=$(blkid -s UUID -o value /dev/sda$n) $rest"; else echo "$dev $rest"; fi
done </etc/fstab.vmware >/etc/fstab
# 2. virtio drivers into the initramfs, and regenerate it (initramfs-tools or dracut).
if [ -d /etc/initramfs-tools ]; then
	printf '%s\n' virtio_pci virtio_blk virtio_scsi virtio_net >>/etc/initramfs-tools/modules
	update-initramfs -u -k all
else
	echo 'add_drivers+=" virtio_pci virtio_blk virtio_scsi virtio_net "' >/etc/dracut.conf.d/90-virtio.conf
	dracut -f --regenerate-all
fi
# 3. GRUB: root by UUID (the VMware build turned it off), then update-grub.
sed -i 's/^GRUB_DISABLE_LINUX_UUID=/#&/' /etc/default/grub
update-grub
# 4. network: the NIC name is pinned to the VMware MAC; pin it to the KVM NIC's MAC.
for f in /etc/systemd/network/*.link /etc/netplan/*.yaml; do
	[ -f "$f" ] || continue
	sed -i -e 's/^MACAddress=.*/MACAddress=@MAC@/' -e 's/macaddress: .*/macaddress: "@MAC@"/' "$f"
done
`

// Step is one timed step of a pipeline.
type Step struct {
	Name    string   `json:"name"`
	Command []string `json:"command"`
	Seconds float64  `json:"seconds"`
	OK      bool     `json:"ok"`
	Error   string   `json:"error,omitempty"`
	Load    string   `json:"load_before"`
}

// NaiveResult is the measure of download + convert + fix.
type NaiveResult struct {
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Log    string `json:"log"`
	Output string `json:"output,omitempty"`
	Script string `json:"fix_script"`
	Steps  []Step `json:"steps"`
	// Seconds: download + convert + the fix that worked. WithFailedSeconds adds fix attempts
	// that failed (virt-customize on a guest it cannot mount).
	Seconds           float64 `json:"seconds"`
	WithFailedSeconds float64 `json:"seconds_with_failed_attempts"`
	// PeakDownloadBytes: the staging folder (the downloaded chain) alone; PeakAllBytes: it and
	// the qcow2 together.
	PeakDownloadBytes int64       `json:"peak_staging_download_bytes"`
	PeakAllBytes      int64       `json:"peak_staging_incl_output_bytes"`
	HTTPBytes         int64       `json:"http_bytes"`
	Boot              *BootResult `json:"boot,omitempty"`
}

// runNaive downloads chain (file names served by srv) into dir/staging, converts the top to
// dir/naive.qcow2 and fixes it.
func (b *bench) runNaive(ctx context.Context, srv *httpServer, chain []string, dir string) NaiveResult {
	res := NaiveResult{Log: dir + ".log", Script: strings.ReplaceAll(naiveFixScript, "@MAC@", bootMAC)}
	staging := filepath.Join(dir, "staging")
	out := filepath.Join(dir, "naive.qcow2")
	if err := os.MkdirAll(staging, 0o755); err != nil {
		res.Error = err.Error()
		return res
	}
	script := filepath.Join(dir, "naive-fix.sh")
	if err := os.WriteFile(script, []byte(res.Script), 0o755); err != nil {
		res.Error = err.Error()
		return res
	}
	step := func(name string, env []string, args ...string) bool {
		st := Step{Name: name, Command: args, Load: loadAvg()}
		d, err := runLogged(ctx, b.stepTimeout, res.Log, env, args[0], args[1:]...)
		st.Seconds, st.OK = d.Seconds(), err == nil
		if err != nil {
			why := lastLines(res.Log, 3, "error", "warning")
			if len(why) == 0 {
				why = lastLines(res.Log, 3)
			}
			st.Error = fmt.Sprintf("%v: %s", err, strings.Join(why, " | "))
		}
		res.Steps = append(res.Steps, st)
		res.WithFailedSeconds += st.Seconds
		if st.OK {
			res.Seconds += st.Seconds
		}
		return st.OK
	}
	srv.Reset(ctx)
	smp := startSampler(b.interval, []string{staging}, []string{staging, out})
	// One curl for the whole chain: the files come one after another, as an admin's scp would.
	args := []string{"curl", "-sSf", "--output-dir", staging}
	for _, f := range chain {
		args = append(args, "-o", f, srv.URL+f)
	}
	ok := step("download", nil, args...) &&
		step("convert", nil, "qemu-img", "convert", "-f", "vmdk", "-O", "qcow2", filepath.Join(staging, chain[len(chain)-1]), out)
	peaks, _ := smp.stop()
	res.PeakDownloadBytes, res.PeakAllBytes = peaks[0], peaks[1]
	if st, err := srv.Stats(ctx); err == nil {
		res.HTTPBytes = st.Bytes
	}
	// The admin frees the download once the qcow2 exists.
	os.RemoveAll(staging)
	if !ok {
		res.Error = res.Steps[len(res.Steps)-1].Error
		return res
	}
	gfsEnv := []string{"LIBGUESTFS_BACKEND=direct", "LIBGUESTFS_BACKEND_SETTINGS=force_tcg"}
	if step("fix: virt-customize", gfsEnv, "virt-customize", "-a", out, "--run", script) {
		res.OK, res.Output = true, out
		return res
	}
	// virt-customize mounts the guest's filesystems by its fstab names, which do not exist in
	// the appliance when they are /dev/disk/by-path links: mount them by hand and run the same
	// script through guestfish.
	st := Step{Name: "fix: guestfish, mounted by hand", Command: []string{"guestfish", "--listen", "-a", out, "(see log)"}, Load: loadAvg()}
	start := time.Now()
	err := guestfishFix(ctx, b.stepTimeout, res.Log, gfsEnv, out, script)
	st.Seconds, st.OK = time.Since(start).Seconds(), err == nil
	res.WithFailedSeconds += st.Seconds
	if err != nil {
		st.Error = err.Error()
		res.Error = err.Error()
	} else {
		res.Seconds += st.Seconds
		res.OK, res.Output = true, out
	}
	res.Steps = append(res.Steps, st)
	return res
}

// guestfishFix runs script in the guest of disk through one guestfish appliance: inspect-os for
// the root, /etc/fstab's other filesystems mounted by partition number, then the script.
func guestfishFix(ctx context.Context, timeout time.Duration, logPath string, env []string, disk, script string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	listen := exec.CommandContext(ctx, "guestfish", "--listen", "-a", disk)
	listen.Env = append(os.Environ(), env...)
	listen.Stderr = lf
	outb, err := listen.Output()
	if err != nil {
		return fmt.Errorf("guestfish --listen: %w", err)
	}
	// "GUESTFISH_PID=1234; export GUESTFISH_PID"
	pid := strings.TrimPrefix(strings.SplitN(strings.TrimSpace(string(outb)), ";", 2)[0], "GUESTFISH_PID=")
	remote := func(args ...string) (string, error) {
		fmt.Fprintf(lf, "\n$ guestfish --remote=%s %s\n", pid, strings.Join(args, " "))
		c := exec.CommandContext(ctx, "guestfish", append([]string{"--remote=" + pid, "--"}, args...)...)
		c.Env = append(os.Environ(), env...)
		c.Stderr = lf
		o, err := c.Output()
		lf.Write(o)
		if err != nil {
			return "", fmt.Errorf("guestfish %s: %w (log %s)", args[0], err, logPath)
		}
		return strings.TrimSpace(string(o)), nil
	}
	defer remote("exit")
	if _, err := remote("run"); err != nil {
		return err
	}
	roots, err := remote("inspect-os")
	if err != nil {
		return err
	}
	root := strings.Fields(roots)
	if len(root) == 0 {
		return fmt.Errorf("guestfish: inspect-os found no operating system")
	}
	if _, err := remote("mount", root[0], "/"); err != nil {
		return err
	}
	devs, err := remote("list-devices")
	if err != nil || devs == "" {
		return fmt.Errorf("guestfish: list-devices: %v", err)
	}
	fstab, err := remote("cat", "/etc/fstab")
	if err != nil {
		return err
	}
	for _, m := range extraMounts(fstab, strings.Fields(devs)[0]) {
		if uuid, ok := strings.CutPrefix(m[0], "UUID="); ok {
			if m[0], err = remote("findfs-uuid", uuid); err != nil {
				return err
			}
		}
		if _, err := remote("mount", m[0], m[1]); err != nil {
			return err
		}
	}
	if _, err := remote("upload", script, "/tmp/naive-fix.sh"); err != nil {
		return err
	}
	if _, err := remote("sh", "sh /tmp/naive-fix.sh"); err != nil {
		return err
	}
	if _, err := remote("rm", "/tmp/naive-fix.sh"); err != nil {
		return err
	}
	if _, err := remote("umount-all"); err != nil {
		return err
	}
	// shutdown waits for the appliance to flush the disk.
	_, err = remote("shutdown")
	return err
}

// extraMounts returns [device, mountpoint] pairs for the fstab filesystems other than / and
// swap whose device names a partition of the guest's disk (by-path -partN or /dev/sdXN), as
// partitions of disk, the appliance's name of it (/dev/sda), or is UUID=… (left for the caller
// to resolve). Shorter mount points first.
func extraMounts(fstab, disk string) [][2]string {
	var out [][2]string
	for _, line := range strings.Split(fstab, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || strings.HasPrefix(f[0], "#") || f[1] == "/" || f[2] == "swap" || !strings.HasPrefix(f[1], "/") {
			continue
		}
		var n string
		switch {
		case strings.HasPrefix(f[0], "UUID="):
			out = append(out, [2]string{f[0], f[1]}) // resolved in the appliance
			continue
		case strings.HasPrefix(f[0], "/dev/disk/by-path/") && strings.Contains(f[0], "-part"):
			n = f[0][strings.LastIndex(f[0], "-part")+5:]
		case strings.HasPrefix(f[0], "/dev/sd") && len(f[0]) > len("/dev/sda"):
			n = f[0][len("/dev/sda"):]
		default:
			continue
		}
		if n == "" || strings.Trim(n, "0123456789") != "" {
			continue
		}
		out = append(out, [2]string{disk + n, f[1]})
	}
	// Parents before children: /boot before /boot/efi.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && len(out[j][1]) < len(out[j-1][1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
