package tests

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"cairn/tests/cluster"
)

// TestPOSIX drives the POSIX rules through a real mount, each with the
// exact errno a program sees and the state that results, run as root and
// as nobody: permission checks before the write-once rules, EACCES at open,
// Linux's chown, chgrp and utimes rules, ctime, st_nlink of directories,
// ENAMETOOLONG counted below the mount's root, fsync of a directory, and
// device numbers.
func TestPOSIX(t *testing.T) {
	RequireFUSE(t)
	requireRootToActAsOthers(t)
	c := cluster.Start(t, cluster.Config{Blockds: 1, Replication: 1})
	mnt := mountForAll(t, c)
	p := func(name string) string { return filepath.Join(mnt, name) }
	if err := os.Mkdir(p("open"), 0o777); err != nil {
		t.Fatal(err)
	}
	must(t, os.Chmod(p("open"), 0o777))

	t.Run("PermissionBeforeWriteOnce", func(t *testing.T) {
		// root's non-empty 0644 file: nobody may not write it, by any way.
		writeFile(t, p("rootfile"), "hello\n", 0o644)
		for _, c := range []struct{ what, script, want string }{
			{"open to append", ": >> " + p("rootfile"), "cannot create"},
			{"open with O_TRUNC", ": > " + p("rootfile"), "cannot create"},
			{"truncate(2)", "perl -e 'truncate($ARGV[0], 3) or die \"truncate: $!\\n\"' " + p("rootfile"), "truncate:"},
		} {
			out := asNobody(t, c.script)
			if out.Code == 0 || !strings.Contains(out.Stderr, c.want) || !strings.Contains(out.Stderr, "Permission denied") {
				t.Errorf("nobody: %s of root's 0644 file: exit %d, stderr %q; want EACCES (Permission denied) from %q",
					c.what, out.Code, out.Stderr, c.want)
			}
		}
		if got := readFile(t, p("rootfile")); got != "hello\n" {
			t.Errorf("root's file after nobody's refused writes: %q", got)
		}
		// nobody's own file: the write-once rules refuse, with EPERM.
		if out := asNobody(t, "printf abc > "+p("open/own")); out.Code != 0 {
			t.Fatalf("nobody creating its file: %q", out.Stderr)
		}
		out := asNobody(t, "dd if=/dev/zero of="+p("open/own")+" bs=1 count=1 conv=notrunc status=none")
		if out.Code == 0 || !strings.Contains(out.Stderr, "Operation not permitted") {
			t.Errorf("nobody overwriting its own file: exit %d, stderr %q; want EPERM (Operation not permitted)", out.Code, out.Stderr)
		}
		if got := readFile(t, p("open/own")); got != "abc" {
			t.Errorf("nobody's file after a refused overwrite: %q", got)
		}
		// The refusal at open is logged at INFO, with the path and the rule.
		c.WaitLog(t, "mount0", 10*time.Second, "\tinfo\t", "refused", `"path": "/rootfile"`, "access=WRITE")
	})

	t.Run("Chown", func(t *testing.T) {
		writeFile(t, p("open/rootowned"), "", 0o666)
		must(t, os.Chmod(p("open/rootowned"), 0o666))
		out := asNobody(t, "chown root "+p("open/rootowned"))
		if out.Code == 0 || !strings.Contains(out.Stderr, "Operation not permitted") {
			t.Errorf("nobody chown of root's file to root: exit %d, stderr %q; want EPERM", out.Code, out.Stderr)
		}
		out = asNobody(t, "chgrp root "+p("open/rootowned"))
		if out.Code == 0 || !strings.Contains(out.Stderr, "Operation not permitted") {
			t.Errorf("nobody chgrp of root's file to its group: exit %d, stderr %q; want EPERM", out.Code, out.Stderr)
		}
		if st := mustLstat(t, p("open/rootowned")); st.Uid != 0 || st.Gid != 0 {
			t.Errorf("root's file after refused chowns: %d:%d", st.Uid, st.Gid)
		}
		if out := asNobody(t, "touch "+p("open/nobodys")+" && chown nobody "+p("open/nobodys")+" && chgrp nogroup "+p("open/nobodys")); out.Code != 0 {
			t.Errorf("nobody chown and chgrp of its file to itself and its group: %q", out.Stderr)
		}
		out = asNobody(t, "chgrp root "+p("open/nobodys"))
		if out.Code == 0 || !strings.Contains(out.Stderr, "Operation not permitted") {
			t.Errorf("nobody chgrp of its file to a group it is not in: exit %d, stderr %q; want EPERM", out.Code, out.Stderr)
		}
		if st := mustLstat(t, p("open/nobodys")); st.Uid != nobodyID || st.Gid != nobodyID {
			t.Errorf("nobody's file: %d:%d", st.Uid, st.Gid)
		}
	})

	t.Run("TouchNow", func(t *testing.T) {
		writeFile(t, p("shared"), "x", 0o666)
		must(t, os.Chmod(p("shared"), 0o666))
		old := time.Unix(1000000000, 0)
		must(t, os.Chtimes(p("shared"), old, old))
		if out := asNobody(t, "touch "+p("shared")); out.Code != 0 {
			t.Errorf("nobody touch of root's 0666 file: exit %d, stderr %q; want success (UTIME_NOW needs write permission only)", out.Code, out.Stderr)
		}
		if st := mustLstat(t, p("shared")); st.Mtim.Sec <= old.Unix() || st.Atim.Sec <= old.Unix() {
			t.Errorf("after nobody's touch: mtime %d atime %d", st.Mtim.Sec, st.Atim.Sec)
		}
		must(t, os.Chtimes(p("shared"), old, old))
		out := asNobody(t, "touch -d @1500000000 "+p("shared"))
		if out.Code == 0 || !strings.Contains(out.Stderr, "Operation not permitted") {
			t.Errorf("nobody touch -d of root's file: exit %d, stderr %q; want EPERM", out.Code, out.Stderr)
		}
		writeFile(t, p("readonly"), "x", 0o644)
		out = asNobody(t, "touch "+p("readonly"))
		if out.Code == 0 || !strings.Contains(out.Stderr, "Permission denied") {
			t.Errorf("nobody touch of root's 0644 file: exit %d, stderr %q; want EACCES", out.Code, out.Stderr)
		}
		if st := mustLstat(t, p("shared")); st.Mtim.Sec != old.Unix() {
			t.Errorf("after refused touches: mtime %d", st.Mtim.Sec)
		}
	})

	t.Run("ChangeTime", func(t *testing.T) {
		for _, f := range []string{"chmod", "chown", "rename", "write", "xattr", "control", "dir/unlinked"} {
			must(t, os.MkdirAll(filepath.Dir(p("ct/"+f)), 0o755))
			writeFile(t, p("ct/"+f), "x", 0o644)
		}
		time.Sleep(10 * time.Millisecond) // past the creations, on the same clock as metad's
		t0 := time.Now()
		must(t, os.Chmod(p("ct/chmod"), 0o600))
		must(t, os.Chown(p("ct/chown"), nobodyID, nobodyID))
		must(t, os.Rename(p("ct/rename"), p("ct/renamed")))
		appendFile(t, p("ct/write"), "more")
		must(t, unix.Setxattr(p("ct/xattr"), "user.k", []byte("v"), 0))
		must(t, os.Remove(p("ct/dir/unlinked")))
		check := func(mnt string) {
			t.Helper()
			for _, f := range []string{"chmod", "chown", "renamed", "write", "xattr", "dir"} {
				if st := mustLstat(t, filepath.Join(mnt, "ct", f)); time.Unix(st.Ctim.Unix()).Before(t0) {
					t.Errorf("%s: ctime %v, before the change at %v", f, time.Unix(st.Ctim.Unix()), t0)
				}
			}
			if st := mustLstat(t, filepath.Join(mnt, "ct/control")); !time.Unix(st.Ctim.Unix()).Before(t0) {
				t.Errorf("control: ctime %v, not before %v: it was not changed", time.Unix(st.Ctim.Unix()), t0)
			}
		}
		check(mnt)
		t.Log("through a new mount, from metad:")
		check(c.Mount(t))
	})

	t.Run("DirNlink", func(t *testing.T) {
		for _, d := range []string{"n", "n/a", "n/b", "n/c", "n/c/deep"} {
			must(t, os.Mkdir(p(d), 0o755))
		}
		writeFile(t, p("n/f"), "", 0o644)
		nlink := func(d string) uint64 { return uint64(mustLstat(t, p(d)).Nlink) }
		if n := nlink("n"); n != 5 {
			t.Errorf("n with 3 subdirectories and a file: nlink %d, want 5", n)
		}
		must(t, os.Remove(p("n/a")))
		must(t, os.Rename(p("n/b"), p("moved")))
		if n, c := nlink("n"), nlink("n/c"); n != 3 || c != 3 {
			t.Errorf("after rmdir and a move out: n nlink %d, n/c nlink %d; want 3, 3", n, c)
		}
		out := cluster.Exec(t, "find", p("n"), "-type", "d")
		if got := strings.Count(out.Stdout, "\n"); got != 3 {
			t.Errorf("find (which trusts st_nlink) found %d directories, want 3:\n%s", got, out.Stdout)
		}
	})

	t.Run("NameTooLong", func(t *testing.T) {
		long := strings.Repeat("n", 256)
		if err := os.WriteFile(p(long), nil, 0o644); !errors.Is(err, syscall.ENAMETOOLONG) {
			t.Errorf("create of a 256-byte name: %v, want ENAMETOOLONG", err)
		}
		if err := os.Mkdir(p(long), 0o755); !errors.Is(err, syscall.ENAMETOOLONG) {
			t.Errorf("mkdir of a 256-byte name: %v, want ENAMETOOLONG", err)
		}
		// Through a mount of /sub, the path counts from its root: 16
		// levels of 255-byte names are 4096 bytes exactly (allowed), one
		// more name is too long.
		must(t, os.Mkdir(p("sub"), 0o755))
		sub := c.MountDir(t, "/sub")
		fd, err := noEINTR(func() (int, error) { return unix.Open(sub, unix.O_DIRECTORY|unix.O_RDONLY, 0) })
		must(t, err)
		name := strings.Repeat("d", 255)
		shown := 0
		for i := 0; i < 16; i++ {
			if _, err := noEINTR(func() (int, error) { return 0, unix.Mkdirat(fd, name, 0o755) }); err != nil {
				t.Fatalf("mkdir at %d bytes below the mount's root: %v", shown+256, err)
			}
			shown += 256
			next, err := noEINTR(func() (int, error) { return unix.Openat(fd, name, unix.O_DIRECTORY|unix.O_RDONLY, 0) })
			must(t, err)
			must(t, unix.Close(fd))
			fd = next
		}
		defer unix.Close(fd)
		if _, err := noEINTR(func() (int, error) { return 0, unix.Mkdirat(fd, "x", 0o755) }); !errors.Is(err, syscall.ENAMETOOLONG) {
			t.Errorf("mkdir at %d bytes below the mount's root: %v, want ENAMETOOLONG", shown+2, err)
		}
		f, err := noEINTR(func() (int, error) { return unix.Openat(fd, "x", unix.O_CREAT|unix.O_WRONLY, 0o644) })
		if !errors.Is(err, syscall.ENAMETOOLONG) {
			t.Errorf("create at %d bytes below the mount's root: %v, want ENAMETOOLONG", shown+2, err)
		}
		if err == nil {
			_ = unix.Close(f)
		}
	})

	t.Run("FsyncDir", func(t *testing.T) {
		for _, d := range []string{mnt, p("open")} {
			f, err := os.Open(d)
			must(t, err)
			if err := f.Sync(); err != nil {
				t.Errorf("fsync of directory %s: %v, want success", d, err)
			}
			must(t, f.Close())
		}
	})

	t.Run("Mknod", func(t *testing.T) {
		devs := map[string]struct {
			mode uint32
			dev  uint64
		}{
			"null": {syscall.S_IFCHR | 0o640, unix.Mkdev(1, 3)},
			"loop": {syscall.S_IFBLK | 0o600, unix.Mkdev(7, 1)},
			"big":  {syscall.S_IFCHR | 0o600, unix.Mkdev(4095, 1<<20-1)},
		}
		for name, d := range devs {
			if err := unix.Mknod(p(name), d.mode, int(d.dev)); err != nil {
				t.Fatalf("mknod %s: %v", name, err)
			}
		}
		again := c.Mount(t)
		for name, d := range devs {
			for _, m := range []string{mnt, again} {
				if st := mustLstat(t, filepath.Join(m, name)); st.Mode != d.mode || st.Rdev != d.dev {
					t.Errorf("%s: mode %o rdev %d:%d, want %o %d:%d", filepath.Join(m, name), st.Mode,
						unix.Major(st.Rdev), unix.Minor(st.Rdev), d.mode, unix.Major(d.dev), unix.Minor(d.dev))
				}
			}
		}
	})
}

func writeFile(t *testing.T, p, data string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, p, data string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	must(t, f.Close())
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// noEINTR calls fn again while it fails with EINTR, as package os does
// for its calls: a lookup through FUSE honors the signals the Go runtime
// sends its threads.
func noEINTR(fn func() (int, error)) (int, error) {
	for {
		n, err := fn()
		if !errors.Is(err, syscall.EINTR) {
			return n, err
		}
	}
}
