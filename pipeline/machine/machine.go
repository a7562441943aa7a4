package machine

// VM describes a virtual machine as its source knows it: the hardware that the domain XML and
// the guest fixes need, and its disks. Fields a source does not know are left zero and the
// defaults of DomainOptions apply.
type VM struct {
	Name string `json:"name"`
	// CPUs is the number of virtual CPUs; CoresPerSocket splits them into sockets.
	CPUs           int `json:"cpus,omitempty"`
	CoresPerSocket int `json:"cores_per_socket,omitempty"`
	MemoryMiB      int `json:"memory_mib,omitempty"`
	// Firmware is "bios" or "efi" ("" when unknown: derived from the guest).
	Firmware   string `json:"firmware,omitempty"`
	SecureBoot bool   `json:"secure_boot,omitempty"`
	NICs       []NIC  `json:"nics,omitempty"`
	Disks      []Disk `json:"disks"`
}

// NIC is one network adapter of the source VM.
type NIC struct {
	// Model is VMware's adapter type (vmxnet3, e1000, e1000e).
	Model string `json:"model,omitempty"`
	// MAC is the adapter's address, kept on KVM so that guest configuration pinned to it
	// still matches.
	MAC     string `json:"mac,omitempty"`
	Network string `json:"network,omitempty"`
}

// Disk is one virtual disk: the SOURCE of its top VMDK link, and where it sat.
type Disk struct {
	Source     string `json:"source"`
	Controller string `json:"controller,omitempty"` // scsi, sata, nvme, ide
	Unit       string `json:"unit,omitempty"`       // e.g. "0:0"
	Capacity   int64  `json:"capacity,omitempty"`
	// Manifest is the digest an OVA/OVF manifest lists for the disk file and whether it has
	// been checked; nil when no manifest lists the file.
	Manifest *ManifestDigest `json:"manifest_digest,omitempty"`
}

// Manifest digest states.
const (
	// DigestVerified: the whole file was read and matches (resolve with VerifyDisks).
	DigestVerified = "verified"
	// DigestUnverified: still to be checked against the bytes a migration reads.
	DigestUnverified = "unverified"
	// DigestOff: verification was turned off.
	DigestOff = "off"
)

// ManifestDigest is a manifest's digest of one file.
type ManifestDigest struct {
	File  string `json:"file"` // the name the manifest lists
	Alg   string `json:"alg"`  // SHA1, SHA256 or SHA512
	Hex   string `json:"hex"`
	State string `json:"state"`
}
