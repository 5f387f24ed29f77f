// Package netns gives end-to-end tests many hosts on one machine: each
// host is a Linux network namespace with an address of its own, joined to
// the others by a veth pair into one bridge in the test's own namespace,
// which has an address on the same subnet (so the test reaches every
// host, and the hosts reach each other). Hosts are grouped into racks
// only by name: the network is one subnet, the racks are what cairn is
// told. A process runs on a host through nsenter(1), which enters only the
// network namespace, so a FUSE mount made there is seen by the test. A
// host can be cut off (its link set down) and brought back.
//
// It needs root and iproute2 (`ip`). Outside CI a test without them is
// skipped; with $CI set it fails instead. Everything a Net makes is
// removed when the test ends, failed or panicked (t.Cleanup), and New
// first removes what earlier runs killed before their cleanup left behind:
// every name carries the creating process's ID, and names of processes
// that are gone are swept.
package netns

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Name prefixes of what a Net makes: namespaces "cnt-PID-N-hI", the bridge
// "cnbPIDxN" and veth ends "cnvPIDxNhI" (PID in base 36, to fit the 15
// bytes of an interface name).
const (
	nsPrefix     = "cnt-"
	bridgePrefix = "cnb"
	vethPrefix   = "cnv"
)

// lockPath serializes choosing a free subnet among concurrent test
// processes.
const lockPath = "/run/lock/cairn-netns.lock"

var counter struct {
	sync.Mutex
	n int
}

// Net is a bridge and the hosts joined to it.
type Net struct {
	id     string // "PIDxN", in every name
	pid    int
	n      int
	bridge string
	prefix string // "10.A.B."
	mu     sync.Mutex
	hosts  []*Host
}

// Host is one network namespace on the Net.
type Host struct {
	Name string // the namespace's name
	IP   string // its address on the Net
	Rack string // the rack the test puts it on ("" for none)
	veth string // the bridge's end of its link
	net  *Net
}

// Require skips t (or, with $CI set, fails it) unless this process can
// make network namespaces: it runs as root and has ip(8) and nsenter(1).
func Require(t testing.TB) {
	t.Helper()
	var why string
	switch {
	case os.Geteuid() != 0:
		why = "network namespaces need root"
	case !have("ip"):
		why = "ip(8) is missing (Debian: apt-get install iproute2, or make deps as root)"
	case !have("nsenter"):
		why = "nsenter(1) is missing (Debian: util-linux)"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("multi-host test cannot run in CI: %s", why)
	}
	t.Skipf("skipping the multi-host test: %s", why)
}

func have(prog string) bool {
	_, err := exec.LookPath(prog)
	return err == nil
}

// New makes a bridge with an address of the test's own on a free /24
// subnet of 10.0.0.0/8, removed when t ends. It first sweeps what killed
// test processes left behind.
func New(t testing.TB) *Net {
	t.Helper()
	Require(t)
	sweep(t)
	counter.Lock()
	counter.n++
	n := counter.n
	counter.Unlock()
	pid := os.Getpid()
	nt := &Net{pid: pid, n: n, id: strconv.FormatInt(int64(pid), 36) + "x" + strconv.FormatInt(int64(n), 36)}
	nt.bridge = bridgePrefix + nt.id
	t.Cleanup(func() { nt.remove(t) })

	unlock := lock(t)
	defer unlock()
	prefix, err := freeSubnet()
	if err != nil {
		t.Fatal(err)
	}
	nt.prefix = prefix
	mustIP(t, "link", "add", nt.bridge, "type", "bridge")
	mustIP(t, "addr", "add", nt.IP()+"/24", "dev", nt.bridge)
	mustIP(t, "link", "set", nt.bridge, "up")
	t.Logf("netns: bridge %s, subnet %s0/24, the test at %s", nt.bridge, nt.prefix, nt.IP())
	return nt
}

// IP is the test process's own address on the Net (the bridge's).
func (nt *Net) IP() string { return nt.prefix + "254" }

// Hosts returns the hosts added so far, in order.
func (nt *Net) Hosts() []*Host {
	nt.mu.Lock()
	defer nt.mu.Unlock()
	return append([]*Host(nil), nt.hosts...)
}

// AddHost makes a namespace with loopback up and one link into the bridge,
// with the next address (10.A.B.1, .2, ...), on rack (a name for the test
// to use; "" for none).
func (nt *Net) AddHost(t testing.TB, rack string) *Host {
	t.Helper()
	nt.mu.Lock()
	i := len(nt.hosts) + 1
	if i > 250 {
		nt.mu.Unlock()
		t.Fatalf("netns: at most 250 hosts on a Net")
	}
	h := &Host{
		Name: fmt.Sprintf("%s%d-%d-h%d", nsPrefix, nt.pid, nt.n, i),
		IP:   nt.prefix + strconv.Itoa(i),
		Rack: rack,
		veth: fmt.Sprintf("%s%sh%d", vethPrefix, nt.id, i),
		net:  nt,
	}
	nt.hosts = append(nt.hosts, h)
	nt.mu.Unlock()
	mustIP(t, "netns", "add", h.Name)
	mustIP(t, "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.Name)
	mustIP(t, "link", "set", h.veth, "master", nt.bridge, "up")
	mustIP(t, "-n", h.Name, "addr", "add", h.IP+"/24", "dev", "eth0")
	mustIP(t, "-n", h.Name, "link", "set", "eth0", "up")
	mustIP(t, "-n", h.Name, "link", "set", "lo", "up")
	return h
}

// Wrap returns the command line that runs bin with args on h: nsenter
// enters h's network namespace and executes bin in place, so the process
// keeps its ID, its process group and its parent-death signal.
func (h *Host) Wrap(bin string, args []string) (string, []string) {
	return "nsenter", append([]string{"--net=" + filepath.Join("/run/netns", h.Name), "--", bin}, args...)
}

// Command is exec.Command(name, args...) run on h.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	bin, full := h.Wrap(name, args)
	return exec.Command(bin, full...)
}

