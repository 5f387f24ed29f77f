package dev

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
)

// stopGrace is how long a daemon may take to exit after SIGTERM before it
// is killed.
const stopGrace = 10 * time.Second

// errClosing refuses a start while cairn dev stops.
var errClosing = errors.New("cairn dev is stopping")

// supervisor runs the daemons of a dev cluster as child processes and
// keeps them apart: one that exits is reported and the others go on; it
// can be started again (restart) by a command on the control socket.
//
// mu guards every member's mutable fields, every proc's fields but cmd and
// done, and closing. It is never held while waiting for a process.
type supervisor struct {
	dir  string
	self string // this binary
	out  io.Writer
	errw io.Writer

	mu       sync.Mutex
	members  []*member
	starting bool // the first start of the cluster is under way
	closing  bool
}

// member is one daemon of the cluster: metad, blockdN or mount.
type member struct {
	name    string
	logPath string
	// args returns the command line of the next start and the addresses
	// it is told to listen on. It is called anew at each start: a blockd
	// gets a fresh join token, and a restart listens on the addresses the
	// first start bound.
	args func() (args, listens []string, err error)
	// ready waits until a started process serves and describes where, or
	// fails early with errExited when the process exits.
	ready func(ctx context.Context, r *proc) (string, error)
	// afterExit, when set, tidies up after the process has gone (the
	// mount's: a lazy unmount of a mount point left behind).
	afterExit func()

	info     string // where it serves, for status
	cur      *proc  // the latest start; nil before the first
	restarts int
	busy     bool // a restart is under way
}

// proc is one start of a member's process.
type proc struct {
	cmd      *exec.Cmd
	listens  []string
	started  time.Time
	done     chan struct{} // closed once the process has exited and been reaped
	err      error         // cmd.Wait's result, once ended is set
	ended    time.Time
	ready    bool // it came up; an exit from then on is reported
	stopping bool // cairn dev asked it to exit
}

// errExited is ready's answer when the process exits before it serves.
var errExited = errors.New("exited before it was ready")

func (r *proc) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// exitStatus describes how r ended (after done is closed).
func (r *proc) exitStatus() string {
	if r.err == nil {
		return "exit status 0"
	}
	return r.err.Error()
}

func (s *supervisor) member(name string) *member {
	for _, m := range s.members {
		if m.name == name {
			return m
		}
	}
	return nil
}

// start starts m's process once, with its output appended to m's log.
func (s *supervisor) start(m *member) (*proc, error) {
	args, listens, err := m.args()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.name, err)
	}
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.name, err)
	}
	defer logf.Close() // the child has its own descriptor
	fmt.Fprintf(logf, "=== %s cairn dev starts %s\n", time.Now().Format(time.RFC3339), m.name)
	cmd := exec.Command(s.self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: no daemon outlives cairn dev, even one killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, errClosing
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", m.name, err)
	}
	r := &proc{cmd: cmd, listens: listens, started: time.Now(), done: make(chan struct{})}
	m.cur = r
	go s.watch(m, r)
	return r, nil
}

// watch waits for r's process to exit and reports the exit unless cairn
// dev asked for it or r never came up (whoever waits for it to come up
// reports that).
func (s *supervisor) watch(m *member, r *proc) {
	err := r.cmd.Wait()
	if m.afterExit != nil {
		m.afterExit()
	}
	s.mu.Lock()
	r.err, r.ended = err, time.Now()
	report := r.ready && !r.stopping && !s.closing
	s.mu.Unlock()
	close(r.done)
	if report {
		fmt.Fprintf(s.errw, "cairn dev: %s exited (%s); the others keep running. End of %s:\n%s  bring it back with: cairn dev restart %s --dir %s\n",
			m.name, r.exitStatus(), showPath(m.logPath), indent(logTail(m.logPath, 10), "  | "), m.name, showPath(s.dir))
	}
}

