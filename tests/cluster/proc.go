package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// logTailBytes is how much of a process's log a failure message shows.
const logTailBytes = 16 << 10

// proc is one running cairn process whose output goes to a log file.
type proc struct {
	name    string // "metad", "blockd1", "mount0"
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited and been reaped
	err     error         // cmd.Wait's result; valid after done is closed
	// accounted is set once the harness has asked the process to exit or
	// has reported its exit; any other exit is reported as a failure at
	// cleanup.
	accounted atomic.Bool
}

// startProc starts bin with args, appending its stdout and stderr to
// logPath. The process gets its own process group (so a stop reaches its
// children too) and SIGKILL when the test binary dies (Pdeathsig), so it
// never outlives the test.
func startProc(t testing.TB, name, logPath, bin string, args []string, env ...string) *proc {
	t.Helper()
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer lf.Close()
	fmt.Fprintf(lf, "=== %s %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
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

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitExit waits up to d for the process to exit and reports whether it did.
func (p *proc) waitExit(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// signal sends sig to the process itself, if it still runs.
func (p *proc) signal(sig syscall.Signal) {
	if !p.exited() {
		syscall.Kill(p.cmd.Process.Pid, sig)
	}
}

// kill sends SIGKILL to the process's group, if the process still runs.
func (p *proc) kill() {
	if !p.exited() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// stop asks the process to exit with sig and waits up to grace. A process
// that does not exit is sent SIGQUIT (a Go program then writes every
// goroutine's stack to its log), then SIGKILL. It reports whether the
// process exited within grace.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) bool {
	p.accounted.Store(true)
	p.signal(sig)
	if p.waitExit(grace) {
		return true
	}
	p.signal(syscall.SIGQUIT)
	p.waitExit(2 * time.Second)
	p.kill()
	p.waitExit(10 * time.Second)
	return false
}

// exitStatus describes how the process ended.
func (p *proc) exitStatus() string {
	if !p.exited() {
		return "still running"
	}
	if p.err == nil {
		return "exit status 0"
	}
	return p.err.Error()
}

// logTail returns the last logTailBytes of the process's log.
func (p *proc) logTail() string { return fileTail(p.logPath, logTailBytes) }

func fileTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	off := max(fi.Size()-n, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
		return fmt.Sprintf("[... %d earlier bytes ...]\n%s", off, b)
	}
	return string(b)
}

// waitUntil polls ready every 20 ms until it returns true. It fails the test
// if p exits first or timeout passes, showing the end of p's log.
func waitUntil(t testing.TB, p *proc, timeout time.Duration, what string, ready func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ready() {
		if p.exited() {
			p.accounted.Store(true)
			t.Fatalf("%s exited (%s) before %s; end of %s:\n%s", p.name, p.exitStatus(), what, p.logPath, p.logTail())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not %s after %v; end of %s:\n%s", p.name, what, timeout, p.logPath, p.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Output is what a finished command printed, and its exit code (-1 if a
// signal ended it).
type Output struct {
	Stdout, Stderr string
	Code           int
}

// Exec runs an ordinary program (cp, diff, ls...) with args to completion,
// in the C locale, and returns its output. A non-zero exit is not a failure
// of the test; a program that cannot start or runs past 2 minutes is.
func Exec(t testing.TB, name string, args ...string) Output {
	t.Helper()
	out, err := runCommand(runTimeout, append(os.Environ(), "LC_ALL=C"), name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out.Stdout, out.Stderr)
	}
	return out
}

// runCommand runs name with args and environment env to completion, at most
// timeout. err is set when the command could not start or ran too long.
func runCommand(timeout time.Duration, env []string, name string, args ...string) (Output, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Stop waiting for output a while after the command is killed, even if
	// a child of it still holds the pipes.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	out := Output{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return out, fmt.Errorf("no exit within %v", timeout)
	case errors.As(err, &exit):
		out.Code = exit.ExitCode()
		return out, nil
	default:
		return out, err
	}
}