// Address is h's IP (for tests/cluster, which places processes on hosts).
func (h *Host) Address() string { return h.IP }

// Cut takes h off the network: the bridge's end of its link goes down, so
// nothing reaches h and h reaches nothing, as a pulled cable.
func (h *Host) Cut(t testing.TB) {
	t.Helper()
	mustIP(t, "link", "set", h.veth, "down")
	t.Logf("netns: %s (%s) cut off", h.Name, h.IP)
}

// Restore brings a cut host back.
func (h *Host) Restore(t testing.TB) {
	t.Helper()
	mustIP(t, "link", "set", h.veth, "up")
	t.Logf("netns: %s (%s) back", h.Name, h.IP)
}

// remove deletes every host's link and namespace and the bridge, reporting
// (not stopping at) what fails.
func (nt *Net) remove(t testing.TB) {
	for _, h := range nt.Hosts() {
		if exists("link", h.veth) {
			if err := ip("link", "del", h.veth); err != nil {
				t.Errorf("netns cleanup: %v", err)
			}
		}
		if exists("netns", h.Name) {
			if err := ip("netns", "del", h.Name); err != nil {
				t.Errorf("netns cleanup: %v", err)
			}
		}
	}
	if exists("link", nt.bridge) {
		if err := ip("link", "del", nt.bridge); err != nil {
			t.Errorf("netns cleanup: %v", err)
		}
	}
}

// sweep removes namespaces and links of Nets whose process is gone.
func sweep(t testing.TB) {
	t.Helper()
	for _, name := range list("netns") {
		rest, ok := strings.CutPrefix(name, nsPrefix)
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err == nil && gone(pid) {
			if err := ip("netns", "del", name); err != nil {
				t.Logf("netns sweep: %v", err)
			}
		}
	}
	for _, name := range list("link") {
		var rest string
		var ok bool
		if rest, ok = strings.CutPrefix(name, bridgePrefix); !ok {
			if rest, ok = strings.CutPrefix(name, vethPrefix); !ok {
				continue
			}
		}
		pid36, _, found := strings.Cut(rest, "x")
		pid, err := strconv.ParseInt(pid36, 36, 64)
		if !found || err != nil || !gone(int(pid)) {
			continue
		}
		if err := ip("link", "del", name); err != nil && exists("link", name) {
			t.Logf("netns sweep: %v", err)
		}
	}
}

// gone reports whether no process has ID pid.
func gone(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

// list names the network namespaces ("netns") or the links ("link") of
// the test's own namespace.
func list(what string) []string {
	var out []byte
	var err error
	if what == "netns" {
		out, err = exec.Command("ip", "netns", "list").Output()
	} else {
		out, err = exec.Command("ip", "-o", "link", "show").Output()
	}
	if err != nil {
		return nil
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 0:
		case what == "netns":
			names = append(names, f[0])
		case len(f) > 1:
			// "7: cnv1x1h1@if2: <BROADCAST,..."
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			names = append(names, name)
		}
	}
	return names
}

func exists(what, name string) bool {
	for _, n := range list(what) {
		if n == name {
			return true
		}
	}
	return false
}

// freeSubnet picks 10.A.B. (A in 200..249) used by no address or route
// of the test's namespace.
func freeSubnet() (string, error) {
	out, err := exec.Command("ip", "-4", "-o", "addr", "show").Output()
	if err != nil {
		return "", fmt.Errorf("ip -4 addr show: %w", err)
	}
	routes, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		return "", fmt.Errorf("ip -4 route show: %w", err)
	}
	used := string(out) + "\n" + string(routes)
	start := os.Getpid()
	for i := range 50 * 250 {
		k := (start + i) % (50 * 250)
		p := fmt.Sprintf("10.%d.%d.", 200+k/250, k%250)
		if !strings.Contains(used, " "+p) && !strings.Contains(used, "\n"+p) && !strings.HasPrefix(used, p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("no free /24 in 10.200.0.0-10.249.255.0")
}

// lock takes an exclusive lock on lockPath, released by the function it
// returns.
func lock(t testing.TB) func() {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	return func() { f.Close() }
}

// ipTimeout bounds one ip(8) command. The kernel serializes changes to
// links and namespaces (the RTNL lock), and removing a namespace holds it
// for long: with other tests' namespaces coming and going on the machine,
// a `link set up` has waited more than 30 s.
const ipTimeout = 3 * time.Minute

// ip runs ip(8) with args.
func ip(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// mustIP runs ip(8) with args and fails t if it fails.
func mustIP(t testing.TB, args ...string) {
	t.Helper()
	if err := ip(args...); err != nil {
		t.Fatalf("netns: %v", err)
	}
}
