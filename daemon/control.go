package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// ExportSpec is what a client asks for when it creates an export.
type ExportSpec struct {
	// Name is the NBD export name and the FUSE folder name.
	Name string `json:"name"`
	// Source is a SOURCE location: a local path, https://…, ssh://…, nbd://….
	Source string `json:"source"`
	// ReadOnly exports refuse writes; they have no overlay.
	ReadOnly bool `json:"readonly,omitempty"`
	// KeepOverlay keeps the overlay file and block map when the export is deleted, so that an
	// export of the same name and source created later continues from it (until the daemon
	// restarts: at start, overlays of exports that are not recorded are removed). Overlays of
	// recorded exports always survive restarts. Without it, deleting the export discards its
	// overlay.
	KeepOverlay bool `json:"keep_overlay,omitempty"`
	// IgnoreCIDMismatch opens chains whose parentCID does not match the parent's CID.
	IgnoreCIDMismatch bool `json:"ignore_cid_mismatch,omitempty"`
	// Transient exports are not recorded in the store: they are gone after a restart, and
	// their overlay is discarded when they close. `serve --export` creates transient exports.
	Transient bool `json:"transient,omitempty"`
	// Manifest is the digest the source file should have (from an OVA/OVF manifest). The
	// export is served at once; POST /v1/exports/{name}/verify checks it, and the export's
	// info shows the state.
	Manifest *Digest `json:"manifest,omitempty"`
}

// ServerInfo tells control API clients where the exports are served.
type ServerInfo struct {
	NBDSocket  string `json:"nbd_socket,omitempty"`
	NBDListen  string `json:"nbd_listen,omitempty"`
	MountDir   string `json:"mount_dir,omitempty"`
	CacheLimit int64  `json:"cache_limit"`
}

// apiError is the body of every error response. Kind and Causes (see errkind.go) say what
// the error is to a program; Error says it to a person.
type apiError struct {
	Error  string    `json:"error"`
	Kind   ErrorKind `json:"kind,omitempty"`
	Causes []string  `json:"causes,omitempty"`
}

// controlHandler serves the control API:
//
//	GET    /v1/health              liveness
//	GET    /v1/ready               readiness (store open, listeners up)
//	GET    /v1/server              where the daemon serves (NBD socket, TCP address, mount)
//	GET    /v1/exports             all exports with statistics
//	POST   /v1/exports             create an export from an ExportSpec
//	GET    /v1/exports/{name}      one export, with its chain and statistics
//	DELETE /v1/exports/{name}      remove an export (?discard=true drops a kept overlay)
//	GET    /metrics                Prometheus text format
func (d *Daemon) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /v1/ready", func(w http.ResponseWriter, r *http.Request) {
		if !d.ready.Load() {
			writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "not ready", Kind: KindInternal})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.HandleFunc("GET /v1/server", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, ServerInfo{
			NBDSocket: d.cfg.NBDSocket, NBDListen: d.cfg.NBDListen, MountDir: d.cfg.MountDir,
			CacheLimit: d.cfg.CacheLimit,
		})
	})
	mux.HandleFunc("GET /v1/exports", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.ListExports())
	})
	mux.HandleFunc("POST /v1/exports", func(w http.ResponseWriter, r *http.Request) {
		var spec ExportSpec
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&spec); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "bad JSON: " + err.Error(), Kind: KindBadRequest})
			return
		}
		info, err := d.CreateExport(r.Context(), spec)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, info)
	})
	mux.HandleFunc("GET /v1/exports/{name}", func(w http.ResponseWriter, r *http.Request) {
		info, err := d.GetExport(r.Context(), r.PathValue("name"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, info)
	})
	mux.HandleFunc("POST /v1/exports/{name}/verify", func(w http.ResponseWriter, r *http.Request) {
		var req VerifyRequest
		if r.ContentLength != 0 {
			dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				writeJSON(w, http.StatusBadRequest, apiError{Error: "bad JSON: " + err.Error(), Kind: KindBadRequest})
				return
			}
		}
		v, err := d.Verify(r.Context(), r.PathValue("name"), req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
	mux.HandleFunc("DELETE /v1/exports/{name}", func(w http.ResponseWriter, r *http.Request) {
		discard := r.URL.Query().Get("discard") == "true"
		if err := d.DeleteExport(r.Context(), r.PathValue("name"), discard); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		d.writeMetrics(w)
	})
	return mux
}

// writeError maps an error to an HTTP status: the one translation point of this boundary.
func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrBadSpec):
		status = http.StatusBadRequest
	case errors.Is(err, ErrNoExport):
		status = http.StatusNotFound
	case errors.Is(err, ErrExists), errors.Is(err, ErrBusy), errors.Is(err, ErrChainChanged):
		status = http.StatusConflict
	case errors.Is(err, ErrSource):
		status = http.StatusUnprocessableEntity
	case errors.Is(err, context.Canceled):
		status = 499
	}
	kind, causes := classify(err)
	writeJSON(w, status, apiError{Error: err.Error(), Kind: kind, Causes: causes})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// validName reports whether an export name is safe as an NBD name and a folder name.
func validName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("export name must be 1 to 128 characters: %w", ErrBadSpec)
	}
	if name == "." || name == ".." || strings.HasPrefix(name, ".") {
		return fmt.Errorf("export name %q must not start with a dot: %w", name, ErrBadSpec)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("export name %q: only letters, digits, '-', '_' and '.' are allowed: %w", name, ErrBadSpec)
		}
	}
	return nil
}
