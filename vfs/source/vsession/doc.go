// Package vsession owns one vSphere API session: the login with a user and password (or the
// adoption of a saved session cookie), the check that it still lives, its renewal after a
// refused request, and the logout. The datastore source (package datastore) sends its cookie
// with every /folder range request; the inventory resolver (pipeline/resolve/vsphere) uses its
// SOAP client. Both use this package, so there is one login path, and a caller that holds a
// session can hand it to both and log in once.
//
// Why here: the session is a credential provider of a source (it implements
// httpsrc.Authorizer) and is built from the source layer's parts: httpsrc's TLS transport and
// error classification, retry's budget, stats' reconnect counter. vfs may not import pipeline,
// so it cannot live with the resolver; pipeline may import vfs, so the resolver takes it from
// here. A package under internal/ would sit below vfs yet import vfs/source packages.
//
// Contract:
//   - Login logs in once over the TLS policy of Config (system roots, a CA file or a pinned
//     SHA-1/SHA-256 thumbprint, through httpsrc.NewTransport) or over Config.Transport. A
//     refused certificate is a *httpsrc.CertError naming the server's thumbprints. With
//     Config.Cookie set, a session the server still knows is adopted without sending the
//     password.
//   - A refused user or password wraps ErrLoginRefused and is permanent; network failures are
//     transient and retried within Config.Retry; a spent budget wraps vfs.ErrTransient. A login
//     that needs credentials it was not given wraps ErrNoCredentials. A cancelled context
//     returns ctx.Err() unwrapped.
//   - Every login increments the session's generation. Renew(gen) logs in again only when gen
//     is still current, and concurrent callers share that one login, so a burst of refused
//     requests costs one login. Re-logins after the first count as reconnects in Config.Stats.
//   - Check asks the server whether the session lives and renews it when it does not; with
//     Config.KeepAlive set, Login starts a goroutine that checks at that interval (vCenter ends
//     idle sessions after 30 minutes by default).
//   - Logout stops the keep-alive and ends the session on the server; it is idempotent, and
//     Renew after it fails with ErrClosed rather than log in again.
//
// Errors name the host and user, never the password, and carry no package prefix: callers add
// their own ("datastore: ", "vsphere: "). A Session is safe for concurrent use.
package vsession
