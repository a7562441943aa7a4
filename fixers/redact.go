package fixers

import "strings"

// Redacted replaces the value of a secret in a recorded change.
const Redacted = "[redacted]"

// RedactChange returns c with the secrets of Before and After redacted (Redact). Report.Add
// applies it, so that no recorded change carries a guest's secrets into a report or a job
// record. It is idempotent.
func RedactChange(c Change) Change {
	c.Before = Redact(c.Before)
	c.After = Redact(c.After)
	return c
}

// Redact replaces the values of secret settings in the text of a guest configuration file
// with Redacted, line by line, whatever the file's syntax:
//
//   - key=value (NetworkManager keyfiles, systemd units, ifcfg and shell files,
//     wpa_supplicant.conf), key: value (netplan and other YAML), and "key value" (ifupdown's
//     wpa-psk, wireless-key); also in commented-out lines, and quoted keys;
//   - the key is a secret when, lower-cased with _ read as -, it contains password, passwd,
//     passphrase, secret or psk, or is one of key, key1..key4, wep-key0..wep-key3,
//     wireless-key, private-key, privatekey, preshared-key, presharedkey, private, shared,
//     pin, mka-cak; keys ending in -flags or -type (how a secret is stored, not the secret)
//     are not;
//   - every key=value of a [vpn-secrets] section (NetworkManager keeps VPN secrets there under
//     plugin-defined names);
//   - the lines of a YAML block scalar ("password: |") that holds a secret.
//
// It errs on the side of redacting: a report loses a value it did not need rather than show a
// Wi-Fi PSK or an 802.1x password. The number of lines, and everything of a line up to a
// secret's value, is kept. Redact is idempotent.
func Redact(text string) string {
	if text == "" {
		return text
	}
	lines := strings.Split(text, "\n")
	changed := false
	vpnSecrets := false
	block := -1 // in a YAML block scalar holding a secret: the indentation of its key line
	for i, line := range lines {
		t := strings.TrimSpace(line)
		ind := len(line) - len(strings.TrimLeft(line, " \t"))
		if block >= 0 && (t == "" || ind > block) {
			if t != "" && t != Redacted {
				lines[i] = line[:ind] + Redacted
				changed = true
			}
			continue
		}
		block = -1
		if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") {
			vpnSecrets = strings.TrimSpace(t[1:len(t)-1]) == "vpn-secrets"
			continue
		}
		if nl, ok := redactLine(line, vpnSecrets); ok {
			if v := strings.TrimSpace(line[len(nl)-len(Redacted):]); v != "" && (v[0] == '|' || v[0] == '>') {
				block = ind // "password: |": the secret is on the lines below
			}
			lines[i] = nl
			changed = true
		}
	}
	if !changed {
		return text
	}
	return strings.Join(lines, "\n")
}

// redactLine redacts the value of a line that sets a secret. allKeys: every key=value is one.
func redactLine(line string, allKeys bool) (string, bool) {
	i := 0
	skip := func(set string) {
		for i < len(line) && strings.IndexByte(set, line[i]) >= 0 {
			i++
		}
	}
	skip(" \t#;")
	if strings.HasPrefix(line[i:], "export ") {
		i += len("export ")
		skip(" \t")
	}
	if strings.HasPrefix(line[i:], "- ") { // a YAML list item
		i += 2
		skip(" \t")
	}
	quote := byte(0)
	if i < len(line) && (line[i] == '"' || line[i] == '\'') {
		quote = line[i]
		i++
	}
	k0 := i
	for i < len(line) && isKeyByte(line[i]) {
		i++
	}
	key := line[k0:i]
	if key == "" {
		return line, false
	}
	if quote != 0 {
		if i >= len(line) || line[i] != quote {
			return line, false
		}
		i++
	}
	keyEnd := i
	skip(" \t")
	sep := byte(' ')
	if i < len(line) && (line[i] == '=' || line[i] == ':') {
		sep = line[i]
		i++
		skip(" \t")
	} else if i == keyEnd && i < len(line) {
		return line, false // "key" followed by something that is neither space nor separator
	}
	value := strings.TrimSpace(line[i:])
	if value == "" || value == Redacted {
		return line, false
	}
	if !IsSecretKey(key) && !(allKeys && sep == '=') {
		return line, false
	}
	return line[:i] + Redacted, true
}

func isKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
}

// IsSecretKey reports whether a configuration key names a secret (see Redact).
func IsSecretKey(key string) bool {
	k := strings.ReplaceAll(strings.ToLower(key), "_", "-")
	if strings.HasSuffix(k, "-flags") || strings.HasSuffix(k, "-type") {
		return false
	}
	for _, s := range []string{"password", "passwd", "passphrase", "secret", "psk"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	switch k {
	case "key", "key1", "key2", "key3", "key4", "wep-key0", "wep-key1", "wep-key2", "wep-key3",
		"wireless-key", "private-key", "privatekey", "preshared-key", "presharedkey",
		"private", "shared", "pin", "mka-cak":
		return true
	}
	return false
}
