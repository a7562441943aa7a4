package layers

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Rule forbids packages under From (a module-relative folder; "" is every package) to import
// any of Deny. An entry of Deny that starts with "./" is module-relative, others are import
// path prefixes (so "os/exec" also denies nothing else, and "go.etcd.io/bbolt" denies its
// sub-packages). Except lists module-relative folders that the rule does not apply to.
// NonTest rules apply to non-test files only: tests may reach across layers to check against
// real components (qemu-img from a vfs test, the bbolt store from an overlay crash test).
type Rule struct {
	Why     string
	From    string
	Except  []string
	Deny    []string
	NonTest bool
}

// Violation is one import that breaks a rule.
type Violation struct {
	File   string // relative to the tree's root
	Import string
	Rule   string // the rule's Why
}

func (v Violation) String() string { return fmt.Sprintf("%s imports %s: %s", v.File, v.Import, v.Rule) }

// testHelpers are the packages that exist for tests only.
var testHelpers = []string{"./internal/testenv", "./vfs/vfstest", "./vfs/vmdk/vmdkgen",
	"./vfs/source/httpsrc/httpsrctest", "./vfs/source/sourcetest", "./internal/libnbd/nbdkittest", "testing", "net/http/httptest",
	"./vfs/overlay/mapstoretest", "./vfs/vmdk/vmdktest", "./vfs/cache/indextest",
	"github.com/vmware/govmomi/simulator"}

// Rules is the architecture of h2kvm.
var Rules = []Rule{
	{Why: "vfs is the device model: no protocol, stage, fixer, store, daemon or command",
		From: "vfs", NonTest: true, Deny: []string{"./nbdserve", "./daemon", "./pipeline", "./fixers", "./store", "./cmd", "./tools", "./integration",
			"go.etcd.io/bbolt", "os/exec", "libguestfs.org", "libvirt.org"}},
	{Why: "go-fuse belongs to the FUSE front end only", From: "", Except: []string{"vfs/fusefs"},
		Deny: []string{"github.com/hanwen/go-fuse"}},
	{Why: "bbolt is wrapped by package store", From: "", Except: []string{"store"}, Deny: []string{"go.etcd.io/bbolt"}},
	{Why: "nbdserve is a protocol over vfs devices", From: "nbdserve", NonTest: true,
		Deny: []string{"./daemon", "./pipeline", "./fixers", "./store", "./cmd", "./vfs/fusefs"}},
	{Why: "store holds state, not stages or front ends", From: "store", NonTest: true,
		Deny: []string{"./daemon", "./pipeline", "./fixers", "./cmd", "./nbdserve", "./vfs/fusefs"}},
	{Why: "the serve engine knows no stage or fixer", From: "daemon", NonTest: true, Deny: []string{"./pipeline", "./fixers", "./cmd"}},
	{Why: "fixers change guests through libguestfs and know no device, protocol or stage", From: "fixers", NonTest: true,
		Deny: []string{"./vfs", "./nbdserve", "./daemon", "./pipeline", "./store", "./cmd"}},
	{Why: "Windows logic never leaks into Linux fixers", From: "fixers/linux", Deny: []string{"./fixers/windows"}},
	{Why: "Linux logic never leaks into Windows fixers", From: "fixers/windows", Deny: []string{"./fixers/linux"}},
	{Why: "nothing imports the CLI", From: "", Except: []string{"cmd"}, Deny: []string{"./cmd"}},
	{Why: "non-test code does not import test helpers", From: "", NonTest: true,
		Except: append([]string{"tools", "integration"}, relative(testHelpers)...), Deny: testHelpers},
}

// relative returns the module-relative entries of list without their "./".
func relative(list []string) []string {
	var out []string
	for _, s := range list {
		if r, ok := strings.CutPrefix(s, "./"); ok {
			out = append(out, r)
		}
	}
	return out
}

// Check reads every Go file under root (skipping testdata, hidden and vendored folders) and
// returns the imports that break rules, sorted by file. module is the tree's module path.
func Check(root, module string, rules []Rule) ([]Violation, error) {
	var out []Violation
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return fmt.Errorf("layers: %w", err)
		}
		dir, isTest := path.Dir(rel), strings.HasSuffix(name, "_test.go")
		for _, is := range f.Imports {
			imp, err := strconv.Unquote(is.Path.Value)
			if err != nil {
				return fmt.Errorf("layers: %s: import %s: %w", rel, is.Path.Value, err)
			}
			for _, r := range rules {
				if r.NonTest && isTest || !under(dir, r.From) || underAny(dir, r.Except) {
					continue
				}
				if denied(imp, module, r.Deny) {
					out = append(out, Violation{File: rel, Import: imp, Rule: r.Why})
				}
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		return out[i].Import < out[j].Import
	})
	return out, err
}

// under reports whether the module-relative folder dir is folder or below it ("" holds all).
func under(dir, folder string) bool {
	return folder == "" || dir == folder || strings.HasPrefix(dir, folder+"/")
}

func underAny(dir string, folders []string) bool {
	for _, f := range folders {
		if under(dir, f) {
			return true
		}
	}
	return false
}

// denied reports whether imp matches an entry of deny.
func denied(imp, module string, deny []string) bool {
	for _, d := range deny {
		if r, ok := strings.CutPrefix(d, "./"); ok {
			d = module + "/" + r
		}
		if imp == d || strings.HasPrefix(imp, d+"/") {
			return true
		}
	}
	return false
}
