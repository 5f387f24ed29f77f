// Package cluster starts real cairn processes for end-to-end tests.
//
// Start runs one metad and N blockds of the cairn binary as separate
// processes on 127.0.0.1, on ports chosen by the kernel, with temporary data
// directories. Each process writes its output to a log file in the test's
// temporary directory; the logs are shown when the test fails. Mount mounts
// the cluster with `cairn mount`. Every process is stopped when the test
// ends, passed or failed, and is killed by the kernel if the test binary
// dies first. Every wait has a deadline.
//
// A Cluster's methods are meant for the goroutine of the test that uses
// them, which passes its own t (a subtest passes the subtest's).
package cluster

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cairn/trust"
)

const (
	// startTimeout bounds how long a daemon may take to write its address
	// file, and a mount to appear. A daemon on a host of a test network
	// starts through nsenter, whose entering the namespace has waited
	// for the kernel's lock for most of a minute while other tests'
	// namespaces were removed.
	startTimeout = 90 * time.Second
	// stopGrace is how long a daemon or mount may take to exit after
	// SIGTERM.
	stopGrace = 10 * time.Second
	// runTimeout bounds a client command run by Run.
	runTimeout = 2 * time.Minute
)

// Config describes a cluster. Zero fields leave the daemons' defaults,
// except Blockds (3) and Heartbeat (200 ms: tests should not wait seconds
// for a blockd to report).
type Config struct {
	Blockds     int           // number of blockds
	BlockSize   int64         // metad --block-size, in bytes
	Replication int           // metad --replication
	Heartbeat   time.Duration // --heartbeat of metad and every blockd
	DeadAfter   time.Duration // metad --dead-after
	Racks       []string      // blockd i gets --rack Racks[i], when there is one
	MetadArgs   []string      // more flags for metad
	// SafeModeExtension is metad's --safemode-extension (default 0).
	SafeModeExtension time.Duration
	BlockdArgs        []string // more flags for every blockd
	// BlockdData lists the data directories of blockd i (--data
	// DIR1,DIR2...) when BlockdData[i] is not empty; otherwise the blockd
	// gets one directory of its own in the test's temporary directory.
	BlockdData [][]string
	// MetadOnly starts metad alone: no blockd.
	MetadOnly bool
	// Restore makes metad's first start restore this checkpoint
	// (--restore) instead of formatting a new namespace.
	Restore string
	// MetadHost, when set, runs metad on that host of a test network
	// (tests/netns), listening on the host's address; BlockdHosts[i], when
	// set, runs blockd i there, listening on every address of the host
	// (so it advertises the address it reaches metad from). Mounts go on
	// hosts with MountOn. Unset, a process runs here, on 127.0.0.1.
	MetadHost   Host
	BlockdHosts []Host
	// Insecure starts every daemon with --insecure (no TLS); by default
	// the cluster runs on its CA's certificates (certs.go).
	Insecure bool
}

// Cluster is a running metad and its blockds.
type Cluster struct {
	t      testing.TB // the test that started the cluster
	bin    string
	cfg    Config
	logDir string

	metadDir  string
	metadFile string // metad's address file
	metad     *proc
	addrs     metadAddrs // as first bound; restarts reuse them

	blockds []*blockd

	mu      sync.Mutex
	procs   []*proc // every process started, for cleanup
	nmounts int

	certs *certs // nil when insecure
}

type blockd struct {
	dir      string   // the first data directory
	dirs     []string // every data directory
	addrFile string
	proc     *proc
	addrs    blockdAddrs
}

// metadAddrs is the address file of metad.
type metadAddrs struct {
	RPC  string `json:"rpc"`
	HTTP string `json:"http"`
}

// blockdAddrs is the address file of a blockd.
type blockdAddrs struct {
	Data      string `json:"data"`
	HTTP      string `json:"http"`
	StorageID string `json:"storage_id"`
}

// Start formats and starts a metad, then starts cfg.Blockds blockds and
// waits until each has registered with metad (it writes its address file
// only then). Everything is stopped when t ends.
func Start(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	if cfg.Blockds == 0 && !cfg.MetadOnly {
		cfg.Blockds = 3
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 200 * time.Millisecond
	}
	bin := Binary(t)
	dir := t.TempDir()
	c := &Cluster{
		t:         t,
		bin:       bin,
		cfg:       cfg,
		logDir:    filepath.Join(dir, "logs"),
		metadDir:  filepath.Join(dir, "metad"),
		metadFile: filepath.Join(dir, "metad.addr"),
	}
	mkdirs(t, c.logDir, c.metadDir)
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(c.cleanup)

	if cfg.MetadHost != nil {
		ip := cfg.MetadHost.Address()
		c.startMetad(t, true, net.JoinHostPort(ip, "0"), net.JoinHostPort(ip, "0"))
	} else {
		c.startMetad(t, true, "127.0.0.1:0", "127.0.0.1:0")
	}
	if !cfg.Insecure {
		c.setupCerts(t)
	}
	c.startBlockds(t, dir)
	t.Logf("cluster: metad %s (http %s), %d blockds, logs in %s", c.addrs.RPC, c.addrs.HTTP, len(c.blockds), c.logDir)
	return c
}