// up starts m and waits until it serves; a failure says why, naming the
// address it could not listen on and its log.
func (s *supervisor) up(ctx context.Context, m *member) (*proc, error) {
	r, err := s.start(m)
	if err != nil {
		return nil, err
	}
	info, err := m.ready(ctx, r)
	if err != nil {
		if !r.exited() {
			s.stop(r)
		}
		return nil, s.startFailure(m, r, err)
	}
	s.mu.Lock()
	r.ready = true
	m.info = info
	gone := !r.ended.IsZero()
	s.mu.Unlock()
	if gone {
		return nil, s.startFailure(m, r, errExited)
	}
	return r, nil
}

// stop asks r's process to exit (SIGTERM) and waits for it; one still
// running stopGrace later is killed with its process group.
func (s *supervisor) stop(r *proc) {
	s.mu.Lock()
	r.stopping = true
	s.mu.Unlock()
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(stopGrace):
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
	}
}

// restart stops the named daemon if it runs and starts it again on the
// same data and addresses.
func (s *supervisor) restart(ctx context.Context, name string) (string, error) {
	s.mu.Lock()
	m := s.member(name)
	switch {
	case m == nil:
		s.mu.Unlock()
		return "", fmt.Errorf("no daemon %q in this cluster (it has %s)", name, strings.Join(s.names(), ", "))
	case s.starting:
		s.mu.Unlock()
		return "", errors.New("cairn dev is still starting the cluster; try again once it is up")
	case s.closing:
		s.mu.Unlock()
		return "", errClosing
	case m.busy:
		s.mu.Unlock()
		return "", fmt.Errorf("a restart of %s is under way already", name)
	}
	m.busy = true
	old := m.cur
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		m.busy = false
		s.mu.Unlock()
	}()
	if old != nil && !old.exited() {
		s.stop(old)
	}
	r, err := s.up(ctx, m)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	m.restarts++
	info := m.info
	s.mu.Unlock()
	msg := fmt.Sprintf("%s restarted: pid %d, %s", name, r.cmd.Process.Pid, info)
	fmt.Fprintf(s.out, "cairn dev: %s\n", msg)
	return msg, nil
}

func (s *supervisor) names() []string {
	var names []string
	for _, m := range s.members {
		names = append(names, m.name)
	}
	return names
}

// status is a table of the daemons: state, process, since when, restarts,
// where each serves (or how it ended).
func (s *supervisor) status() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPID\tSINCE\tRESTARTS\tDETAIL")
	s.mu.Lock()
	for _, m := range s.members {
		state, pid, since, detail := "not started", "-", "-", ""
		if r := m.cur; r != nil {
			pid = fmt.Sprint(r.cmd.Process.Pid)
			since = r.started.Format(time.TimeOnly)
			switch {
			case !r.ended.IsZero():
				state, pid, since = "exited", "-", r.ended.Format(time.TimeOnly)
				detail = r.exitStatus() + "; log " + showPath(m.logPath)
			case r.ready:
				state, detail = "running", m.info
			default:
				state = "starting"
			}
		}
		if m.busy {
			state = "restarting"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", m.name, state, pid, since, m.restarts, detail)
	}
	s.mu.Unlock()
	_ = tw.Flush()
	return b.String()
}

// shutdown stops every daemon, the mount first and metad last, and
// refuses any start from then on.
func (s *supervisor) shutdown() {
	s.mu.Lock()
	s.closing = true
	var runs []*proc
	for i := len(s.members) - 1; i >= 0; i-- {
		if r := s.members[i].cur; r != nil {
			runs = append(runs, r)
		}
	}
	s.mu.Unlock()
	for _, r := range runs {
		if !r.exited() {
			s.stop(r)
		}
	}
}

// waitFile waits for a daemon's address file and decodes it into v; it
// fails when the process exits first.
func waitFile(ctx context.Context, path string, r *proc, v any) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			return json.Unmarshal(b, v)
		}
		select {
		case <-r.done:
			return errExited
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 60 s (no %s)", filepath.Base(path))
		}
	}
}
