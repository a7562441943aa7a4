package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
)

// Client talks to a daemon's control API over its unix socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client of the control API at socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{socket: socket, http: &http.Client{Transport: tr}}
}

// Server returns where the daemon serves its exports.
func (c *Client) Server(ctx context.Context) (ServerInfo, error) {
	var si ServerInfo
	err := c.do(ctx, http.MethodGet, "/v1/server", nil, &si)
	return si, err
}

// CreateExport asks the daemon to serve spec.
func (c *Client) CreateExport(ctx context.Context, spec ExportSpec) (ExportInfo, error) {
	var in ExportInfo
	err := c.do(ctx, http.MethodPost, "/v1/exports", spec, &in)
	return in, err
}

// GetExport describes one export.
func (c *Client) GetExport(ctx context.Context, name string) (ExportInfo, error) {
	var in ExportInfo
	err := c.do(ctx, http.MethodGet, "/v1/exports/"+url.PathEscape(name), nil, &in)
	return in, err
}

// Verify checks the export's source file against its expected digest (see Daemon.Verify).
func (c *Client) Verify(ctx context.Context, name string, req VerifyRequest) (Verification, error) {
	var v Verification
	err := c.do(ctx, http.MethodPost, "/v1/exports/"+url.PathEscape(name)+"/verify", req, &v)
	return v, err
}

// DeleteExport removes an export; discard drops a kept overlay.
func (c *Client) DeleteExport(ctx context.Context, name string, discard bool) error {
	p := "/v1/exports/" + url.PathEscape(name)
	if discard {
		p += "?discard=true"
	}
	return c.do(ctx, http.MethodDelete, p, nil, nil)
}

// do sends one request; an error status becomes an error with the daemon's message that wraps
// the sentinel the status stands for and those the body's kind and causes name (errkind.go), so
// that errors.Is answers as it would for the same error of an in-process daemon.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://h2kvm"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("daemon at %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("daemon at %s: %w", c.socket, err)
	}
	if resp.StatusCode >= 300 {
		var e apiError
		json.Unmarshal(data, &e)
		sentinel := map[int]error{
			http.StatusBadRequest: ErrBadSpec, http.StatusNotFound: ErrNoExport,
			http.StatusConflict: ErrExists, http.StatusUnprocessableEntity: ErrSource,
		}[resp.StatusCode]
		if sentinel == nil {
			e.Error = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, e.Error)
		}
		return fmt.Errorf("daemon: %w", decodeError(e, sentinel))
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("daemon: %s %s: bad reply: %w", method, path, err)
		}
	}
	return nil
}
