package dev

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// startFailure explains why m's process r did not come up. When r exited
// and one of the addresses it was told to listen on cannot be bound, it
// names that address and why ("metad could not listen on 127.0.0.1:9000
// (address already in use)"); otherwise it gives the exit status and the
// end of the log. Either way it names the log.
func (s *supervisor) startFailure(m *member, r *proc, err error) error {
	log := showPath(m.logPath)
	if !r.exited() {
		return fmt.Errorf("%s: %w; see %s", m.name, err, log)
	}
	for _, addr := range r.listens {
		if why := listenProblem(addr); why != nil {
			hint := ""
			if m.name == "metad" {
				hint = "\nchoose other ports with --metad and --metad-http (make run METAD_PORT=... METAD_HTTP_PORT=...)"
			}
			return fmt.Errorf("%s could not listen on %s (%v); see %s%s", m.name, addr, why, log, hint)
		}
	}
	return fmt.Errorf("%s exited before it was ready (%s); see %s, which ends:\n%s", m.name, r.exitStatus(), log, indent(logTail(m.logPath, 10), "  | "))
}

// listenProblem tries to listen on addr, as the daemon that just failed
// was told to, and returns why it cannot (an errno such as EADDRINUSE when
// there is one); nil when it can, or when addr asks for any free port.
func listenProblem(addr string) error {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "0" {
		return nil
	}
	l, err := net.Listen("tcp", addr)
	if err == nil {
		_ = l.Close()
		return nil
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// showPath is path relative to the working directory when it lies under
// it (".dev/cluster/logs/metad.log"), else path.
func showPath(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	rel, err := filepath.Rel(wd, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return path
	}
	return rel
}

// logTail returns the last n lines of the file at path (of its last
// 16 KiB at most).
func logTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%v)\n", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(%v)\n", err)
	}
	off := max(fi.Size()-16<<10, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return fmt.Sprintf("(%v)\n", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // a line cut by the offset
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n"))) + "\n"
}

// indent puts prefix before every line of s.
func indent(s, prefix string) string {
	s = strings.TrimRight(s, "\n")
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix) + "\n"
}
