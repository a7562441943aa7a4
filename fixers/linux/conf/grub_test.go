package conf

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const vmwareGrub = `# If you change this file, run 'update-grub' afterwards.
GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=` + "`lsb_release -i -s 2> /dev/null || echo Debian`" + `
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"
#GRUB_DISABLE_LINUX_UUID=true
GRUB_DISABLE_LINUX_UUID=true
GRUB_DISABLE_LINUX_PARTUUID=true
GRUB_TERMINAL="console serial"
`

func TestShellVar(t *testing.T) {
	tests := []struct {
		text, key, want string
		found           bool
	}{
		{vmwareGrub, "GRUB_CMDLINE_LINUX", "console=tty0 console=ttyS0,115200n8", true},
		{vmwareGrub, "GRUB_DISABLE_LINUX_UUID", "true", true},
		{vmwareGrub, "GRUB_CMDLINE_LINUX_DEFAULT", "", true},
		{vmwareGrub, "GRUB_ENABLE_CRYPTODISK", "", false},
		{"export FOO='a b'\n", "FOO", "a b", true},
		{"FOO=\"x \\\"y\\\" \\$z\"", "FOO", `x "y" $z`, true},
		{"FOO=a\nFOO=b # comment\n", "FOO", "b", true},
		{"FOO=\"unterminated\n", "FOO", "", false},
		{"  FOO=1;BAR=2\n", "FOO", "1", true},
		{"1FOO=x\nfoo-bar=y\n", "1FOO", "", false},
	}
	for _, tc := range tests {
		got, found := ShellVar(tc.text, tc.key)
		if got != tc.want || found != tc.found {
			t.Errorf("ShellVar(%q, %s) = %q %v, want %q %v", tc.text, tc.key, got, found, tc.want, tc.found)
		}
	}
}

func TestSetShellVar(t *testing.T) {
	tests := []struct {
		name, text, key, value, want string
		changed                      bool
	}{
		{"replace last", "A=1\nB=2\nA=3\n", "A", "x y", "A=1\nB=2\nA=\"x y\"\n", true},
		{"append", "A=1", "B", "2", "A=1\nB=\"2\"\n", true},
		{"unchanged", "A=\"x\"\n", "A", "x", "A=\"x\"\n", false},
		{"export kept", "export A=1\n", "A", "2", "export A=\"2\"\n", true},
		{"quotes escaped", "", "A", `say "hi" \ ok`, "A=\"say \\\"hi\\\" \\\\ ok\"\n", true},
		{"dollar kept", "GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX quiet\"\n", "GRUB_CMDLINE_LINUX", "$GRUB_CMDLINE_LINUX quiet root=UUID=1",
			"GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX quiet root=UUID=1\"\n", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ch := SetShellVar(tc.text, tc.key, tc.value)
			if got != tc.want || ch != tc.changed {
				t.Errorf("got %q %v, want %q %v", got, ch, tc.want, tc.changed)
			}
			if v, _ := ShellVar(got, tc.key); v != tc.value {
				t.Errorf("read back %q, want %q", v, tc.value)
			}
			if again, ch := SetShellVar(got, tc.key, tc.value); ch || again != got {
				t.Errorf("not idempotent")
			}
		})
	}
}

func TestGrubDefaultRewrite(t *testing.T) {
	// The edits the GRUB fixer makes, on the VMware guest's file.
	out, ch := CommentOutShellVar(vmwareGrub, "GRUB_DISABLE_LINUX_UUID", IsTrue, "h2kvm")
	if !ch || strings.Contains(out, "\nGRUB_DISABLE_LINUX_UUID=true\n") || !strings.Contains(out, "#GRUB_DISABLE_LINUX_UUID=true  # h2kvm\n") {
		t.Fatalf("GRUB_DISABLE_LINUX_UUID not commented out:\n%s", out)
	}
	if v, found := ShellVar(out, "GRUB_DISABLE_LINUX_UUID"); found {
		t.Errorf("still set: %q", v)
	}
	if v, _ := ShellVar(out, "GRUB_DISABLE_LINUX_PARTUUID"); v != "true" {
		t.Errorf("unrelated variable lost: %q", v)
	}
	if _, ch := CommentOutShellVar(out, "GRUB_DISABLE_LINUX_UUID", IsTrue, "h2kvm"); ch {
		t.Error("second comment-out changed the file")
	}
	if _, ch := CommentOutShellVar("GRUB_DISABLE_LINUX_UUID=false\n", "GRUB_DISABLE_LINUX_UUID", IsTrue, "h2kvm"); ch {
		t.Error("false value commented out")
	}
	out2, ch := DeleteShellVar("A=1\nB=2\nA=3\n", "A")
	if !ch || out2 != "B=2\n" {
		t.Errorf("DeleteShellVar: %q", out2)
	}
}

