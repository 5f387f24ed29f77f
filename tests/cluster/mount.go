package cluster

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Mount mounts the cluster with `cairn mount ADDR MNT --foreground [opts]`
// on a new directory in t's temporary directory, waits until the kernel
// lists it as a FUSE mount, and returns the mount point. When t ends the
// mount is stopped with SIGTERM, on which it must unmount and exit within
// 10 s; otherwise the test fails, and the mount is lazily unmounted and the
// process killed.
func (c *Cluster) Mount(t testing.TB, opts ...string) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	mkdirs(t, mnt)
	// mountinfo lists the resolved path.
	if real, err := filepath.EvalSymlinks(mnt); err == nil {
		mnt = real
	}
	c.mu.Lock()
	name := fmt.Sprintf("mount%d", c.nmounts)
	c.nmounts++
	c.mu.Unlock()
	args := append([]string{"mount", c.MetadAddr(), mnt, "--foreground"}, opts...)
	p := c.start(t, name, args)
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(func() { unmount(t, p, mnt) })
	waitUntil(t, p, startTimeout, "mounted on "+mnt, func() bool {
		ok, err := IsFUSEMount(mnt)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	})
	t.Logf("%s: %s mounted on %s", p.name, c.MetadAddr(), mnt)
	return mnt
}

// unmount stops the mount process p with SIGTERM and makes sure mnt is no
// longer mounted, whatever happens.
func unmount(t testing.TB, p *proc, mnt string) {
	if p.exited() && !p.accounted.Load() {
		t.Errorf("%s exited by itself: %s", p.name, p.exitStatus())
	}
	if !p.exited() && !p.stop(syscall.SIGTERM, stopGrace) {
		t.Errorf("%s did not exit within %v of SIGTERM; it was killed", p.name, stopGrace)
	}
	mounted, err := IsFUSEMount(mnt)
	if err != nil {
		t.Error(err)
	}
	if mounted {
		t.Errorf("%s is still mounted after %s exited (%s); unmounting it lazily", mnt, p.name, p.exitStatus())
		if err := lazyUnmount(mnt); err != nil {
			t.Error(err)
		}
	}
}

// lazyUnmount detaches mnt even while it is busy or its server is gone.
func lazyUnmount(mnt string) error {
	name, args := "fusermount3", []string{"-u", "-z", mnt}
	if os.Geteuid() == 0 {
		name, args = "umount", []string{"-l", mnt}
	}
	out, err := runCommand(10*time.Second, os.Environ(), name, args...)
	if err != nil || out.Code != 0 {
		return fmt.Errorf("%s %s: exit %d, %v: %s", name, strings.Join(args, " "), out.Code, err, out.Stderr)
	}
	return nil
}

// IsFUSEMount reports whether mnt is a mount point of a FUSE filesystem in
// this process's mount namespace, according to /proc/self/mountinfo.
func IsFUSEMount(mnt string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	return fuseMountIn(bufio.NewScanner(f), filepath.Clean(mnt))
}

// fuseMountIn scans mountinfo lines (proc(5)): "36 35 98:0 /mnt1 /mnt2 rw
// ... - fuse.cairn cairn rw,...", where field 5 is the mount point and the
// first field after "-" the filesystem type.
func fuseMountIn(s *bufio.Scanner, mnt string) (bool, error) {
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 || unescapeMountinfo(fields[4]) != mnt {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				if fstype := fields[i+1]; fstype == "fuse" || strings.HasPrefix(fstype, "fuse.") {
					return true, nil
				}
				break
			}
		}
	}
	return false, s.Err()
}

// unescapeMountinfo undoes mountinfo's octal escapes of space, tab, newline
// and backslash ("\040").
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
