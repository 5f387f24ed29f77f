package tests

// `cairn dev` as its users run it: the real binary as a process in a
// temporary directory, with metad on ports the kernel picks.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cairn/client"
	"cairn/mount"
	"cairn/tests/cluster"
)

// devRun is a `cairn dev` process started by a test, with its cluster in
// wd/d and its stdout and stderr in files of wd.
type devRun struct {
	bin  string
	wd   string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // cmd.Wait's, once done is closed
}

// startDev starts `cairn dev --dir d ARGS...` in a new temporary directory
// and waits until it says it is up. When the test ends it is stopped with
// SIGINT (killed, with every daemon it lists, if it does not exit).
func startDev(t *testing.T, args ...string) *devRun {
	t.Helper()
	d := launchDev(t, args...)
	d.waitFor(t, "stdout", time.Minute, "cairn dev is up")
	return d
}

func launchDev(t *testing.T, args ...string) *devRun {
	t.Helper()
	d := &devRun{bin: cluster.Binary(t), wd: t.TempDir(), done: make(chan struct{})}
	stdout, err := os.Create(filepath.Join(d.wd, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(d.wd, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	d.cmd = exec.Command(d.bin, append([]string{"dev", "--dir", "d"}, args...)...)
	d.cmd.Dir = d.wd
	d.cmd.Stdout, d.cmd.Stderr = stdout, stderr
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() { d.cleanup(t) })
	return d
}

func (d *devRun) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (d *devRun) wait(timeout time.Duration) bool {
	select {
	case <-d.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

func (d *devRun) output(name string) string {
	b, _ := os.ReadFile(filepath.Join(d.wd, name))
	return string(b)
}

// waitFor waits until cairn dev's stdout or stderr holds every one of
// parts, and returns it.
func (d *devRun) waitFor(t *testing.T, name string, timeout time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := d.output(name)
		if containsAll(out, parts) {
			return out
		}
		if d.exited() {
			t.Fatalf("cairn dev exited (%v) before its %s held %q:\nstdout:\n%s\nstderr:\n%s", d.err, name, parts, d.output("stdout"), d.output("stderr"))
		}
		if time.Now().After(deadline) {
			t.Fatalf("cairn dev's %s does not hold %q after %v:\n%s", name, parts, timeout, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// cairn runs `cairn ARGS...` in the working directory of cairn dev, with
// the admin certificate cairn dev made.
func (d *devRun) cairn(t *testing.T, args ...string) cluster.Output {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.bin, args...)
	cmd.Dir = d.wd
	cmd.Env = append(os.Environ(), "CAIRN_CERTS="+d.path("certs/admin"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := cluster.Output{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("cairn %s: no exit within 2 minutes", strings.Join(args, " "))
	case errors.As(err, &exit):
		out.Code = exit.ExitCode()
	case err != nil:
		t.Fatalf("cairn %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// path is a path in the cluster's directory.
func (d *devRun) path(rel string) string { return filepath.Join(d.wd, "d", rel) }

// metadAddr is the RPC address metad bound.
func (d *devRun) metadAddr(t *testing.T) string {
	t.Helper()
	var a map[string]string
	b, err := os.ReadFile(d.path("metad.addr"))
	if err == nil {
		err = json.Unmarshal(b, &a)
	}
	if err != nil || a["rpc"] == "" {
		t.Fatalf("metad.addr: %v (%q)", err, b)
	}
	return a["rpc"]
}

// devDaemon is a line of `cairn dev status`.
type devDaemon struct {
	state    string
	pid      int
	restarts int
	detail   string
}

// status runs `cairn dev status` and returns its lines by daemon name.
func (d *devRun) status(t *testing.T) map[string]devDaemon {
	t.Helper()
	out := d.cairn(t, "dev", "status", "--dir", "d")
	if out.Code != 0 {
		t.Fatalf("cairn dev status: exit %d\n%s%s", out.Code, out.Stdout, out.Stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out.Stdout, "\n"), "\n")
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "NAME STATE PID SINCE RESTARTS DETAIL" {
		t.Fatalf("cairn dev status: header %q", lines[0])
	}
	st := map[string]devDaemon{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 5 {
			t.Fatalf("cairn dev status: line %q", l)
		}
		pid, _ := strconv.Atoi(f[2])
		n, err := strconv.Atoi(f[4])
		if err != nil {
			t.Fatalf("cairn dev status: line %q: %v", l, err)
		}
		st[f[0]] = devDaemon{state: f[1], pid: pid, restarts: n, detail: strings.Join(f[5:], " ")}
	}
	return st
}

// cleanup stops cairn dev with SIGINT, as Ctrl-C does; one that does not
// exit is killed with its daemons.
func (d *devRun) cleanup(t *testing.T) {
	if !d.exited() {
		_ = d.cmd.Process.Signal(syscall.SIGINT)
		if !d.wait(30 * time.Second) {
			t.Errorf("cairn dev did not exit within 30 s of SIGINT; killed")
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
		}
	}
	// Pdeathsig stops the daemons of a killed cairn dev; a mount point
	// left behind is undone here.
	if mnt := filepath.Join(d.wd, "mnt"); mount.FUSEMounts(mnt) > 0 {
		_ = exec.Command("fusermount3", "-u", "-z", mnt).Run()
	}
	if t.Failed() {
		t.Logf("cairn dev stdout:\n%s\nstderr:\n%s", d.output("stdout"), d.output("stderr"))
		logs, _ := filepath.Glob(d.path("logs/*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("----- %s -----\n%s", l, b)
		}
	}
}

// liveNodes is how many blockds metad counts live.
func liveNodes(t *testing.T, c *client.Client) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := c.NS.Report(ctx)
	if err != nil {
		return -1 // metad restarting
	}
	n := 0
	for _, node := range rep.Nodes {
		if node.Live {
			n++
		}
	}
	return n
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// TestDevSupervises: `cairn dev --blockds 4 --racks 2 --mount` puts two
// blockds on each of two racks. A blockd killed is reported (its name, its
// exit status, the end of its log, how to bring it back) while cairn dev
// and the others keep running and the mount keeps serving; `cairn dev
// restart blockd2` brings it back on its addresses. The same for the
// mount (its dead mount point is undone and mounted again) and for metad
// (restarted on its address, the blockds report to it again). A second
// cairn dev on the same directory is refused. Ctrl-C stops every daemon.
func TestDevSupervises(t *testing.T) {
	RequireFUSE(t)
	d := startDev(t, "--blockds", "4", "--racks", "2", "--mount", "mnt", "--metad", "127.0.0.1:0", "--metad-http", "127.0.0.1:0",
		"--block-size", "65536")
	mnt := filepath.Join(d.wd, "mnt")
	addr := d.metadAddr(t)

	// Racks.
	topo := d.cairn(t, "admin", "-printTopology", "--metad", addr)
	sections := strings.Split(strings.TrimSuffix(topo.Stdout, "\n\n"), "\n\n")
	if topo.Code != 0 || len(sections) != 2 || !strings.HasPrefix(sections[0], "Rack: /rack1\n") || !strings.HasPrefix(sections[1], "Rack: /rack2\n") ||
		strings.Count(sections[0], "\n   ") != 2 || strings.Count(sections[1], "\n   ") != 2 {
		t.Fatalf("admin -printTopology: exit %d, want two blockds on each of /rack1 and /rack2:\n%s", topo.Code, topo.Stdout)
	}
	st := d.status(t)
	for _, name := range []string{"metad", "blockd1", "blockd2", "blockd3", "blockd4", "mount"} {
		if s := st[name]; s.state != "running" || !alive(s.pid) || s.restarts != 0 {
			t.Fatalf("cairn dev status: %s %+v, want running", name, s)
		}
	}
	if !strings.Contains(st["blockd2"].detail, "rack /rack2") || !strings.Contains(st["blockd3"].detail, "rack /rack1") {
		t.Errorf("cairn dev status: blockd2 %q, blockd3 %q: want them on /rack2 and /rack1", st["blockd2"].detail, st["blockd3"].detail)
	}
	if out := d.cairn(t, "dev", "--dir", "d", "--metad", "127.0.0.1:0", "--metad-http", "127.0.0.1:0"); out.Code != 1 || !strings.Contains(out.Stderr, "a cairn dev runs with d already") {
		t.Fatalf("a second cairn dev on the same directory: exit %d, want 1 and a message:\n%s%s", out.Code, out.Stdout, out.Stderr)
	}

	data := randomBytes(300<<10, 3) // five blocks
	must(t, os.WriteFile(filepath.Join(mnt, "before"), data, 0o644))

	// A blockd dies.
	blockd2Data := st["blockd2"].detail
	must(t, syscall.Kill(st["blockd2"].pid, syscall.SIGKILL))
	report := d.waitFor(t, "stderr", time.Minute, "cairn dev: blockd2 exited (signal: killed); the others keep running. End of d/logs/blockd2.log:\n",
		"registered with metad", "bring it back with: cairn dev restart blockd2 --dir d\n")
	if strings.Count(report, "exited") != 1 {
		t.Errorf("cairn dev reported more than blockd2's exit:\n%s", report)
	}
	st = d.status(t)
	if st["blockd2"].state != "exited" || !strings.Contains(st["blockd2"].detail, "signal: killed") {
		t.Errorf("cairn dev status after blockd2 was killed: %+v", st["blockd2"])
	}
	for _, name := range []string{"metad", "blockd1", "blockd3", "blockd4", "mount"} {
		if s := st[name]; s.state != "running" || !alive(s.pid) {
			t.Fatalf("cairn dev status after blockd2 was killed: %s %+v, want running", name, s)
		}
	}
	if d.exited() {
		t.Fatalf("cairn dev exited with blockd2: %v", d.err)
	}
	must(t, os.WriteFile(filepath.Join(mnt, "during"), data, 0o644))
	for _, name := range []string{"before", "during"} {
		if got, err := os.ReadFile(filepath.Join(mnt, name)); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %s with blockd2 down: %d bytes, %v", name, len(got), err)
		}
	}

	out := d.cairn(t, "dev", "restart", "blockd2", "--dir", "d")
	if out.Code != 0 || !strings.HasPrefix(out.Stdout, "blockd2 restarted: pid ") {
		t.Fatalf("cairn dev restart blockd2: exit %d\n%s%s", out.Code, out.Stdout, out.Stderr)
	}
	st = d.status(t)
	if s := st["blockd2"]; s.state != "running" || !alive(s.pid) || s.restarts != 1 || s.detail != blockd2Data {
		t.Fatalf("cairn dev status after restart blockd2: %+v, want running again as %q", s, blockd2Data)
	}

	// The mount dies: its mount point is undone, and it comes back.
	must(t, syscall.Kill(st["mount"].pid, syscall.SIGKILL))
	d.waitFor(t, "stderr", time.Minute, "cairn dev: mount exited (signal: killed); the others keep running.", "cairn dev restart mount --dir d")
	if n := mount.FUSEMounts(mnt); n != 0 {
		t.Errorf("%d FUSE mounts left on %s after the mount died", n, mnt)
	}
	if out := d.cairn(t, "dev", "restart", "mount", "--dir", "d"); out.Code != 0 || !strings.HasPrefix(out.Stdout, "mount restarted: pid ") {
		t.Fatalf("cairn dev restart mount: exit %d\n%s%s", out.Code, out.Stdout, out.Stderr)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "during")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through the restarted mount: %d bytes, %v", len(got), err)
	}

	// metad, restarted while it runs: back on its address, and every
	// blockd, blockd2 too, reports to it.
	if out := d.cairn(t, "dev", "restart", "metad", "--dir", "d"); out.Code != 0 || !strings.HasPrefix(out.Stdout, "metad restarted: pid ") {
		t.Fatalf("cairn dev restart metad: exit %d\n%s%s", out.Code, out.Stdout, out.Stderr)
	}
	if got := d.metadAddr(t); got != addr {
		t.Fatalf("metad restarted on %s, want %s", got, addr)
	}
	creds, err := client.LoadCreds(d.path("certs/admin"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.Dial(addr, client.Options{Creds: creds})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	waitFor(t, time.Minute, "four live blockds after metad's restart", func() bool { return liveNodes(t, cl) == 4 })
	if out := d.cairn(t, "admin", "-safemode", "wait", "--metad", addr, "-timeout", "1m"); out.Code != 0 {
		t.Fatalf("admin -safemode wait: exit %d\n%s", out.Code, out.Stderr)
	}
	must(t, os.WriteFile(filepath.Join(mnt, "after"), data, 0o644))
	for _, name := range []string{"before", "during", "after"} {
		if got, err := os.ReadFile(filepath.Join(mnt, name)); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %s after the restarts: %d bytes, %v", name, len(got), err)
		}
	}
	if out := d.cairn(t, "dev", "restart", "blockd9", "--dir", "d"); out.Code != 1 || !strings.Contains(out.Stderr, `no daemon "blockd9" in this cluster`) {
		t.Errorf("cairn dev restart blockd9: exit %d\n%s", out.Code, out.Stderr)
	}

	// Ctrl-C stops them all.
	st = d.status(t)
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	if !d.wait(time.Minute) || d.err != nil {
		t.Fatalf("cairn dev after SIGINT: exited %v (%v)", d.exited(), d.err)
	}
	for name, s := range st {
		if alive(s.pid) {
			t.Errorf("%s (pid %d) still runs after cairn dev stopped", name, s.pid)
		}
	}
	if n := mount.FUSEMounts(mnt); n != 0 {
		t.Errorf("%d FUSE mounts left on %s after cairn dev stopped", n, mnt)
	}
	if _, err := os.Stat(d.path("dev.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket after cairn dev stopped: %v", err)
	}
	if out := d.cairn(t, "dev", "status", "--dir", "d"); out.Code != 1 || !strings.Contains(out.Stderr, "no cairn dev answers in d") {
		t.Errorf("cairn dev status with no cairn dev: exit %d\n%s", out.Code, out.Stderr)
	}
}

// TestDevPortInUse: cairn dev told to run metad on a port another program
// holds stops with a message naming the address, why, and metad's log,
// and leaves nothing running.
func TestDevPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().String()
	d := launchDev(t, "--blockds", "1", "--metad", taken, "--metad-http", "127.0.0.1:0")
	if !d.wait(time.Minute) {
		t.Fatalf("cairn dev still runs a minute after metad could not listen:\n%s", d.output("stderr"))
	}
	var exit *exec.ExitError
	if !errors.As(d.err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("cairn dev: %v, want exit status 1", d.err)
	}
	want := fmt.Sprintf("cairn dev: metad could not listen on %s (address already in use); see d/logs/metad.log\n", taken)
	if got := d.output("stderr"); !strings.HasPrefix(got, want) {
		t.Fatalf("cairn dev's stderr:\n%s\nwant it to begin:\n%s", got, want)
	}
	if b, _ := os.ReadFile(d.path("logs/metad.log")); !bytes.Contains(b, []byte("address already in use")) {
		t.Errorf("metad.log does not say why metad stopped:\n%s", b)
	}
	if _, err := os.Stat(d.path("blockd1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a blockd was started after metad failed: %v", err)
	}
}

// TestMakeRunPorts: make run passes its variables to cairn dev: the ports
// (METAD_PORT, METAD_HTTP_PORT), BLOCKDS and RACKS.
func TestMakeRunPorts(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	out := cluster.Exec(t, "make", "-n", "-C", "..", "run", "METAD_PORT=9100", "METAD_HTTP_PORT=9871", "BLOCKDS=4", "RACKS=2")
	if out.Code != 0 {
		t.Fatalf("make -n run: exit %d\n%s", out.Code, out.Stderr)
	}
	cmd := strings.Join(strings.Fields(strings.ReplaceAll(out.Stdout, "\\\n", " ")), " ")
	want := "--blockds 4 --racks 2 --metad 127.0.0.1:9100 --metad-http 127.0.0.1:9871"
	if !strings.Contains(cmd, "bin/cairn dev --dir ") || !strings.Contains(cmd, want) {
		t.Fatalf("make -n run: %s\nwant cairn dev with %s", out.Stdout, want)
	}
}
