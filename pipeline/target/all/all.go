// Package all is the registry of the output targets: the one place that lists them. Adding a
// target means adding it to Targets.
package all

import (
	"fmt"
	"strings"

	"github.com/h2kvm/h2kvm/pipeline/target"
	"github.com/h2kvm/h2kvm/pipeline/target/libvirt"
)

// Default is the name of the target used when none is chosen.
const Default = "libvirt"

// Targets returns every known target, the default first. Each call returns a new slice.
func Targets() []target.Target {
	return []target.Target{libvirt.New()}
}

// Names returns the names of Targets, in order.
func Names() []string {
	var names []string
	for _, t := range Targets() {
		names = append(names, t.Name())
	}
	return names
}

// Lookup returns the target called name; an empty name is Default. An unknown name is an
// error that lists the known ones.
func Lookup(name string) (target.Target, error) {
	if name == "" {
		name = Default
	}
	for _, t := range Targets() {
		if t.Name() == name {
			return t, nil
		}
	}
	return nil, fmt.Errorf("target: unknown target %q (known: %s)", name, strings.Join(Names(), ", "))
}
