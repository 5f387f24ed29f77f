package dev

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestParseRequest(t *testing.T) {
	for _, c := range []struct {
		line string
		want request
		ok   bool
	}{
		{"status", request{op: "status"}, true},
		{" status ", request{op: "status"}, true},
		{"restart blockd2", request{op: "restart", name: "blockd2"}, true},
		{"restart metad", request{op: "restart", name: "metad"}, true},
		{"restart", request{}, false},
		{"restart a b", request{}, false},
		{"restart ../metad", request{}, false},
		{"restart Blockd1", request{}, false},
		{"restart " + strings.Repeat("a", 33), request{}, false},
		{"status now", request{}, false},
		{"stop blockd1", request{}, false},
		{"", request{}, false},
	} {
		got, err := parseRequest(c.line)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseRequest(%q) = %+v, %v; want %+v, ok %v", c.line, got, err, c.want, c.ok)
		}
	}
}

// FuzzParseRequest: any line from the control socket is either refused or
// a request that prints back as a line parsing to itself.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"status", "restart blockd1", "restart", "restart \x00", "stop", "restart a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		req, err := parseRequest(line)
		if err != nil {
			return
		}
		again, err := parseRequest(req.String())
		if err != nil || again != req {
			t.Fatalf("parseRequest(%q) = %+v, which prints as %q and parses to %+v, %v", line, req, req.String(), again, err)
		}
		if req.op == "restart" && !validName(req.name) {
			t.Fatalf("parseRequest(%q): restart of %q", line, req.name)
		}
	})
}

// TestListenProblem: an address another listener holds is named with
// EADDRINUSE; a free one and port 0 are not a problem.
func TestListenProblem(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := listenProblem(l.Addr().String()); !errors.Is(err, syscall.EADDRINUSE) || err.Error() != "address already in use" {
		t.Errorf("listenProblem(held %s) = %v, want EADDRINUSE", l.Addr(), err)
	}
	if err := listenProblem("127.0.0.1:0"); err != nil {
		t.Errorf("listenProblem(port 0) = %v", err)
	}
}

func TestLogTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	var b strings.Builder
	for i := range 3000 {
		b.WriteString(strings.Repeat("x", i%50))
		b.WriteString("\n")
	}
	b.WriteString("last line\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := logTail(path, 3)
	lines := strings.Split(b.String(), "\n")
	want := strings.Join(lines[len(lines)-4:], "\n")
	if got != want {
		t.Errorf("logTail = %q, want %q", got, want)
	}
	if got := indent("a\nb\n", "  | "); got != "  | a\n  | b\n" {
		t.Errorf("indent = %q", got)
	}
}

// TestRacks: blockds go to /rack1.../rackR in turn; no racks, no --rack.
func TestRacks(t *testing.T) {
	c := &devCluster{o: options{blockds: 5, racks: 2}}
	var got []string
	for i := 1; i <= 5; i++ {
		got = append(got, c.rack(i))
	}
	if strings.Join(got, " ") != "/rack1 /rack2 /rack1 /rack2 /rack1" {
		t.Errorf("racks of 5 blockds on 2 racks: %v", got)
	}
	if r := (&devCluster{o: options{blockds: 3}}).rack(2); r != "" {
		t.Errorf("rack with --racks 0: %q", r)
	}
}

// TestControlSocketLongPath: a cluster directory too deep for a Unix
// socket's path still gets a control socket, and a second cairn dev on it
// is refused while the first listens.
func TestControlSocketLongPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := listenControl(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := &supervisor{dir: dir}
	go s.serve(t.Context(), l)
	if _, err := listenControl(dir); err == nil || !strings.Contains(err.Error(), "runs with") {
		t.Errorf("second listenControl: %v, want refused", err)
	}
	resp, err := call(dir, request{op: "status"})
	if err != nil || !resp.OK || !strings.HasPrefix(resp.Text, "NAME") {
		t.Errorf("status over the socket: %+v, %v", resp, err)
	}
	resp, err = call(dir, request{op: "restart", name: "blockd1"})
	if err != nil || resp.OK || !strings.Contains(resp.Text, `no daemon "blockd1"`) {
		t.Errorf("restart of an unknown daemon: %+v, %v", resp, err)
	}
	closeControl(dir, l)
	if _, err := os.Stat(filepath.Join(dir, sockName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after closeControl: %v", err)
	}
	if _, err := call(dir, request{op: "status"}); err == nil || !strings.Contains(err.Error(), "no cairn dev answers") {
		t.Errorf("status with no cairn dev: %v", err)
	}
}

// TestControlBadRequest: a line that is not a request, or too long, gets
// an answer saying so, not a hang or a crash.
func TestControlBadRequest(t *testing.T) {
	dir := t.TempDir()
	l, err := listenControl(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer closeControl(dir, l)
	go (&supervisor{dir: dir}).serve(t.Context(), l)
	for _, line := range []string{"reboot\n", strings.Repeat("x", 1000) + "\n", "restart\n"} {
		c, err := net.Dial("unix", filepath.Join(dir, sockName))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4096)
		n, _ := c.Read(b)
		c.Close()
		if !strings.HasPrefix(string(b[:n]), `{"ok":false,"text":`) {
			t.Errorf("answer to %.20q: %q", line, b[:n])
		}
	}
}
