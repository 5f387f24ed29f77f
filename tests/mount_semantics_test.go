package tests

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"cairn/tests/cluster"
)

// nobodyID is the uid and gid of nobody, the unprivileged user the permission checks are tried as.
const nobodyID = 65534

// TestMountSemantics drives chmod, chown, touch, ln -s, mkfifo and user.*
// xattrs through a real mount, checks that all of them are kept by metad
// across a restart, and that metad's permission checks reach a program
// running as another user as EACCES (and EPERM) through the mount.
func TestMountSemantics(t *testing.T) {
	RequireFUSE(t)
	requireRootToActAsOthers(t)
	c := cluster.Start(t, cluster.Config{Blockds: 1, Replication: 1})
	mnt := mountForAll(t, c)
	p := func(name string) string { return filepath.Join(mnt, name) }

	if err := os.WriteFile(p("f"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "chmod", "640", p("f"))
	run(t, "chown", "65534:65534", p("f"))
	run(t, "touch", p("empty"))
	run(t, "ln", "-s", "f", p("link"))
	run(t, "mkfifo", "-m", "620", p("fifo"))
	if err := unix.Setxattr(p("f"), "user.color", []byte("blue"), unix.XATTR_CREATE); err != nil {
		t.Fatalf("setxattr user.color: %v", err)
	}
	if err := unix.Setxattr(p("f"), "user.color", []byte("red"), unix.XATTR_CREATE); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("setxattr XATTR_CREATE of an existing attribute: %v, want EEXIST", err)
	}
	if err := unix.Setxattr(p("f"), "user.size", []byte("L"), unix.XATTR_REPLACE); !errors.Is(err, syscall.ENODATA) {
		t.Errorf("setxattr XATTR_REPLACE of a missing attribute: %v, want ENODATA", err)
	}
	if err := unix.Setxattr(p("f"), "trusted.x", []byte("v"), 0); !errors.Is(err, syscall.ENOTSUP) {
		t.Errorf("setxattr trusted.x: %v, want ENOTSUP", err)
	}
	for _, d := range []string{"locked", "open"} {
		if err := os.Mkdir(p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run(t, "chmod", "777", p("open"))

	t.Run("AnotherUser", func(t *testing.T) {
		// A directory of root's, mode 0755: nobody may not write in it.
		out := asNobody(t, "echo x > "+p("locked/denied"))
		if out.Code == 0 || !strings.Contains(out.Stderr, "Permission denied") {
			t.Errorf("nobody writing into root's 0755 directory: exit %d, stderr %q; want EACCES (Permission denied)", out.Code, out.Stderr)
		}
		if _, err := os.Lstat(p("locked/denied")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the refused file exists: %v", err)
		}
		out = asNobody(t, "chmod 777 "+p("locked"))
		if out.Code == 0 || !strings.Contains(out.Stderr, "Operation not permitted") {
			t.Errorf("nobody chmod of root's directory: exit %d, stderr %q; want EPERM (Operation not permitted)", out.Code, out.Stderr)
		}
		// Where nobody may write, what it makes is its own.
		if out := asNobody(t, "echo mine > "+p("open/theirs")+" && echo more >> "+p("f")); out.Code != 0 {
			t.Errorf("nobody writing into a 0777 directory and appending to its own file: exit %d, stderr %q", out.Code, out.Stderr)
		}
		if st := mustLstat(t, p("open/theirs")); st.Uid != nobodyID || st.Gid != nobodyID {
			t.Errorf("nobody's new file: uid %d gid %d", st.Uid, st.Gid)
		}
	})

	// After nobody's append, which set the modification time.
	run(t, "touch", "-d", "@1500000000", p("f"))

	checkSemantics(t, mnt)
	c.StopMetad(t)
	c.StartMetad(t)
	c.WaitHealthy(t, time.Minute)
	t.Log("after the restart of metad, through a new mount:")
	checkSemantics(t, mountForAll(t, c))
}

// checkSemantics checks what TestMountSemantics stored, through mnt.
func checkSemantics(t *testing.T, mnt string) {
	t.Helper()
	p := func(name string) string { return filepath.Join(mnt, name) }
	st := mustLstat(t, p("f"))
	if st.Mode != syscall.S_IFREG|0o640 || st.Uid != nobodyID || st.Gid != nobodyID || st.Mtim.Sec != 1500000000 {
		t.Errorf("f: mode %o uid %d gid %d mtime %d; want %o, 65534:65534, 1500000000",
			st.Mode, st.Uid, st.Gid, st.Mtim.Sec, syscall.S_IFREG|0o640)
	}
	if got, err := os.ReadFile(p("f")); err != nil || string(got) != "hello\nmore\n" {
		t.Errorf("f: %q %v", got, err)
	}
	if st := mustLstat(t, p("empty")); st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Size != 0 {
		t.Errorf("empty: mode %o size %d", st.Mode, st.Size)
	}
	if got, err := os.Readlink(p("link")); err != nil || got != "f" {
		t.Errorf("readlink link: %q %v", got, err)
	}
	if st := mustLstat(t, p("link")); st.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		t.Errorf("link: mode %o", st.Mode)
	}
	if st := mustLstat(t, p("fifo")); st.Mode != syscall.S_IFIFO|0o620 {
		t.Errorf("fifo: mode %o, want %o", st.Mode, syscall.S_IFIFO|0o620)
	}
	buf := make([]byte, 64)
	if n, err := unix.Getxattr(p("f"), "user.color", buf); err != nil || string(buf[:n]) != "blue" {
		t.Errorf("getxattr user.color: %q %v", buf[:n], err)
	}
	if n, err := unix.Listxattr(p("f"), buf); err != nil || !slices.Contains(strings.Split(string(buf[:n]), "\x00"), "user.color") {
		t.Errorf("listxattr: %q %v", buf[:n], err)
	}
	if _, err := unix.Getxattr(p("f"), "user.size", buf); !errors.Is(err, syscall.ENODATA) {
		t.Errorf("getxattr of a missing attribute: %v, want ENODATA", err)
	}
	if st := mustLstat(t, p("locked")); st.Mode != syscall.S_IFDIR|0o755 || st.Uid != 0 {
		t.Errorf("locked: mode %o uid %d", st.Mode, st.Uid)
	}
	if st := mustLstat(t, p("open/theirs")); st.Uid != nobodyID {
		t.Errorf("open/theirs: uid %d", st.Uid)
	}
	if _, err := os.Lstat(p("locked/denied")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("locked/denied: %v", err)
	}
}

// mountForAll mounts the cluster for every user of this machine.
func mountForAll(t *testing.T, c *cluster.Cluster) string {
	t.Helper()
	mnt := c.Mount(t, "-o", "allow_other")
	// The test's temporary directories (TestX123/001) are private to
	// root.
	for _, d := range []string{filepath.Dir(mnt), filepath.Dir(filepath.Dir(mnt))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return mnt
}

// asNobody runs sh -c script as nobody:nogroup, in /, with messages in
// English, so a failed call is known by strerror's text.
func asNobody(t *testing.T, script string) cluster.Output {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobodyID, Gid: nobodyID}, Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := cluster.Output{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("as nobody: %s: no exit within a minute", script)
	case errors.As(err, &ee):
		out.Code = ee.ExitCode()
	case err != nil:
		t.Fatalf("as nobody: %s: %v", script, err)
	}
	return out
}

func mustLstat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

// requireRootToActAsOthers stops a test that needs root to chown and to
// run programs as another user: it skips it, except in CI (CI=true),
// where it fails.
func requireRootToActAsOthers(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("needs root; euid is %d (CI=true: may not skip)", os.Geteuid())
		}
		t.Skipf("needs root; euid is %d", os.Geteuid())
	}
}
