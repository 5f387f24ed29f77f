package mount

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// detachedEnv tells a `cairn mount --foreground` that it was started by
// background and that its stderr is the parent's pipe.
const detachedEnv = "CAIRN_MOUNT_DETACHED"

// startTimeout bounds how long background waits for the mount to appear.
const startTimeout = 30 * time.Second

// background starts `cairn mount ... --foreground` in a new session and
// returns 0 once the mountpoint is a FUSE mount, or the child's exit
// status, with its stderr shown, if it ends first.
func background(ctx context.Context, cfg config, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "cairn mount: %v\n", err)
		return 1
	}
	args := []string{"mount", cfg.source, cfg.mountpoint, "--foreground"}
	if len(cfg.rawOpts) > 0 {
		args = append(args, "-o", strings.Join(cfg.rawOpts, ","))
	}
	if cfg.debug {
		args = append(args, "--debug")
	}
	if cfg.logFile != "" {
		args = append(args, "--log", cfg.logFile)
	}
	if cfg.metrics != "" {
		args = append(args, "--metrics", cfg.metrics)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "cairn mount: %v\n", err)
		return 1
	}
	defer pr.Close()
	before := FUSEMounts(cfg.mountpoint)
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), detachedEnv+"=1")
	cmd.Dir = "/"
	cmd.Stderr = pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		fmt.Fprintf(stderr, "cairn mount: %v\n", err)
		return 1
	}
	msgs := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(pr)
		msgs <- b
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	timeout := time.NewTimer(startTimeout)
	defer timeout.Stop()
	for {
		select {
		case <-tick.C:
			if FUSEMounts(cfg.mountpoint) > before {
				return 0
			}
		case err := <-exited:
			select {
			case b := <-msgs:
				stderr.Write(b)
			case <-time.After(time.Second):
			}
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() > 0 {
				return ee.ExitCode()
			}
			fmt.Fprintf(stderr, "cairn mount: ended before %s was mounted (%v)\n", cfg.mountpoint, err)
			return 1
		case <-timeout.C:
			cmd.Process.Kill()
			fmt.Fprintf(stderr, "cairn mount: %s not mounted after %s; giving up\n", cfg.mountpoint, startTimeout)
			return 1
		case <-ctx.Done():
			cmd.Process.Kill()
			fmt.Fprintf(stderr, "cairn mount: %v\n", ctx.Err())
			return 1
		}
	}
}

// detach lets go of the parent's stderr pipe once mounted: log lines go to
// the log file if there is one, else to syslog (or nowhere if there is
// none), and fd 2 becomes the log file or /dev/null.
func detach(out *logSink, logFile *os.File, log *zap.Logger) {
	target := logFile
	if target == nil {
		if w, err := syslog.New(syslog.LOG_INFO|syslog.LOG_DAEMON, "cairn-mount"); err == nil {
			out.set(w)
		} else {
			log.Warn("no syslog; the mount's log lines are dropped (--log FILE keeps them)", zap.Error(err))
			out.set(io.Discard)
		}
		devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			log.Error("detach", zap.Error(err))
			return
		}
		defer devNull.Close()
		target = devNull
	}
	if err := syscall.Dup3(int(target.Fd()), 2, 0); err != nil {
		log.Error("detach", zap.Error(err))
	}
}

// FUSEMounts counts the FUSE mounts at dir in this process's
// /proc/self/mountinfo: how commands and tests know a mount is up.
func FUSEMounts(dir string) int {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0
	}
	return countFUSEMounts(data, dir)
}

// countFUSEMounts counts the lines of a mountinfo (proc(5)) that mount a
// FUSE filesystem at dir: "36 35 98:0 /root /mnt rw ... - fuse.cairn cairn
// rw,...", field 5 the mount point, the first field after "-" the type.
func countFUSEMounts(mountinfo []byte, dir string) int {
	n := 0
	for line := range strings.SplitSeq(string(mountinfo), "\n") {
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(f) {
			continue
		}
		if fstype := f[sep+1]; unescapeMountinfo(f[4]) == dir && (fstype == "fuse" || strings.HasPrefix(fstype, "fuse.")) {
			n++
		}
	}
	return n
}

// unescapeMountinfo undoes the octal escapes (\040 for a space...) of a
// mountinfo field.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