func TestCmdline(t *testing.T) {
	repl := map[string]string{"/dev/sda1": "UUID=r", "/dev/sda2": "UUID=s"}
	tests := []struct {
		in, key, want string
		changed       bool
	}{
		{"BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro  quiet", "root", "BOOT_IMAGE=/boot/vmlinuz root=UUID=r ro  quiet", true},
		{"root=UUID=r ro", "root", "root=UUID=r ro", false},
		{"resume=/dev/sda2 root=/dev/sda1", "resume", "resume=UUID=s root=/dev/sda1", true},
		{"notroot=/dev/sda1 xroot=/dev/sda1", "root", "notroot=/dev/sda1 xroot=/dev/sda1", false},
		{"", "root", "", false},
		// Every ASCII space separates words, for finding and for rewriting alike.
		{"root=/dev/sda1\v", "root", "root=UUID=r\v", true},
		{"ro\froot=/dev/sda1\rquiet", "root", "ro\froot=UUID=r\rquiet", true},
	}
	for _, tc := range tests {
		got, ch := CmdlineReplaceValues(tc.in, tc.key, repl)
		if got != tc.want || ch != tc.changed {
			t.Errorf("CmdlineReplaceValues(%q) = %q %v, want %q %v", tc.in, got, ch, tc.want, tc.changed)
		}
	}
	consoles := []struct {
		in, want string
		changed  bool
	}{
		{"quiet", "quiet console=tty0 console=ttyS0,115200", true},
		{"", "console=tty0 console=ttyS0,115200", true},
		{"console=tty1 ", "console=tty1 console=ttyS0,115200", true},
		{"console=tty0 console=ttyS0,115200n8", "console=tty0 console=ttyS0,115200n8", false},
		{"console=ttyS0", "console=ttyS0", false},
		{"console=ttyS1", "console=ttyS1 console=ttyS0,115200", true},
	}
	for _, tc := range consoles {
		got, ch := EnsureSerialConsole(tc.in)
		if got != tc.want || ch != tc.changed {
			t.Errorf("EnsureSerialConsole(%q) = %q %v, want %q %v", tc.in, got, ch, tc.want, tc.changed)
		}
	}
}

const grubCfg = `menuentry 'Debian GNU/Linux' --class debian {
	load_video
	insmod ext2
	set root='hd0,msdos1'
	echo	'Loading Linux 6.1.0-28-amd64 ...'
	linux	/boot/vmlinuz-6.1.0-28-amd64 root=/dev/sda1 ro console=tty0 console=ttyS0,115200n8
	initrd	/boot/initrd.img-6.1.0-28-amd64
}
submenu 'Advanced options' {
	menuentry 'recovery' {
		linux16 /vmlinuz-x root=UUID=abc ro single
		linuxefi /vmlinuz-y
	}
}
`

func TestGrubKernelLines(t *testing.T) {
	got := GrubKernelLines(grubCfg)
	if len(got) != 3 || got[2].Kernel != "/vmlinuz-y" || got[2].Args != "" {
		t.Fatalf("got %d lines: %+v", len(got), got)
	}
	if got[0].Line != 5 || got[0].Kernel != "/boot/vmlinuz-6.1.0-28-amd64" || got[0].Args != "root=/dev/sda1 ro console=tty0 console=ttyS0,115200n8" {
		t.Errorf("first: %+v", got[0])
	}
	if got[1].Command != "linux16" || got[1].Args != "root=UUID=abc ro single" {
		t.Errorf("second: %+v", got[1])
	}
	bls := "title Fedora\nversion 6.1\nlinux /vmlinuz\noptions root=/dev/sda1 ro rhgb\noptionsx no\n"
	o := BLSOptions(bls)
	if len(o) != 1 || o[0].Args != "root=/dev/sda1 ro rhgb" || o[0].Line != 3 {
		t.Errorf("BLSOptions: %+v", o)
	}
	out, ch := ReplaceBLSOptions(bls, "root", map[string]string{"/dev/sda1": "UUID=r"})
	if !ch || !strings.Contains(out, "options root=UUID=r ro rhgb\n") {
		t.Errorf("ReplaceBLSOptions: %q", out)
	}
}

