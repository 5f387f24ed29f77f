package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cairn/mount"
)

// Mount mounts the cluster with `cairn mount ADDR MNT --foreground [opts]`
// on a new directory in t's temporary directory, waits until the kernel
// lists it as a FUSE mount, and returns the mount point. When t ends the
// mount is stopped with SIGTERM, on which it must unmount and exit within
// 10 s; otherwise the test fails, and the mount is lazily unmounted and the
// process killed.
func (c *Cluster) Mount(t testing.TB, opts ...string) string {
	t.Helper()
	return c.MountDir(t, "", opts...)
}

// MountDir is Mount of the cluster's directory dir ("/sub"), shown at the
// mount point as its root; "" mounts the whole namespace.
func (c *Cluster) MountDir(t testing.TB, dir string, opts ...string) string {
	t.Helper()
	return c.mountOn(t, nil, dir, opts)
}

// MountOn is Mount with the mount process on host h of a test network
// (tests/netns): it reaches metad and the blockds from h's address. The
// mount point is seen here as well, since h shares this mount namespace.
func (c *Cluster) MountOn(t testing.TB, h Host, opts ...string) string {
	t.Helper()
	return c.mountOn(t, h, "", opts)
}

func (c *Cluster) mountOn(t testing.TB, h Host, dir string, opts []string) string {
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
	args := append([]string{"mount", c.MetadAddr() + dir, mnt, "--foreground"}, opts...)
	p := c.startOn(t, h, name, args)
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
	if _, err := os.Stat("/proc/self/mountinfo"); err != nil {
		return false, err
	}
	return mount.FUSEMounts(filepath.Clean(mnt)) > 0, nil
}
