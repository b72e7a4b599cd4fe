// Package agent runs a migrate.Driver on another host: the client half
// implements migrate.Driver by running `ferry agent --stdio` through a
// host.Host (nsenter into a testbed namespace, ssh to a remote machine) and
// exchanging one JSON request and response; the server half is what that
// command runs. This is how CRIU runs on both ends of a migration, the way
// LXD and P.Haul keep a daemon on each side.
package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
)

// Protocol versions the request/response format.
const Protocol = "ferry.agent/v1"

// Operations.
const (
	OpPreflight  = "preflight-checkpoint"
	OpCheckpoint = "checkpoint"
	OpRestore    = "restore"
)

// Request is one call.
type Request struct {
	Protocol   string                     `json:"protocol"`
	Op         string                     `json:"op"`
	Checkpoint *migrate.CheckpointRequest `json:"checkpoint,omitempty"`
	Restore    *migrate.RestoreRequest    `json:"restore,omitempty"`
}

// Response is the answer to one Request.
type Response struct {
	Protocol   string                    `json:"protocol"`
	Checkpoint *migrate.CheckpointResult `json:"checkpoint,omitempty"`
	Restore    *migrate.RestoreResult    `json:"restore,omitempty"`
	Error      *Error                    `json:"error,omitempty"`
}

// Error carries a driver error across the wire, keeping what the journal
// needs: the CRIU log and its lifted lines, and the hint.
type Error struct {
	Message string   `json:"message"`
	Op      string   `json:"op,omitempty"`
	Log     string   `json:"log,omitempty"`
	Lifted  []string `json:"lifted,omitempty"`
	Hint    string   `json:"hint,omitempty"`
}

// Serve reads one request from in, runs it on d and writes the response to
// out. Only a broken request or stream is returned as an error; driver
// failures travel in the response.
func Serve(ctx context.Context, in io.Reader, out io.Writer, d migrate.Driver) error {
	var req Request
	if err := json.NewDecoder(in).Decode(&req); err != nil {
		return fmt.Errorf("agent: read request: %w", err)
	}
	if req.Protocol != Protocol {
		return fmt.Errorf("agent: protocol %q, this ferry speaks %q", req.Protocol, Protocol)
	}
	resp := Response{Protocol: Protocol}
	var err error
	switch req.Op {
	case OpPreflight:
		if p, ok := d.(migrate.Preflighter); ok && req.Checkpoint != nil {
			err = p.PreflightCheckpoint(ctx, *req.Checkpoint)
		}
	case OpCheckpoint:
		if req.Checkpoint == nil {
			return errors.New("agent: checkpoint request without arguments")
		}
		resp.Checkpoint, err = d.Checkpoint(ctx, *req.Checkpoint)
	case OpRestore:
		if req.Restore == nil {
			return errors.New("agent: restore request without arguments")
		}
		resp.Restore, err = d.Restore(ctx, *req.Restore)
	default:
		return fmt.Errorf("agent: unknown operation %q", req.Op)
	}
	if err != nil {
		resp.Error = toWire(err)
	}
	return json.NewEncoder(out).Encode(resp)
}

func toWire(err error) *Error {
	e := &Error{Message: err.Error()}
	var f *migrate.Failure
	if errors.As(err, &f) {
		e.Op, e.Log, e.Lifted = f.Op, f.Log, f.Lifted
	}
	var h interface{ Hint() string }
	if errors.As(err, &h) {
		e.Hint = h.Hint()
	}
	return e
}

// RemoteError is a driver error that happened on the agent's host.
type RemoteError struct {
	Host string
	Wire *Error
}

func (e *RemoteError) Error() string { return e.Host + ": " + e.Wire.Message }
func (e *RemoteError) Hint() string  { return e.Wire.Hint }

// Driver runs another driver on Host through `ferry agent --stdio`.
type Driver struct {
	Host host.Host
	// Argv starts the agent on Host, e.g. ["/usr/local/bin/ferry", "agent",
	// "--stdio", "--criu", "/opt/ferry/criu/bin/criu"].
	Argv []string
	// Label names the remote driver ("criu").
	Label string
}

var (
	_ migrate.Driver      = (*Driver)(nil)
	_ migrate.Preflighter = (*Driver)(nil)
)

func (d *Driver) Name() string { return d.Label + "@" + d.Host.Name() }

func (d *Driver) PreflightCheckpoint(ctx context.Context, req migrate.CheckpointRequest) error {
	_, err := d.call(ctx, Request{Op: OpPreflight, Checkpoint: &req})
	return err
}

func (d *Driver) Checkpoint(ctx context.Context, req migrate.CheckpointRequest) (*migrate.CheckpointResult, error) {
	resp, err := d.call(ctx, Request{Op: OpCheckpoint, Checkpoint: &req})
	if resp == nil {
		return nil, err
	}
	return resp.Checkpoint, err
}

func (d *Driver) Restore(ctx context.Context, req migrate.RestoreRequest) (*migrate.RestoreResult, error) {
	resp, err := d.call(ctx, Request{Op: OpRestore, Restore: &req})
	if resp == nil {
		return nil, err
	}
	return resp.Restore, err
}

// call runs one request. CRIU must not be interrupted between freezing a
// tree and resuming it, so the agent is never killed by ctx: a cancel is
// seen by the caller once the agent has answered.
func (d *Driver) call(ctx context.Context, req Request) (*Response, error) {
	req.Protocol = Protocol
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	res, err := d.Host.Run(context.WithoutCancel(ctx), d.Argv, host.RunOptions{Stdin: bytes.NewReader(body), Timeout: -1})
	if err != nil {
		return nil, fmt.Errorf("agent on %s: %w", d.Host.Name(), err)
	}
	var resp Response
	if err := json.Unmarshal(res.Stdout, &resp); err != nil {
		return nil, fmt.Errorf("agent on %s: bad response %q: %w", d.Host.Name(), strings.TrimSpace(string(res.Stdout)), err)
	}
	if resp.Error != nil {
		if resp.Error.Op != "" {
			return &resp, &migrate.Failure{Op: resp.Error.Op, Log: resp.Error.Log, Lifted: resp.Error.Lifted, Err: &RemoteError{Host: d.Host.Name(), Wire: resp.Error}}
		}
		return &resp, &RemoteError{Host: d.Host.Name(), Wire: resp.Error}
	}
	return &resp, nil
}
