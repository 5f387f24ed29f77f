package netns

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dial has host h open a TCP connection to addr with bash's /dev/tcp,
// giving up after 3 s, and reports whether it connected.
func dial(t *testing.T, h *Host, addr string) bool {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	cmd := h.Command("timeout", "3", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s", host, port))
	return cmd.Run() == nil
}

// TestHostsReachTheTestAndCutOff: two hosts on two racks each have their
// own address, reach a listener of the test on the bridge; a cut host
// reaches nothing until it is restored; and everything is removed when
// the test ends.
func TestHostsReachTheTestAndCutOff(t *testing.T) {
	Require(t)
	var id string
	t.Run("net", func(t *testing.T) {
		nt := New(t)
		id = nt.id
		a, b := nt.AddHost(t, "/r1"), nt.AddHost(t, "/r2")
		if a.IP == b.IP || a.IP == nt.IP() {
			t.Fatalf("addresses %s, %s and the test's %s are not distinct", a.IP, b.IP, nt.IP())
		}
		out, err := a.Command("ip", "-4", "-o", "addr", "show", "dev", "eth0").Output()
		if err != nil || !strings.Contains(string(out), " "+a.IP+"/24") {
			t.Fatalf("host %s: eth0 shows %q (%v), want %s", a.Name, out, err, a.IP)
		}
		l, err := net.Listen("tcp", net.JoinHostPort(nt.IP(), "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		for _, h := range []*Host{a, b} {
			if !dial(t, h, l.Addr().String()) {
				t.Fatalf("host %s (%s) cannot reach the test at %s", h.Name, h.IP, l.Addr())
			}
		}
		a.Cut(t)
		if dial(t, a, l.Addr().String()) {
			t.Fatalf("a cut host %s still reaches the test", a.Name)
		}
		if !dial(t, b, l.Addr().String()) {
			t.Fatalf("host %s lost the network when %s was cut", b.Name, a.Name)
		}
		a.Restore(t)
		deadline := time.Now().Add(10 * time.Second)
		for !dial(t, a, l.Addr().String()) {
			if time.Now().After(deadline) {
				t.Fatalf("host %s does not reach the test after it was restored", a.Name)
			}
		}
	})
	for _, what := range []string{"netns", "link"} {
		for _, name := range list(what) {
			if strings.Contains(name, id) || strings.HasPrefix(name, fmt.Sprintf("%s%d-", nsPrefix, pidOf(id))) {
				t.Errorf("%s %s left behind", what, name)
			}
		}
	}
}

// TestSweepRemovesLeftovers: a namespace and a link named for a process
// that is gone (a test binary killed before its cleanup) are removed by
// the next New.
func TestSweepRemovesLeftovers(t *testing.T) {
	Require(t)
	// A process ID above Linux's limit (PID_MAX_LIMIT, 2^22): no process
	// has it, nor will one while the test runs. (The ID of a process that
	// just exited was taken again by a new thread on a busy machine.)
	const pid = 1<<22 + 1
	ns := fmt.Sprintf("%s%d-1-h1", nsPrefix, pid)
	link := fmt.Sprintf("%s%sx1", bridgePrefix, fmt36(pid))
	mustIP(t, "netns", "add", ns)
	mustIP(t, "link", "add", link, "type", "bridge")
	t.Cleanup(func() {
		if exists("netns", ns) {
			_ = ip("netns", "del", ns)
		}
		if exists("link", link) {
			_ = ip("link", "del", link)
		}
	})
	New(t)
	if exists("netns", ns) || exists("link", link) {
		t.Fatalf("the leftovers of process %d (%s, %s) were not swept", pid, ns, link)
	}
}

func fmt36(pid int) string { return strconv.FormatInt(int64(pid), 36) }

// pidOf is the process ID in a Net's id "PIDxN".
func pidOf(id string) int {
	p, _, _ := strings.Cut(id, "x")
	n, _ := strconv.ParseInt(p, 36, 64)
	return int(n)
}
