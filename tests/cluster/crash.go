package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// What crash tests need beyond the daemons: every blockd killed and started
// again at once, a mount that can be killed, a program of the test's own
// (a writer) run as a process the test can kill, and the finalized
// replicas on the blockds' disks.

// KillBlockds kills every blockd with SIGKILL, as a power cut of the
// blockds' machines would, and waits for them to exit.
func (c *Cluster) KillBlockds(t testing.TB) {
	t.Helper()
	for _, b := range c.blockds {
		b.proc.accounted.Store(true)
		b.proc.kill()
	}
	for i, b := range c.blockds {
		if !b.proc.waitExit(stopGrace) {
			t.Fatalf("blockd%d did not exit within %v of SIGKILL", i, stopGrace)
		}
	}
}

// StartBlockds starts every stopped blockd again on its data directory and
// addresses, and waits until each has registered.
func (c *Cluster) StartBlockds(t testing.TB) {
	t.Helper()
	for i, b := range c.blockds {
		if !b.proc.exited() {
			t.Fatalf("StartBlockds: blockd%d is running", i)
		}
		c.launchBlockd(t, i, b.addrs.Data, b.addrs.HTTP)
	}
	for i := range c.blockds {
		c.waitBlockd(t, i)
	}
}

// Blockds returns the number of blockds of the cluster.
func (c *Cluster) Blockds() int { return len(c.blockds) }

// Process is a program the test runs beside the cluster (a writer driven
// by the test, say), with its output in the cluster's log directory. It is
// killed when the test ends, if it still runs.
type Process struct {
	p *proc
}

// StartProcess runs path with args and, beyond this process's environment,
// env; its stdout and stderr go to the log NAME.log in the cluster's log
// directory, shown when the test fails.
func (c *Cluster) StartProcess(t testing.TB, name, path string, args, env []string) *Process {
	t.Helper()
	p := startProcEnv(t, name, filepath.Join(c.logDir, name+".log"), path, args, append(c.env("client"), env...))
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return &Process{p: p}
}

// PID is the process ID.
func (p *Process) PID() int { return p.p.cmd.Process.Pid }

// Kill sends SIGKILL to the process (and its group) and waits for it to
// exit.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	p.p.accounted.Store(true)
	p.p.kill()
	if !p.p.waitExit(stopGrace) {
		t.Fatalf("%s did not exit within %v of SIGKILL", p.p.name, stopGrace)
	}
}

// Wait waits up to timeout for the process to exit by itself and reports
// whether it did; its exit is then not reported as a failure when the test
// ends.
func (p *Process) Wait(timeout time.Duration) bool {
	if !p.p.waitExit(timeout) {
		return false
	}
	p.p.accounted.Store(true)
	return true
}

// Exited reports whether the process has exited; it does not count as
// waited for (see Wait).
func (p *Process) Exited() bool { return p.p.exited() }

// ExitStatus describes how the process ended ("still running" if it runs).
func (p *Process) ExitStatus() string { return p.p.exitStatus() }

// LogTail returns the end of the process's log.
func (p *Process) LogTail() string { return p.p.logTail() }

