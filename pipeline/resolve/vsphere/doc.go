// Package vsphere reads the vSphere inventory (vCenter or ESXi, through govmomi): it logs in,
// finds a VM by inventory path, name or MoRef, and describes its hardware and the top VMDK
// link of each disk — for the current state or for a named snapshot — as datastore /folder
// URLs (https://HOST/folder/PATH?dcPath=DC&dsName=DS) that the block layer reads lazily, with
// a session of its own or with this one (Client.Session, for datastore.Options.Session: one
// login for both). It reads no disk bytes. The login itself is package vsession's, shared
// with the datastore source.
//
// Locations:
//
//	vsphere://[user@]host[:port]/DC/vm/[FOLDER/]NAME[?snapshot=SNAP]
//	vsphere://[user@]host[:port]/DC/vm/vm-42          (a MoRef as the last element)
//	vsphere://[user@]host[:port]/?moref=vm-42
//	vsphere://[user@]host[:port]/NAME                 (searched in every datacenter)
//
// DC may be a path of folders ("Folder/DC"). When the inventory path names no VM, a VM of
// that name is searched under the datacenter's vm folder (or everywhere); more than one match
// is ErrAmbiguous. List takes a folder (vsphere://host/DC/vm, vsphere://host/DC, vsphere://host)
// and returns every VM under it with power state, disks with their backing chain, snapshots
// and the CBT flag.
//
// Credentials: the user comes from Options.User, the URL, or H2KVM_VSPHERE_USER; the password
// from Options.Password, H2KVM_VSPHERE_PASSWORD, or a file (Options.PasswordFile or
// H2KVM_VSPHERE_PASSWORD_FILE; one line, trailing newline dropped). A password in the URL is
// refused. Neither appears in errors or locations. TLS is verified (system roots, a CA file,
// or a pinned thumbprint: httpsrc.TLSOptions); a refused certificate is an *httpsrc.CertError
// naming the thumbprints. Session reuse: with Options.SessionFile set, the session cookie is
// saved there (mode 0600, with the host and user it belongs to) and reused while the server
// still accepts it, so repeated commands do not log in each time.
//
// Errors: ErrLogin (user or password refused or missing; permanent), ErrNotFound (no such VM,
// datacenter or snapshot; permanent), ErrAmbiguous (a name matches several), ErrUnsupported (a
// disk the block layer cannot read: RDM in physical mode, a backing without a file). Network
// failures at login are retried within Options.Retry, then returned wrapped, naming the host.
//
// Snapshots: with a snapshot chosen, the disks are the snapshot's own layout (the
// VirtualMachineSnapshot's config), whose top links were frozen when it was taken, so reading
// them is consistent while the VM runs. Without one, the current top links are read; when the
// VM is powered on, Options.Warn is told that the result may be inconsistent.
// Client.CreateTempSnapshot takes a snapshot (no memory) for such a read; TempSnapshot.Remove
// deletes it (consolidating) once the disks have been read.
package vsphere
