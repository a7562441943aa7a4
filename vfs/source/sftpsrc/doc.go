// Package sftpsrc reads remote files over SFTP: ssh://[user@]host[:port]/path (an ESXi host's
// /vmfs/volumes, any SSH server).
//
// Contract: an Opener holds one SSH connection (x/crypto/ssh) with one SFTP client
// (pkg/sftp), dialed lazily and re-dialed when lost; each Source keeps up to Options.Conns open
// handles for parallel reads. Host keys are checked against known_hosts (default
// ~/.ssh/known_hosts): an unknown or changed key is refused with ErrHostKey naming the key's
// fingerprint, unless InsecureIgnoreHostKey is set explicitly. Credentials: an unencrypted key
// file and/or a password (password and keyboard-interactive); a refusal wraps ErrAuth. Both are
// permanent. Lost connections, stalls past StallTimeout and SSH_FX_FAILURE are retried within
// the retry budget; a missing file wraps vfs.ErrNotFound. A cancelled context returns at once
// (the abandoned read finishes into a private buffer). Names never hold passwords.
package sftpsrc
