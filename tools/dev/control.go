package dev

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The control socket: a running `cairn dev` listens on DIR/dev.sock (a
// Unix socket, mode 0600), where `cairn dev status` and `cairn dev restart
// NAME` talk to it. A request is one line of text ("status", "restart
// blockd2"); the answer is one line of JSON, a response.

// sockName is the control socket's name in the cluster's directory.
const sockName = "dev.sock"

const (
	maxRequest   = 256     // bytes of a request line, newline included
	maxResponse  = 1 << 20 // bytes of an answer
	readTimeout  = 10 * time.Second
	replyTimeout = 3 * time.Minute // a restart waits up to a minute for the daemon
)

// request is what a control client asks.
type request struct {
	op   string // "status" or "restart"
	name string // restart's daemon
}

func (r request) String() string {
	if r.op == "restart" {
		return "restart " + r.name
	}
	return r.op
}

// response is the answer to a request.
type response struct {
	OK   bool   `json:"ok"`
	Text string `json:"text"`
}

// parseRequest parses a request line (without its newline).
func parseRequest(line string) (request, error) {
	f := strings.Fields(line)
	switch {
	case len(f) == 1 && f[0] == "status":
		return request{op: "status"}, nil
	case len(f) == 2 && f[0] == "restart" && validName(f[1]):
		return request{op: "restart", name: f[1]}, nil
	case len(f) > 0 && f[0] == "restart":
		return request{}, errors.New("restart takes one daemon name (metad, blockdN, mount)")
	}
	return request{}, fmt.Errorf("unknown request %q (status, restart NAME)", truncate(line, 40))
}

// validName reports whether name can be a daemon's: letters and digits.
func validName(name string) bool {
	if name == "" || len(name) > 32 {
		return false
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// sockPath returns an address for the control socket of dir, and a
// function to call once it is bound or connected. A Unix socket's path
// has at most 107 bytes; a longer one is reached through the directory
// opened here (/proc/self/fd/N/dev.sock).
func sockPath(dir string) (string, func(), error) {
	path := filepath.Join(dir, sockName)
	if len(path) < 100 {
		return path, func() {}, nil
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("control socket: %w", err)
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", fd, sockName), func() { _ = unix.Close(fd) }, nil
}

// listenControl claims dir's control socket. A socket some running cairn
// dev answers on means the cluster runs already; one left by a cairn dev
// that died is removed.
func listenControl(dir string) (net.Listener, error) {
	path, done, err := sockPath(dir)
	if err != nil {
		return nil, err
	}
	defer done()
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return nil, fmt.Errorf("a cairn dev runs with %s already (its control socket %s answers): see it with cairn dev status --dir %s", showPath(dir), sockName, showPath(dir))
	}
	real := filepath.Join(dir, sockName)
	if err := os.Remove(real); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// closeControl removes it by its real path: path may name a
	// descriptor closed by then.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(real, 0o600); err != nil {
		closeControl(dir, l)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return l, nil
}

// closeControl closes the control socket and removes it.
func closeControl(dir string, l net.Listener) {
	_ = l.Close()
	_ = os.Remove(filepath.Join(dir, sockName))
}

// serve answers control clients on l until l is closed.
func (s *supervisor) serve(ctx context.Context, l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go s.handle(ctx, c)
	}
}

func (s *supervisor) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(readTimeout))
	line, err := bufio.NewReaderSize(io.LimitReader(c, maxRequest), maxRequest).ReadString('\n')
	var resp response
	if err != nil {
		resp.Text = "a request is one line of at most 255 bytes"
	} else if req, err := parseRequest(strings.TrimSuffix(line, "\n")); err != nil {
		resp.Text = err.Error()
	} else {
		resp = s.do(ctx, req)
	}
	b, _ := json.Marshal(resp)
	_ = c.SetWriteDeadline(time.Now().Add(readTimeout))
	_, _ = c.Write(append(b, '\n'))
}

func (s *supervisor) do(ctx context.Context, req request) response {
	switch req.op {
	case "status":
		return response{OK: true, Text: s.status()}
	case "restart":
		msg, err := s.restart(ctx, req.name)
		if err != nil {
			return response{Text: err.Error()}
		}
		return response{OK: true, Text: msg + "\n"}
	}
	return response{Text: "unknown request " + req.op}
}

// call sends req to the cairn dev running with dir and returns its answer.
func call(dir string, req request) (response, error) {
	path, done, err := sockPath(dir)
	if err != nil {
		return response{}, err
	}
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	done()
	if err != nil {
		return response{}, fmt.Errorf("no cairn dev answers in %s (%w); start one with cairn dev --dir %s", showPath(dir), err, showPath(dir))
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(replyTimeout))
	if _, err := fmt.Fprintf(c, "%s\n", req); err != nil {
		return response{}, fmt.Errorf("control socket: %w", err)
	}
	var resp response
	if err := json.NewDecoder(io.LimitReader(c, maxResponse)).Decode(&resp); err != nil {
		return response{}, fmt.Errorf("control socket: no answer: %w", err)
	}
	return resp, nil
}
