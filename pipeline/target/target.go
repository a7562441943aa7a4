package target

import (
	"context"
	"time"

	"github.com/h2kvm/h2kvm/pipeline/bootproof"
	"github.com/h2kvm/h2kvm/pipeline/machine"
)

// Target writes and checks the VM definition of one hypervisor stack. Implementations hold no
// per-job state: one value may serve several jobs, also at the same time.
type Target interface {
	// Name is the target's name on the command line and in the job record, e.g. "libvirt".
	Name() string
	// Write writes the VM definition for in's converted disks into in.OutputDir and returns
	// what it wrote. It replaces an earlier definition of the same name (a resumed job) and
	// neither reads nor changes the disks.
	Write(ctx context.Context, in Input) (Result, error)
	// Validate checks a definition that Write returned (for libvirt: against its schema). It
	// changes nothing.
	Validate(ctx context.Context, res Result) error
}

// BootTester is the optional ability of a Target to prove, on this host, that the converted
// guest boots: not every target can start its VMs here. The test leaves the outputs unchanged.
type BootTester interface {
	// BootTest boots the guest that Write defined in res (on copy-on-write overlays of the
	// disks) and returns the evidence. A guest that does not prove its boot fails with
	// pipeline.ErrBootTest; the result holds what was seen, also then.
	BootTest(ctx context.Context, in Input, res Result, opt BootOptions) (BootResult, error)
}

// Input is what a Target knows of the converted VM.
type Input struct {
	// VM is the source VM's hardware (CPUs, memory, NICs, disks in order). Its Name and
	// Firmware are the source's; the fields below win over them.
	VM machine.VM
	// Name is the name of the definition and of its files (the outputs' name).
	Name string
	// Disks are the absolute paths of the converted disks, in the VM's disk order (the first
	// one boots); Format is their format, "qcow2" or "raw".
	Disks  []string
	Format string
	// Firmware is "efi" or "bios", from the VM or, when the VM does not say, the guest's facts.
	Firmware string
	// KVM tells whether KVM is usable on this host (else the guest runs under TCG).
	KVM bool
	// OutputDir is the output folder the definition is written into.
	OutputDir string
}

// Result is what Write wrote; it is kept in the job record (JSON) and given back to Validate
// and BootTest, possibly by a later process of a resumed job.
type Result struct {
	// Target is the Name of the target that wrote it.
	Target string `json:"target"`
	// Definition is the main file written (for libvirt: NAME.xml).
	Definition string `json:"definition"`
	// Files are all the files written, Definition first.
	Files []string `json:"files"`
}

// BootOptions configure BootTest.
type BootOptions struct {
	// WorkDir holds the test's overlays, logs and scratch files; the caller creates and
	// removes it.
	WorkDir string
	// Timeout bounds the wait for the proof; zero means the target's default.
	Timeout time.Duration
}

// BootResult is the evidence of a boot test, for the report.
type BootResult struct {
	// Domain is the name of the transient VM that was booted; DomainType how it ran (for
	// libvirt: "kvm" or "qemu").
	Domain     string `json:"domain"`
	DomainType string `json:"domain_type"`
	// Port is the host's loopback port forwarded to the guest's SSH port.
	Port     int                `json:"ssh_port"`
	Seconds  float64            `json:"seconds"`
	Evidence bootproof.Evidence `json:"evidence"`
}