// startProcEnv is startProc with more environment variables.
func startProcEnv(t testing.TB, name, logPath, bin string, args, env []string) *proc {
	t.Helper()
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer lf.Close()
	fmt.Fprintf(lf, "=== %s %s %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(env, " "), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(append(os.Environ(), "GOTRACEBACK=all"), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p
}

// MountProcess is a `cairn mount` the test may kill or stop before the
// test ends.
type MountProcess struct {
	// Dir is the mount point.
	Dir string
	p   *proc
}

// MountProcess mounts the cluster as Mount does and returns the mount
// process, to be killed (Kill) or stopped (Stop) by the test; whatever is
// left is stopped and unmounted when t ends.
func (c *Cluster) MountProcess(t testing.TB, opts ...string) *MountProcess {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	mkdirs(t, mnt)
	if real, err := filepath.EvalSymlinks(mnt); err == nil {
		mnt = real
	}
	c.mu.Lock()
	name := fmt.Sprintf("mount%d", c.nmounts)
	c.nmounts++
	c.mu.Unlock()
	args := append([]string{"mount", c.MetadAddr(), mnt, "--foreground"}, opts...)
	p := c.start(t, name, args)
	t.Cleanup(func() { unmount(t, p, mnt) })
	waitUntil(t, p, startTimeout, "mounted on "+mnt, func() bool {
		ok, err := IsFUSEMount(mnt)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	})
	t.Logf("%s: %s mounted on %s", p.name, c.MetadAddr(), mnt)
	return &MountProcess{Dir: mnt, p: p}
}

// Name is the mount's process name, as its log is named.
func (m *MountProcess) Name() string { return m.p.name }

// Kill kills the mount process with SIGKILL, as a crash would: the kernel
// ends the FUSE connection, so programs using the mount get ENOTCONN; the
// dead mount point is then detached (umount -l).
func (m *MountProcess) Kill(t testing.TB) {
	t.Helper()
	m.p.accounted.Store(true)
	m.p.kill()
	if !m.p.waitExit(stopGrace) {
		t.Fatalf("%s did not exit within %v of SIGKILL", m.p.name, stopGrace)
	}
	if mounted, _ := IsFUSEMount(m.Dir); mounted {
		if err := lazyUnmount(m.Dir); err != nil {
			t.Errorf("detaching %s after killing %s: %v", m.Dir, m.p.name, err)
		}
	}
}

// Stop stops the mount process with SIGTERM, on which it must unmount and
// exit; otherwise the test fails and the mount is detached.
func (m *MountProcess) Stop(t testing.TB) {
	t.Helper()
	unmount(t, m.p, m.Dir)
}

// Replica is a finalized replica on a blockd's disk: blockd index, block
// id and generation stamp (from its .meta file's name).
type Replica struct {
	Blockd   int
	ID       uint64
	GenStamp uint64
}

func (r Replica) String() string {
	return fmt.Sprintf("blk_%d_%d on blockd%d", r.ID, r.GenStamp, r.Blockd)
}

// FinalizedReplicas lists the finalized replicas on every blockd's disks: a
// blk_<id> data file under current/finalized with its
// blk_<id>_<genstamp>.meta beside it (one entry per .meta file). It reads
// the directories while the blockds run; a file moved meanwhile is simply
// not seen. It may be called from any goroutine.
func (c *Cluster) FinalizedReplicas() (map[Replica]bool, error) {
	return c.replicasIn("finalized")
}

// WholeReplicas is FinalizedReplicas and the replicas in rbw/ (being
// written, or left there by a restart): every replica a blockd holds.
func (c *Cluster) WholeReplicas() (map[Replica]bool, error) {
	out, err := c.replicasIn("finalized")
	if err != nil {
		return nil, err
	}
	rbw, err := c.replicasIn("rbw")
	for r := range rbw {
		out[r] = true
	}
	return out, err
}

// replicasIn lists the replicas under current/SUB of every blockd.
func (c *Cluster) replicasIn(sub string) (map[Replica]bool, error) {
	out := map[Replica]bool{}
	for i, b := range c.blockds {
		for _, dir := range b.dirs {
			root := filepath.Join(dir, "current", sub)
			err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				if err != nil {
					return err
				}
				name := metaFileName.FindStringSubmatch(d.Name())
				if d.IsDir() || name == nil {
					return nil
				}
				if _, err := os.Stat(filepath.Join(filepath.Dir(path), "blk_"+name[1])); err != nil {
					return nil
				}
				id, err1 := strconv.ParseUint(name[1], 10, 64)
				gs, err2 := strconv.ParseUint(name[2], 10, 64)
				if err1 == nil && err2 == nil {
					out[Replica{Blockd: i, ID: id, GenStamp: gs}] = true
				}
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("listing the replicas in %s of blockd%d: %w", sub, i, err)
			}
		}
	}
	return out, nil
}

// BlockdOf returns the index of the blockd whose data address is addr, or
// -1.
func (c *Cluster) BlockdOf(dataAddr string) int {
	for i, b := range c.blockds {
		if b.addrs.Data == dataAddr {
			return i
		}
	}
	return -1
}

// MetadRunning reports whether metad runs.
func (c *Cluster) MetadRunning() bool { return c.metad != nil && !c.metad.exited() }

// BlockdRunning reports whether blockd i runs.
func (c *Cluster) BlockdRunning(i int) bool { return !c.blockds[i].proc.exited() }

// FsckHasVerify reports whether the binary's fsck knows -verify, which
// reads every replica through its blockd.
func (c *Cluster) FsckHasVerify(t testing.TB) bool {
	t.Helper()
	out, err := runCommand(runTimeout, os.Environ(), c.bin, "fsck", "-h")
	if err != nil {
		t.Fatalf("cairn fsck -h: %v", err)
	}
	return strings.Contains(out.Stdout+out.Stderr, "-verify")
}

// RunOutput runs the cairn client command args as Run does and returns all
// it printed; err is set when it could not run or ran past 2 minutes.
func (c *Cluster) RunOutput(args ...string) (Output, error) { return c.run(args...) }

// LogDir returns the directory of the processes' logs.
func (c *Cluster) LogDir() string { return c.logDir }
