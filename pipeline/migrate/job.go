package migrate

import (
	"encoding/json"
	"time"

	"github.com/h2kvm/h2kvm/fixers"
	"github.com/h2kvm/h2kvm/pipeline/machine"
	"github.com/h2kvm/h2kvm/pipeline/target"
)

// Stage names a pipeline stage.
type Stage string

// The stages, in their fixed order.
const (
	Fetch    Stage = "fetch"
	Flatten  Stage = "flatten"
	Inspect  Stage = "inspect"
	Plan     Stage = "plan"
	Fix      Stage = "fix"
	Convert  Stage = "convert"
	Validate Stage = "validate"
)

// Stages lists every stage in order.
var Stages = []Stage{Fetch, Flatten, Inspect, Plan, Fix, Convert, Validate}

// Skippable are the stages a user may skip.
var Skippable = map[Stage]bool{Fix: true, Validate: true}

// StageRecord is the outcome of one stage.
type StageRecord struct {
	Status  string    `json:"status"` // "done", "skipped", "failed"
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	Seconds float64   `json:"seconds"`
	Error   string    `json:"error,omitempty"`
}

// Job is the job record, kept in the store under the job ID and written out as report.json.
type Job struct {
	ID     string                `json:"id"`
	Source string                `json:"source"`
	Name   string                `json:"name"`
	Output string                `json:"output_dir"`
	Format string                `json:"format"`
	Stages map[Stage]StageRecord `json:"stages"`

	VM      *machine.VM  `json:"vm,omitempty"`
	Exports []string     `json:"exports,omitempty"`
	Disks   []DiskReport `json:"disks,omitempty"`
	// Fixer names the guest fixer chosen at INSPECT (fixers.Fixer.Name); Facts and Plan are
	// its facts and plan data, opaque JSON only that fixer decodes, and PlanSummary the
	// plan's fixes and warnings for people.
	Fixer       string              `json:"fixer,omitempty"`
	Facts       json.RawMessage     `json:"facts,omitempty"`
	Plan        json.RawMessage     `json:"plan,omitempty"`
	PlanSummary *fixers.PlanSummary `json:"plan_summary,omitempty"`
	// GuestFirmware is the firmware the fixer found the guest booting with ("bios", "uefi",
	// "" unknown).
	GuestFirmware string         `json:"guest_firmware,omitempty"`
	Fixes         *fixers.Report `json:"fixes,omitempty"`
	Outputs       []string       `json:"outputs,omitempty"`
	// Target is the output target's name (see Options.Target); Domain the definition it
	// wrote (for libvirt: NAME.xml); Boot the boot test's evidence.
	Target string             `json:"target,omitempty"`
	Domain string             `json:"domain_xml,omitempty"`
	Boot   *target.BootResult `json:"boot_test,omitempty"`

	// Numbers.
	VirtualBytes   int64 `json:"virtual_bytes"`
	AllocatedBytes int64 `json:"allocated_bytes"`
	FetchedBytes   int64 `json:"fetched_bytes"`
	OverlayBytes   int64 `json:"overlay_bytes"`
	OutputBytes    int64 `json:"output_bytes"`
	// PeakStagingBytes is the largest local disk use of the state directory (overlays and
	// cache) seen during the job, sampled.
	PeakStagingBytes int64 `json:"peak_staging_bytes"`

	Warnings []string `json:"warnings,omitempty"`
}

// DiskReport is what the job did with one disk of the VM, in the VM's disk order: the order
// in which the disks are attached to libguestfs (sda, sdb, …) and to the KVM domain (vda,
// vdb, …; the first one boots).
type DiskReport struct {
	Index      int    `json:"index"`
	Source     string `json:"source"`
	Controller string `json:"controller,omitempty"`
	Unit       string `json:"unit,omitempty"`
	Export     string `json:"export"`
	// Target is the disk's device name in the KVM domain.
	Target         string `json:"target"`
	VirtualBytes   int64  `json:"virtual_bytes"`
	AllocatedBytes int64  `json:"allocated_bytes"`
	FetchedBytes   int64  `json:"fetched_bytes"`
	OverlayBytes   int64  `json:"overlay_bytes"`
	Output         string `json:"output,omitempty"`
	OutputBytes    int64  `json:"output_bytes"`
	// Manifest is the check of the disk file against its OVA/OVF manifest digest, made from
	// the bytes the migration read; nil when there was no digest to check.
	Manifest *ManifestCheck `json:"manifest,omitempty"`
}

// ManifestCheck is the outcome of checking one disk file against its manifest digest.
type ManifestCheck struct {
	File     string `json:"file"`
	Alg      string `json:"alg"`
	Expected string `json:"expected"`
	Actual   string `json:"actual,omitempty"`
	Verified bool   `json:"verified"`
	// ExtraFetchedBytes is what the check fetched beyond the migration's own reads.
	ExtraFetchedBytes int64   `json:"extra_fetched_bytes"`
	Seconds           float64 `json:"seconds"`
}

func (j *Job) done(s Stage) bool { r, ok := j.Stages[s]; return ok && r.Status == "done" }
