package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/h2kvm/h2kvm/vfs/source"
)

// decodeSpec decodes a POST /v1/exports body as the control handler does.
func decodeSpec(b []byte) (ExportSpec, error) {
	var spec ExportSpec
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(&spec)
	return spec, err
}

// FuzzExportSpec: control API bodies decode without panicking; a spec that passes the checks
// CreateExport makes first has a name that is one plain file name (the FUSE folder, the
// overlay files) and a manifest digest of the right size; a decoded spec survives a JSON
// round trip; its source redacts without panicking and without its query values.
func FuzzExportSpec(f *testing.F) {
	f.Add([]byte(`{"name":"web","source":"/srv/web.vmdk","readonly":true}`))
	f.Add([]byte(`{"name":"vc","source":"https://vc/folder/vm/a.vmdk?dcPath=DC&dsName=ds&token=s3cr3t","keep_overlay":true}`))
	f.Add([]byte(`{"name":"..","source":"x"}`))
	f.Add([]byte(`{"name":"a/b","source":"x","manifest":{"alg":"SHA256","hex":"00"}}`))
	f.Add([]byte(`{"name":"m","source":"ova:/x.ova#d.vmdk","manifest":{"alg":"SHA1","hex":"da39a3ee5e6b4b0d3255bfef95601890afd80709"}}`))
	f.Add([]byte(`{"name":"x","bogus":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		spec, err := decodeSpec(b)
		if err != nil {
			return
		}
		if validName(spec.Name) == nil {
			dir := "/var/lib/h2kvm/overlays"
			p := filepath.Join(dir, spec.Name)
			if filepath.Dir(p) != dir || filepath.Base(p) != spec.Name || strings.ContainsAny(spec.Name, "/\\\x00") {
				t.Fatalf("valid name %q leaves its folder: %s", spec.Name, p)
			}
		}
		if err := checkManifest(spec); err != nil && !errors.Is(err, ErrBadSpec) {
			t.Fatalf("manifest check: %v is not ErrBadSpec", err)
		}
		out, err := json.Marshal(spec)
		if err != nil {
			t.Fatalf("marshal %+v: %v", spec, err)
		}
		again, err := decodeSpec(out)
		if err != nil || !reflect.DeepEqual(again, spec) {
			t.Fatalf("round trip: %+v -> %s -> %+v, %v", spec, out, again, err)
		}
		_ = source.Redact(spec.Source)
	})
}
