// Package datastore reads files on a vSphere datastore through the host's or vCenter's
// /folder HTTPS endpoint: https://HOST/folder/PATH?dcPath=DC&dsName=DS.
//
// An Opener logs in once through the vSphere API (govmomi session.Manager.Login over the same
// TLS policy as the range requests), sends the vmware_soap_session cookie with every range GET,
// keeps the session alive with a cheap call every KeepAlive interval (logging in again when the
// session is gone), and logs in again once when a range request is refused with 401/403.
// Concurrent refusals share one login. Reads are httpsrc's: parallel, retried, verified.
//
// Names resolve under /folder/ and keep the dcPath and dsName query; a VMware parent hint
// /vmfs/volumes/DS/PATH on the same datastore (by name) maps to /folder/PATH; anything else
// outside /folder/ is refused with vfs.ErrChain.
//
// Credentials: the user comes from Options or the URL; the password only from Options (filled
// from the environment or a file by package source), never from the URL. Neither appears in
// names or errors. A refused login wraps ErrLoginRefused and is not retried.
package datastore
