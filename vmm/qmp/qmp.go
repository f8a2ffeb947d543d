// Package qmp drives QEMU for the tests and benchmarks that measure the
// test guest and Ferry against it: a QMP client and query-migrate's
// figures. It is not part of the framework.
package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// Client speaks QEMU's machine protocol over a unix socket: one JSON
// object per message; after the greeting and qmp_capabilities every
// command carries an id and gets exactly one "return" or "error" reply,
// with asynchronous "event" messages interleaved anywhere. Commands are
// sent one at a time (mu); every read and write is bounded by the ctx
// deadline.
type Client struct {
	mu     sync.Mutex
	conn   net.Conn
	dec    *json.Decoder
	nextID int
	events []message
}

// message is any message from QEMU; which fields are set says what it is.
type message struct {
	QMP    json.RawMessage `json:"QMP,omitempty"`
	Return json.RawMessage `json:"return,omitempty"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error,omitempty"`
	Event string          `json:"event,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
	ID    json.RawMessage `json:"id,omitempty"`
}

// Dial connects to QEMU's -qmp unix socket, retrying until QEMU has
// created it, QEMU exited (exited closed) or ctx ends, reads the greeting
// and leaves negotiation mode.
func Dial(ctx context.Context, path string, exited <-chan struct{}) (*Client, error) {
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			c := &Client{conn: conn, dec: json.NewDecoder(conn)}
			if err := c.handshake(ctx); err != nil {
				conn.Close()
				return nil, fmt.Errorf("qmp %s: %w", path, err)
			}
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp %s: %w (last: %v)", path, ctx.Err(), err)
		case <-exited:
			return nil, fmt.Errorf("qmp %s: QEMU exited before its QMP socket answered (last: %v)", path, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *Client) handshake(ctx context.Context) error {
	c.deadline(ctx)
	var greeting message
	if err := c.dec.Decode(&greeting); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if greeting.QMP == nil {
		return errors.New("greeting: no QMP banner")
	}
	return c.Execute(ctx, "qmp_capabilities", nil, nil)
}

func (c *Client) deadline(ctx context.Context) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(30 * time.Second)
	}
	c.conn.SetDeadline(dl)
}

// Execute runs one command and decodes its "return" into out (if not nil).
// Events read meanwhile are kept for Events.
func (c *Client) Execute(ctx context.Context, cmd string, args, out any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline(ctx)
	c.nextID++
	id := strconv.Itoa(c.nextID)
	req := map[string]any{"execute": cmd, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("qmp %s: send: %w", cmd, err)
	}
	for {
		var m message
		if err := c.dec.Decode(&m); err != nil {
			return fmt.Errorf("qmp %s: %w", cmd, err)
		}
		switch {
		case m.Event != "":
			c.events = append(c.events, m)
			continue
		case string(m.ID) != strconv.Quote(id):
			return fmt.Errorf("qmp %s: reply for id %s, want %q", cmd, m.ID, id)
		case m.Error != nil:
			return fmt.Errorf("qmp %s: %s: %s", cmd, m.Error.Class, m.Error.Desc)
		case out != nil:
			if err := json.Unmarshal(m.Return, out); err != nil {
				return fmt.Errorf("qmp %s: decode return: %w", cmd, err)
			}
		}
		return nil
	}
}

// Events returns the names of the events seen so far.
func (c *Client) Events() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, len(c.events))
	for i, e := range c.events {
		names[i] = e.Event
	}
	return names
}

func (c *Client) Close() error { return c.conn.Close() }

// MigrateInfo is the part of query-migrate that tests and benchmarks read.
type MigrateInfo struct {
	Status    string `json:"status"`
	TotalTime int64  `json:"total-time"`
	Downtime  int64  `json:"downtime"`
	SetupTime int64  `json:"setup-time"`
	ErrorDesc string `json:"error-desc"`
	RAM       struct {
		Transferred int64   `json:"transferred"`
		Total       int64   `json:"total"`
		Duplicate   int64   `json:"duplicate"`
		Normal      int64   `json:"normal"`
		NormalBytes int64   `json:"normal-bytes"`
		DirtySyncs  int64   `json:"dirty-sync-count"`
		Mbps        float64 `json:"mbps"`
	} `json:"ram"`
}

// WaitMigration polls query-migrate until the migration completed, failed
// or was cancelled, or ctx ends.
func WaitMigration(ctx context.Context, c *Client) (MigrateInfo, error) {
	for {
		var info MigrateInfo
		if err := c.Execute(ctx, "query-migrate", nil, &info); err != nil {
			return info, err
		}
		switch info.Status {
		case "completed":
			return info, nil
		case "failed", "cancelled":
			return info, fmt.Errorf("migration %s: %s", info.Status, info.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return info, fmt.Errorf("migration still %q: %w", info.Status, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
