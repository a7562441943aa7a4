package fixers_test

import (
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/fixers"
)

// wifiKeyfile is a NetworkManager keyfile of a WPA2-Enterprise connection with its secrets
// stored in the file (the default for system connections).
const wifiKeyfile = `[connection]
id=office
type=wifi

[wifi]
mac-address=00:50:56:aa:bb:cc
ssid=office

[wifi-security]
key-mgmt=wpa-eap
psk=hunter2-psk
psk-flags=0
wep-key0=hunter2-wep
leap-password=hunter2-leap

[802-1x]
eap=peap;
identity=alice
password=hunter2-8021x
private-key-password=hunter2-pkey
phase2-private-key-password = hunter2-phase2

[vpn-secrets]
cert-pass=hunter2-vpn

[wireguard]
private-key=hunter2-wg
`

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"keyfile", wifiKeyfile, strings.NewReplacer(
			"psk=hunter2-psk", "psk=[redacted]", "wep-key0=hunter2-wep", "wep-key0=[redacted]",
			"leap-password=hunter2-leap", "leap-password=[redacted]", "password=hunter2-8021x", "password=[redacted]",
			"private-key-password=hunter2-pkey", "private-key-password=[redacted]",
			"phase2-private-key-password = hunter2-phase2", "phase2-private-key-password = [redacted]",
			"cert-pass=hunter2-vpn", "cert-pass=[redacted]", "private-key=hunter2-wg", "private-key=[redacted]").Replace(wifiKeyfile)},
		{"netplan", "network:\n  wifis:\n    wlan0:\n      access-points:\n        \"office\":\n          password: \"hunter2\"\n          auth:\n            key-management: eap\n            password: hunter2\n",
			"network:\n  wifis:\n    wlan0:\n      access-points:\n        \"office\":\n          password: [redacted]\n          auth:\n            key-management: eap\n            password: [redacted]\n"},
		{"ifcfg", "TYPE=Wireless\nKEY_MGMT=WPA-PSK\nWPA_PSK='hunter2'\nIEEE_8021X_PASSWORD=\"hunter2\"\nKEY1=s:hunter2\nHWADDR=00:50:56:aa:bb:cc\n",
			"TYPE=Wireless\nKEY_MGMT=WPA-PSK\nWPA_PSK=[redacted]\nIEEE_8021X_PASSWORD=[redacted]\nKEY1=[redacted]\nHWADDR=00:50:56:aa:bb:cc\n"},
		{"ifupdown", "iface wlan0 inet dhcp\n    wpa-ssid office\n    wpa-psk hunter2\n    hwaddress ether 00:50:56:aa:bb:cc\n",
			"iface wlan0 inet dhcp\n    wpa-ssid office\n    wpa-psk [redacted]\n    hwaddress ether 00:50:56:aa:bb:cc\n"},
		{"commented out", "#psk=hunter2  # h2kvm\n", "#psk=[redacted]\n"},
		{"quoted key", `  "password": "hunter2"`, `  "password": [redacted]`},
		{"systemd", "[WireGuard]\nPrivateKey=hunter2\n[WireGuardPeer]\nPresharedKey=hunter2\nPublicKey=pub\n",
			"[WireGuard]\nPrivateKey=[redacted]\n[WireGuardPeer]\nPresharedKey=[redacted]\nPublicKey=pub\n"},
		{"yaml block", "auth:\n  password: |-\n    hunter2\n\n    hunter2\n  method: peap\n", "auth:\n  password: [redacted]\n    [redacted]\n\n    [redacted]\n  method: peap\n"},
		{"nothing secret", "[ethernet]\nmac-address=00:50:56:aa:bb:cc\n", "[ethernet]\nmac-address=00:50:56:aa:bb:cc\n"},
		{"empty value", "psk=\npassword:\n", "psk=\npassword:\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fixers.Redact(tc.in)
			if got != tc.want {
				t.Errorf("Redact:\n%s\nwant:\n%s", got, tc.want)
			}
			if strings.Contains(got, "hunter2") {
				t.Errorf("a secret is left:\n%s", got)
			}
			if again := fixers.Redact(got); again != got {
				t.Errorf("not idempotent:\n%s", again)
			}
		})
	}
}

// TestReportAddRedacts: a change recorded with Report.Add carries no secret.
func TestReportAddRedacts(t *testing.T) {
	var r fixers.Report
	after := strings.Replace(wifiKeyfile, "mac-address=", "#mac-address=", 1)
	r.Add(fixers.Change{Fix: "network", File: "/etc/NetworkManager/system-connections/office.nmconnection",
		Action: fixers.ActionModify, Before: wifiKeyfile, After: after})
	c := r.Changes[0]
	for _, s := range []string{c.Before, c.After} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("recorded change holds a secret:\n%s", s)
		}
		if !strings.Contains(s, "mac-address=00:50:56:aa:bb:cc") || !strings.Contains(s, "psk=[redacted]") {
			t.Errorf("recorded change lost what it changed:\n%s", s)
		}
	}
}

func FuzzRedact(f *testing.F) {
	f.Add(wifiKeyfile, "hunter2")
	f.Add("  - 'psk': x\n#;export WPA_PSK=\"y\"", "s3cret")
	f.Fuzz(func(t *testing.T, text, secret string) {
		out := fixers.Redact(text)
		if again := fixers.Redact(out); again != out {
			t.Fatalf("Redact(%q) = %q, again %q", text, out, again)
		}
		if strings.Count(out, "\n") != strings.Count(text, "\n") {
			t.Fatalf("Redact(%q) = %q: lines changed", text, out)
		}
		// A secret that starts with a separator is, after "wpa-psk ", an empty value.
		if strings.TrimSpace(secret) != secret || secret == "" || strings.ContainsAny(secret, "\n\r") || strings.ContainsAny(secret[:1], "=:") {
			return
		}
		for _, line := range []string{"psk=", "password: ", "WPA_PSK=", "wpa-psk ", "[vpn-secrets]\nx="} {
			if got := fixers.Redact(text + "\n" + line + secret); strings.HasSuffix(got, line+secret) && secret != fixers.Redacted {
				t.Fatalf("secret kept: %q", got)
			}
		}
	})
}
