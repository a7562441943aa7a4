package source

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"/vm/disk.vmdk": "/vm/disk.vmdk",
		"https://u:pw@vc/folder/vm/a.vmdk?dcPath=DC0&dsName=ds+1":                "https://vc/folder/vm/a.vmdk?dcPath=DC0&dsName=ds+1",
		"https://s3.example/b/disk.vmdk?X-Amz-Signature=abc123&X-Amz-Expires=60": "https://s3.example/b/disk.vmdk?X-Amz-Expires=REDACTED&X-Amz-Signature=REDACTED",
		"https://h/d.vmdk?token=abc123#frag":                                     "https://h/d.vmdk?token=REDACTED",
		"ova:https://h/x.ova?sig=abc123#disk1.vmdk":                              "ova:https://h/x.ova?sig=REDACTED#disk1.vmdk",
		"ssh://root@esx/vmfs/volumes/ds/a.vmdk":                                  "ssh://esx/vmfs/volumes/ds/a.vmdk",
		"https://h/d.vmdk?a=%zz&token=abc123":                                    "https://h/d.vmdk?REDACTED",
		"nbd://h:10809/export":                                                   "nbd://h:10809/export",
	} {
		got := Redact(in)
		if got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(got, "abc123") || strings.Contains(got, "pw@") {
			t.Errorf("Redact(%q) = %q keeps a secret", in, got)
		}
	}
}
