// Package ovf parses OVF descriptors (DMTF DSP0243, 1.x and 2.x, as VMware's ovftool and
// vSphere write them) and OVF manifests (.mf).
//
// Parse reads the parts h2kvm needs: the file references, the disk section, and the first
// virtual system's name and hardware (CPUs with cores per socket, memory, firmware and secure
// boot from vmw:Config / vmw:ExtraConfig, NICs from ResourceType 10 items or EthernetPortItems,
// disks from ResourceType 17 items and their controllers). Elements are matched by local
// name, so files that bind the usual prefixes to other namespace URIs still parse. The
// descriptor is untrusted: its size is bounded (MaxSize), every number is checked, and a bad
// reference (a disk naming no file, an href that is absolute or leaves the package) is an
// error naming the element.
//
// ParseManifest reads "SHA256(name)= hex" lines (SHA1, SHA256, SHA512); Manifest.Verify
// compares a digest.
package ovf
