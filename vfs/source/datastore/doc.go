// Package datastore reads files on a vSphere datastore through the host's or vCenter's
// /folder HTTPS endpoint: https://HOST/folder/PATH?dcPath=DC&dsName=DS.
//
// An Opener reads with one vSphere session (package vsession): its own, logged in once over
// the same TLS policy and transport as the range requests, kept alive with a cheap call every
// KeepAlive interval and logged out on Close; or one the caller already holds
// (Options.Session, e.g. the inventory resolver's), which the opener uses but does not end.
// The session's vmware_soap_session cookie goes with every range GET (the session is the
// httpsrc.Authorizer); a range request refused with 401/403 makes the session log in again
// once, and concurrent refusals share that login. Reads are httpsrc's: parallel, retried,
// verified.
//
// Names resolve under /folder/ and keep the dcPath and dsName query; a VMware parent hint
// /vmfs/volumes/DS/PATH on the same datastore (by name) maps to /folder/PATH; anything else
// outside /folder/ is refused with vfs.ErrChain.
//
// Credentials: the user comes from Options or the URL; the password only from Options (filled
// from the environment or a file by package source), never from the URL. Neither appears in
// names or errors. A refused login wraps ErrLoginRefused and is not retried.
package datastore