// startBlockds starts c.cfg.Blockds blockds with data directories under
// dir and waits until each has registered.
func (c *Cluster) startBlockds(t testing.TB, dir string) {
	t.Helper()
	cfg := c.cfg
	for i := range cfg.Blockds {
		b := &blockd{
			dir:      filepath.Join(dir, fmt.Sprintf("blockd%d", i)),
			addrFile: filepath.Join(dir, fmt.Sprintf("blockd%d.addr", i)),
		}
		if i < len(cfg.BlockdData) && len(cfg.BlockdData[i]) > 0 {
			b.dirs = cfg.BlockdData[i]
			b.dir = b.dirs[0]
		} else {
			b.dirs = []string{b.dir}
		}
		mkdirs(t, b.dirs...)
		c.blockds = append(c.blockds, b)
	}
	for i := range c.blockds {
		if c.blockdHost(i) != nil {
			c.launchBlockd(t, i, ":0", ":0")
		} else {
			c.launchBlockd(t, i, "127.0.0.1:0", "127.0.0.1:0")
		}
	}
	for i := range c.blockds {
		c.waitBlockd(t, i)
	}
}

// MetadAddr returns metad's RPC address, host:port.
func (c *Cluster) MetadAddr() string { return c.addrs.RPC }

// MetadHTTPAddr returns metad's HTTP address, host:port.
func (c *Cluster) MetadHTTPAddr() string { return c.addrs.HTTP }

// BlockdDirs returns every data directory of blockd i, in order.
func (c *Cluster) BlockdDirs(i int) []string {
	return append([]string(nil), c.blockds[i].dirs...)
}

// BlockdDataDirs returns the (first) data directory of each blockd, in
// order.
func (c *Cluster) BlockdDataDirs() []string {
	dirs := make([]string, len(c.blockds))
	for i, b := range c.blockds {
		dirs[i] = b.dir
	}
	return dirs
}

// StopMetad stops metad with SIGTERM and waits for it to exit. A metad that
// does not exit within 10 s fails the test and is killed.
func (c *Cluster) StopMetad(t testing.TB) {
	t.Helper()
	if c.metad == nil || c.metad.exited() {
		t.Fatalf("StopMetad: metad is not running")
	}
	if !c.metad.stop(syscall.SIGTERM, stopGrace) {
		t.Errorf("metad did not exit within %v of SIGTERM; it was killed", stopGrace)
	}
	t.Logf("metad stopped: %s", c.metad.exitStatus())
}

// StartMetad starts a stopped metad again on the same data directory and
// the same addresses, and waits until it listens.
func (c *Cluster) StartMetad(t testing.TB) {
	t.Helper()
	if c.metad != nil && !c.metad.exited() {
		t.Fatalf("StartMetad: metad is running")
	}
	c.startMetad(t, false, c.addrs.RPC, c.addrs.HTTP)
	for _, b := range c.blockds {
		if b.proc != nil && !b.proc.exited() {
			// Writable again once the running blockds have reported.
			c.WaitSafeModeOff(t, time.Minute)
			break
		}
	}
}

// StartMetadInSafeMode starts a stopped metad again, as StartMetad does,
// but returns while it may still be in safe mode.
func (c *Cluster) StartMetadInSafeMode(t testing.TB) {
	t.Helper()
	if c.metad != nil && !c.metad.exited() {
		t.Fatalf("StartMetadInSafeMode: metad is running")
	}
	c.startMetad(t, false, c.addrs.RPC, c.addrs.HTTP)
}

// WaitSafeModeOff waits, at most timeout, until metad is out of safe mode
// (`cairn admin -safemode wait`).
func (c *Cluster) WaitSafeModeOff(t testing.TB, timeout time.Duration) {
	t.Helper()
	out, err := c.run("admin", "-safemode", "wait", "-timeout", timeout.String())
	if err != nil || out.Code != 0 {
		t.Fatalf("metad did not leave safe mode within %v: %v\nstdout:\n%s\nstderr:\n%s", timeout, err, out.Stdout, out.Stderr)
	}
}

// KillBlockd kills blockd i with SIGKILL and waits for it to exit.
func (c *Cluster) KillBlockd(t testing.TB, i int) {
	t.Helper()
	p := c.blockds[i].proc
	p.accounted.Store(true)
	p.kill()
	if !p.waitExit(stopGrace) {
		t.Fatalf("blockd%d did not exit within %v of SIGKILL", i, stopGrace)
	}
}

