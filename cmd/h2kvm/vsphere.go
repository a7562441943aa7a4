package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/h2kvm/h2kvm/pipeline/resolve/vsphere"
	"github.com/h2kvm/h2kvm/vfs/source"
)

// VSphereCmd groups the vSphere inventory commands.
type VSphereCmd struct {
	Ls VSphereLsCmd `cmd:"" help:"List VMs: power state, CPUs, memory, disks and their chains, snapshots, CBT."`
}

// VSphereLsCmd is `h2kvm vsphere ls`.
type VSphereLsCmd struct {
	Location    string `arg:"" help:"vsphere://[user@]vcenter[:port]/DC/vm[/FOLDER|/NAME]"`
	JSON        bool   `help:"Print the VMs as JSON on stdout."`
	SessionFile string `placeholder:"FILE" help:"Keep the vSphere session cookie in FILE (mode 0600) between runs."`
}

func (c *VSphereLsCmd) Help() string {
	return `Lists the VMs under an inventory path of a vCenter or ESXi host. Credentials come from
the environment: H2KVM_VSPHERE_USER (or the URL's user), H2KVM_VSPHERE_PASSWORD or
H2KVM_VSPHERE_PASSWORD_FILE. Certificates are verified; pin a self-signed one with
H2KVM_TLS_THUMBPRINT (SHA-1 or SHA-256), or trust a CA with H2KVM_TLS_CA_FILE.`
}

func (c *VSphereLsCmd) Run(ctx context.Context, g *Globals) error {
	cfg, err := source.ConfigFromEnv()
	if err != nil {
		return err
	}
	vms, err := vsphere.List(ctx, c.Location, vsphere.Options{
		TLS: cfg.TLS, Password: string(cfg.VSpherePassword), SessionFile: c.SessionFile,
		Warn: func(m string) { g.Log.Warn(m) },
	})
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(g.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(vms)
	}
	tw := tabwriter.NewWriter(g.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPOWER\tCPUS\tMEMORY\tFIRMWARE\tDISKS\tSNAPSHOTS\tCBT\tNOTE")
	for _, vm := range vms {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d MiB\t%s\t%d\t%d\t%v\t%s\n", vm.Name, vm.PowerState, vm.CPUs,
			vm.MemoryMiB, vm.Firmware, len(vm.Disks), len(vm.Snapshots), vm.CBT, vm.Problem)
	}
	return tw.Flush()
}