func FuzzGrubDefault(f *testing.F) {
	f.Add(vmwareGrub, "GRUB_CMDLINE_LINUX", "root=/dev/sda1 quiet")
	f.Add("export A='x'\"y\"\\z\nA=\"", "A", "$A \"q\"")
	f.Fuzz(func(t *testing.T, text, key, value string) {
		ShellVars(text)
		GrubKernelLines(text)
		BLSOptions(text)
		if k, _, ok := parseAssignment(key + "=x"); !ok || k != key || strings.ContainsAny(value, "\n\r") {
			return
		}
		out, _ := SetShellVar(text, key, value)
		if got, found := ShellVar(out, key); !found || got != value {
			t.Fatalf("SetShellVar(%q, %q, %q) = %q reads back %q %v", text, key, value, out, got, found)
		}
		if again, ch := SetShellVar(out, key, value); ch || again != out {
			t.Fatalf("not idempotent")
		}
		cl, _ := EnsureSerialConsole(value)
		if !HasSerialConsole(cl) {
			t.Fatalf("EnsureSerialConsole(%q) = %q lacks ttyS0", value, cl)
		}
		repl := map[string]string{}
		for _, v := range CmdlineValues(value, "root") {
			repl[v] = "UUID=1"
		}
		r, _ := CmdlineReplaceValues(value, "root", repl)
		for _, v := range CmdlineValues(r, "root") {
			if v != "UUID=1" {
				t.Fatalf("root=%q left in %q", v, r)
			}
		}
	})
}

// FuzzCmdline: the values CmdlineValues finds for a key are exactly those
// CmdlineReplaceValues rewrites, and nothing else of the line changes.
func FuzzCmdline(f *testing.F) {
	f.Add("BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro  quiet", "root")
	f.Add("root=/dev/sda1\v resume=/dev/sda2\f\rroot=x", "root")
	f.Add("\u00a0root=a\u2028root=b root=root=c", "root")
	f.Add("a==b =c", "")
	f.Fuzz(func(t *testing.T, cmdline, key string) {
		found := CmdlineValues(cmdline, key)
		repl := map[string]string{}
		for i, v := range found {
			if _, ok := repl[v]; !ok {
				repl[v] = fmt.Sprintf("UUID=h2kvm-%d", i)
			}
		}
		out, changed := CmdlineReplaceValues(cmdline, key, repl)
		var want []string
		wantChanged := false
		for _, v := range found {
			want = append(want, repl[v])
			wantChanged = wantChanged || repl[v] != v
		}
		if got := CmdlineValues(out, key); !reflect.DeepEqual(got, want) {
			t.Fatalf("CmdlineReplaceValues(%q, %q) = %q: values %q, want %q", cmdline, key, out, got, want)
		}
		if changed != wantChanged || (out != cmdline) != wantChanged {
			t.Fatalf("CmdlineReplaceValues(%q, %q) = %q, changed %v, want %v", cmdline, key, out, changed, wantChanged)
		}
		if v, ok := CmdlineGet(out, key); ok != (len(want) > 0) || ok && v != want[len(want)-1] {
			t.Fatalf("CmdlineGet(%q, %q) = %q %v, want the last of %q", out, key, v, ok, want)
		}
		// The words that are not key=value keep their place and spacing.
		ws, wo := cmdlineWords(cmdline), cmdlineWords(out)
		if len(ws) != len(wo) {
			t.Fatalf("%q has %d words, %q %d", cmdline, len(ws), out, len(wo))
		}
		for i := range ws {
			a, b := cmdline[ws[i][0]:ws[i][1]], out[wo[i][0]:wo[i][1]]
			if _, isKey := strings.CutPrefix(a, key+"="); !isKey && a != b {
				t.Fatalf("word %d %q became %q", i, a, b)
			}
		}
	})
}