// WaitBlockdExit waits up to timeout for blockd i to exit by itself, as
// when it stops on an error, and returns how it ended. Such an exit is then
// not reported as a failure when the test ends. It fails the test if the
// blockd still runs after timeout.
func (c *Cluster) WaitBlockdExit(t testing.TB, i int, timeout time.Duration) string {
	t.Helper()
	p := c.blockds[i].proc
	if !p.waitExit(timeout) {
		t.Fatalf("blockd%d still runs %v later; end of %s:\n%s", i, timeout, p.logPath, p.logTail())
	}
	p.accounted.Store(true)
	return p.exitStatus()
}

// StartBlockd starts a stopped blockd i again on the same data directory
// and the same addresses, and waits until it has registered.
func (c *Cluster) StartBlockd(t testing.TB, i int) {
	t.Helper()
	b := c.blockds[i]
	if !b.proc.exited() {
		t.Fatalf("StartBlockd: blockd%d is running", i)
	}
	c.launchBlockd(t, i, b.addrs.Data, b.addrs.HTTP)
	c.waitBlockd(t, i)
}

// Run runs the cairn client command args (args[0] is the subcommand)
// against this cluster's metad, and returns its stdout and exit code. A
// non-zero exit is not a failure of the test; its stderr is logged. A
// command that cannot start or runs past 2 minutes fails the test.
func (c *Cluster) Run(t testing.TB, args ...string) (stdout string, code int) {
	t.Helper()
	out, err := c.run(args...)
	if err != nil {
		t.Fatalf("cairn %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out.Stdout, out.Stderr)
	}
	if out.Code != 0 {
		t.Logf("cairn %s: exit %d; stderr:\n%s", strings.Join(args, " "), out.Code, out.Stderr)
	}
	return out.Stdout, out.Code
}

// run runs `cairn SUBCOMMAND --metad ADDR ARGS...`, also with $CAIRN_METAD
// set, so a command reaches this cluster however it looks for metad.
func (c *Cluster) run(args ...string) (Output, error) {
	if len(args) == 0 {
		return Output{}, fmt.Errorf("no subcommand")
	}
	full := append([]string{args[0], "--metad", c.MetadAddr()}, args[1:]...)
	env := append(append(os.Environ(), "CAIRN_METAD="+c.MetadAddr(), "GOTRACEBACK=all"), c.env("client")...)
	return runCommand(runTimeout, env, c.bin, full...)
}

// HealthyLine is the last line `cairn fsck PATH` prints for a healthy path.
func HealthyLine(path string) string {
	return fmt.Sprintf("The filesystem under path '%s' is HEALTHY", path)
}

// WaitHealthy polls `cairn fsck /` until it exits 0 with HealthyLine("/")
// as its last line. It fails the test if that takes longer than timeout or
// metad exits (a single metad's; a group's members are not watched).
func (c *Cluster) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := c.run("fsck", "/")
		if err == nil && out.Code == 0 && LastLine(out.Stdout) == HealthyLine("/") {
			return
		}
		if c.metad != nil && c.metad.exited() {
			t.Fatalf("metad exited (%s) while waiting for fsck / to be healthy; end of %s:\n%s",
				c.metad.exitStatus(), c.metad.logPath, c.metad.logTail())
		}
		if time.Now().After(deadline) {
			t.Fatalf("fsck / not HEALTHY after %v; last run: exit %d, err %v\nstdout:\n%s\nstderr:\n%s",
				timeout, out.Code, err, out.Stdout, out.Stderr)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// LastLine returns the last non-empty line of s, without its newline.
func LastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func (c *Cluster) startMetad(t testing.TB, format bool, listen, http string) {
	t.Helper()
	os.Remove(c.metadFile)
	args := []string{"metad", "--data", c.metadDir, "--listen", listen, "--http", http, "--addr-file", c.metadFile}
	switch {
	case format && c.cfg.Restore != "":
		args = append(args, "--restore", c.cfg.Restore)
	case format:
		args = append(args, "--format")
	}
	if c.cfg.Replication != 0 {
		args = append(args, "--replication", strconv.Itoa(c.cfg.Replication))
	}
	if c.cfg.BlockSize != 0 {
		args = append(args, "--block-size", strconv.FormatInt(c.cfg.BlockSize, 10))
	}
	args = append(args, "--heartbeat", c.cfg.Heartbeat.String())
	if c.cfg.DeadAfter != 0 {
		args = append(args, "--dead-after", c.cfg.DeadAfter.String())
	}
	// No safe mode extension unless a test asks for one: a restarted
	// metad is writable as soon as the blockds have reported.
	args = append(args, "--safemode-extension", c.cfg.SafeModeExtension.String())
	if c.cfg.Insecure {
		args = append(args, "--insecure")
	}
	args = append(args, c.cfg.MetadArgs...)
	p := c.startOn(t, c.cfg.MetadHost, "metad", args)
	c.metad = p
	var a metadAddrs
	waitUntil(t, p, startTimeout, "listening (address file "+c.metadFile+")", func() bool {
		return readJSON(c.metadFile, &a) && a.RPC != "" && a.HTTP != ""
	})
	if format {
		c.addrs = a
	} else if a != c.addrs {
		t.Fatalf("metad restarted on %+v, want the addresses it had, %+v", a, c.addrs)
	}
}

func (c *Cluster) launchBlockd(t testing.TB, i int, listen, http string) {
	t.Helper()
	b := c.blockds[i]
	os.Remove(b.addrFile)
	args := []string{"blockd", "--data", strings.Join(b.dirs, ","), "--metad", c.MetadAddr(),
		"--listen", listen, "--http", http, "--heartbeat", c.cfg.Heartbeat.String(), "--addr-file", b.addrFile}
	if i < len(c.cfg.Racks) {
		args = append(args, "--rack", c.cfg.Racks[i])
	}
	if c.cfg.Insecure {
		args = append(args, "--insecure")
	} else {
		// A fresh token each start: a blockd that has its certificate
		// ignores it; one whose data directory was wiped joins again.
		args = append(args, "--join", c.JoinToken(t, trust.RoleBlockd, "", time.Hour))
	}
	args = append(args, c.cfg.BlockdArgs...)
	b.proc = c.startOn(t, c.blockdHost(i), fmt.Sprintf("blockd%d", i), args)
}

func (c *Cluster) waitBlockd(t testing.TB, i int) {
	t.Helper()
	b := c.blockds[i]
	var a blockdAddrs
	waitUntil(t, b.proc, startTimeout, "registered (address file "+b.addrFile+")", func() bool {
		return readJSON(b.addrFile, &a) && a.Data != "" && a.StorageID != ""
	})
	b.addrs = a
}

// start starts a cairn process whose log is logDir/NAME.log; a restarted
// process appends to the log of its previous run.
func (c *Cluster) start(t testing.TB, name string, args []string) *proc {
	t.Helper()
	return c.startOn(t, nil, name, args)
}

// startOn is start on host h (nil: here).
func (c *Cluster) startOn(t testing.TB, h Host, name string, args []string) *proc {
	t.Helper()
	bin := c.bin
	if h != nil {
		bin, args = h.Wrap(bin, args)
	}
	p := startProc(t, name, filepath.Join(c.logDir, name+".log"), bin, args, c.env(name)...)
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p
}

// cleanup kills every process still running, reports those that exited
// without being asked, and shows every log if the test failed.
func (c *Cluster) cleanup() {
	c.mu.Lock()
	procs := c.procs
	c.mu.Unlock()
	for _, p := range procs {
		if p.exited() && !p.accounted.Load() {
			c.t.Errorf("%s exited by itself: %s", p.name, p.exitStatus())
		}
	}
	for _, p := range procs {
		p.accounted.Store(true)
		p.kill()
	}
	for _, p := range procs {
		if !p.waitExit(stopGrace) {
			c.t.Errorf("%s (pid %d) still runs %v after SIGKILL", p.name, p.cmd.Process.Pid, stopGrace)
		}
	}
	if !c.t.Failed() {
		return
	}
	shown := map[string]bool{}
	for _, p := range procs {
		if !shown[p.logPath] {
			shown[p.logPath] = true
			c.t.Logf("----- end of %s -----\n%s", p.logPath, p.logTail())
		}
	}
	c.keepLogs()
}

// keepLogs copies the whole logs of a failed test's processes into its
// artifact directory (kept by go test -artifacts: make test keeps them
// under .dev/artifacts), beside the tails printed.
func (c *Cluster) keepLogs() {
	es, err := os.ReadDir(c.logDir)
	if err != nil {
		return
	}
	dst := filepath.Join(c.t.ArtifactDir(), "logs")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return
	}
	for _, e := range es {
		if b, err := os.ReadFile(filepath.Join(c.logDir, e.Name())); err == nil {
			_ = os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644)
		}
	}
	c.t.Logf("whole logs kept in %s", dst)
}

// readJSON reads the JSON file path into v and reports whether it could. A
// missing or half-written file is simply not ready yet.
func readJSON(path string, v any) bool {
	b, err := os.ReadFile(path)
	return err == nil && json.Unmarshal(b, v) == nil
}

func mkdirs(t testing.TB, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}
