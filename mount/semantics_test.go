package mount

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"cairn"
)

// The rest of the file semantics (DESIGN.md): chmod, chown, utimes,
// symlinks, special files and user.* xattrs stored by the backend; the
// caller's identity passed with every call; shared writable mappings
// refused.

// requireRoot stops a test that needs root (to act as another user, to
// make device nodes): it skips it elsewhere, except in CI, where it fails.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs root for this test; euid is %d", os.Geteuid())
		}
		t.Skipf("needs root; euid is %d", os.Geteuid())
	}
}

// nameOf is what the mount calls uid (user) or gid (group) on this
// machine: its name, or its decimal string.
func nameOf(t *testing.T, id uint32, group bool) string {
	t.Helper()
	s := strconv.FormatUint(uint64(id), 10)
	if group {
		if g, err := user.LookupGroupId(s); err == nil {
			return g.Name
		}
		return s
	}
	if u, err := user.LookupId(s); err == nil {
		return u.Username
	}
	return s
}

// setOwner changes what the backend keeps as path's owner and group.
func (b *memBackend) setOwner(path, owner, group string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.files[path].fi.Owner, b.files[path].fi.Group = owner, group
}

func lstat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

func TestChmodChownTouch(t *testing.T) {
	b := newMemBackend()
	b.put("/f", []byte("data"))
	b.put("/stranger", []byte("x"))
	b.setOwner("/stranger", "no-such-user-of-cairn", "no-such-group-of-cairn")
	b.put("/d/g", nil)
	m := mountMem(t, b, Options{})
	p := m.path("f")
	ctx := context.Background()

	for _, c := range []struct {
		chmod uint32
		perm  os.FileMode
	}{
		{0o600, 0o600},
		{0o4755, os.ModeSetuid | 0o755},
		{0o2750, os.ModeSetgid | 0o750},
		{0o1777, os.ModeSticky | 0o777},
		{0, 0},
		{0o644, 0o644},
	} {
		if err := syscall.Chmod(p, c.chmod); err != nil {
			t.Fatalf("chmod %o: %v", c.chmod, err)
		}
		fi, _ := b.Stat(ctx, "/f")
		if fi.Mode != c.perm {
			t.Errorf("chmod %o: backend mode %v, want %v", c.chmod, fi.Mode, c.perm)
		}
		if st := lstat(t, p); st.Mode != syscall.S_IFREG|c.chmod {
			t.Errorf("chmod %o: st_mode %o", c.chmod, st.Mode)
		}
	}
	if err := os.Chmod(m.path("d"), 0o700); err != nil {
		t.Fatal(err)
	}
	if fi, _ := b.Stat(ctx, "/d"); fi.Mode != os.ModeDir|0o700 {
		t.Errorf("chmod of a directory: backend mode %v", fi.Mode)
	}

	// Owners go by name; an id with no name on this machine by number.
	if err := os.Chown(p, nobodyID, nobodyID); err != nil {
		t.Fatal(err)
	}
	fi, _ := b.Stat(ctx, "/f")
	if want, wantG := nameOf(t, nobodyID, false), nameOf(t, nobodyID, true); fi.Owner != want || fi.Group != wantG {
		t.Errorf("chown 65534:65534: backend owner %s:%s, want %s:%s", fi.Owner, fi.Group, want, wantG)
	}
	if st := lstat(t, p); st.Uid != nobodyID || st.Gid != nobodyID {
		t.Errorf("after chown 65534:65534: uid %d gid %d", st.Uid, st.Gid)
	}
	const unnamed = 4242424
	if err := os.Chown(p, unnamed, unnamed+1); err != nil {
		t.Fatal(err)
	}
	if fi, _ := b.Stat(ctx, "/f"); fi.Owner != "4242424" || fi.Group != "4242425" {
		t.Errorf("chown to ids with no name: backend owner %s:%s", fi.Owner, fi.Group)
	}
	if st := lstat(t, p); st.Uid != unnamed || st.Gid != unnamed+1 {
		t.Errorf("after chown %d:%d: uid %d gid %d", unnamed, unnamed+1, st.Uid, st.Gid)
	}
	if err := os.Lchown(p, -1, 0); err != nil {
		t.Fatal(err)
	}
	if fi, _ := b.Stat(ctx, "/f"); fi.Owner != "4242424" || fi.Group != nameOf(t, 0, true) {
		t.Errorf("chgrp 0: backend owner %s:%s", fi.Owner, fi.Group)
	}
	if st := lstat(t, m.path("stranger")); st.Uid != nobodyID || st.Gid != nobodyID {
		t.Errorf("owner unknown here: uid %d gid %d, want nobody's", st.Uid, st.Gid)
	}

	// touch: times given, and now.
	mtime, atime := time.Unix(1234567890, 123456789), time.Unix(1111111111, 0)
	if err := os.Chtimes(p, atime, mtime); err != nil {
		t.Fatal(err)
	}
	fi, _ = b.Stat(ctx, "/f")
	if !fi.ModTime.Equal(mtime) || !fi.AccessTime.Equal(atime) {
		t.Errorf("utimes: backend mtime %v atime %v, want %v %v", fi.ModTime, fi.AccessTime, mtime, atime)
	}
	if st := lstat(t, p); st.Mtim != syscall.NsecToTimespec(mtime.UnixNano()) || st.Atim != syscall.NsecToTimespec(atime.UnixNano()) {
		t.Errorf("utimes: stat mtime %v atime %v", st.Mtim, st.Atim)
	}
	before := time.Now().Truncate(time.Second)
	run(t, "touch", p)
	if fi, _ := b.Stat(ctx, "/f"); fi.ModTime.Before(before) {
		t.Errorf("touch: backend mtime %v, before the touch (%v)", fi.ModTime, before)
	}
	run(t, "touch", "-d", "@1000000000", m.path("d/g"))
	if fi, _ := b.Stat(ctx, "/d/g"); !fi.ModTime.Equal(time.Unix(1000000000, 0)) {
		t.Errorf("touch -d of an existing empty file: backend mtime %v", fi.ModTime)
	}
	if got, _, _ := b.content("/f"); string(got) != "data" {
		t.Errorf("content %q after attribute changes, want data", got)
	}
	for _, c := range b.callsTo("SetAttr", "/f") {
		if !c.hasID || c.id.User != nameOf(t, uint32(os.Getuid()), false) {
			t.Errorf("SetAttr called as %+v (%v), want this process's user", c.id, c.hasID)
		}
	}
}

// Times set on a file while it is written are stored after it is
// closed, which would otherwise set the modification time.
func TestTimesWhileWriting(t *testing.T) {
	m := mountMem(t, newMemBackend(), Options{})
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, []byte("preserved"), 0o640); err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1300000000, 0)
	if err := os.Chtimes(src, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	run(t, "cp", "-p", src, m.path("copy"))
	fi, _ := m.b.Stat(context.Background(), "/copy")
	if !fi.ModTime.Equal(mtime) || fi.Mode != 0o640 || fi.Writing {
		t.Errorf("cp -p: backend mtime %v mode %v writing %v; want %v, -rw-r-----, closed", fi.ModTime, fi.Mode, fi.Writing, mtime)
	}
	if st, err := os.Stat(m.path("copy")); err != nil || !st.ModTime().Equal(mtime) {
		t.Errorf("cp -p: stat %v %v", st, err)
	}

	// A file touched into being: the writer (holding no byte) is closed
	// when the kernel releases it, just after touch exits.
	run(t, "touch", "-d", "@1400000000", m.path("new"))
	want := time.Unix(1400000000, 0)
	if st, err := os.Stat(m.path("new")); err != nil || !st.ModTime().Equal(want) {
		t.Errorf("touch -d of a new file: stat %v %v", st, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		fi, _ := m.b.Stat(context.Background(), "/new")
		if !fi.Writing {
			if !fi.ModTime.Equal(want) {
				t.Errorf("touch -d of a new file: backend mtime %v, want %v", fi.ModTime, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the file touch made is still being written 10 s later")
		}
	}
}

func TestSymlink(t *testing.T) {
	b := newMemBackend()
	b.put("/data", []byte("hello"))
	m := mountMem(t, b, Options{})
	if err := os.Symlink("data", m.path("rel")); err != nil {
		t.Fatal(err)
	}
	run(t, "ln", "-s", "/somewhere/else entirely", m.path("abs"))
	for name, target := range map[string]string{"rel": "data", "abs": "/somewhere/else entirely"} {
		if got, err := os.Readlink(m.path(name)); err != nil || got != target {
			t.Errorf("readlink %s: %q %v, want %q", name, got, err, target)
		}
		if got := strings.TrimSpace(run(t, "readlink", m.path(name))); got != target {
			t.Errorf("readlink(1) %s: %q", name, got)
		}
		st := lstat(t, m.path(name))
		if st.Mode&syscall.S_IFMT != syscall.S_IFLNK || st.Size != int64(len(target)) || st.Blocks != 0 {
			t.Errorf("lstat %s: mode %o size %d blocks %d", name, st.Mode, st.Size, st.Blocks)
		}
		fi, _ := b.Stat(context.Background(), "/"+name)
		if fi.Mode&os.ModeSymlink == 0 || fi.Symlink != target {
			t.Errorf("backend %s: mode %v target %q", name, fi.Mode, fi.Symlink)
		}
		if c := b.callsTo("Symlink", "/"+name); len(c) != 1 || !c[0].hasID {
			t.Errorf("Symlink calls of /%s: %+v", name, c)
		}
	}
	if got, err := os.ReadFile(m.path("rel")); err != nil || string(got) != "hello" {
		t.Errorf("read through the link: %q %v", got, err)
	}
	wantErrno(t, "ln -s over an existing name", os.Symlink("x", m.path("data")), syscall.EEXIST)
	es, err := os.ReadDir(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if (e.Name() == "rel" || e.Name() == "abs") != (e.Type() == os.ModeSymlink) {
			t.Errorf("listing: %s has type %v", e.Name(), e.Type())
		}
	}
}

func TestMknod(t *testing.T) {
	m := mountMem(t, newMemBackend(), Options{})
	ctx := context.Background()
	if err := syscall.Mkfifo(m.path("fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	run(t, "mkfifo", "-m", "600", m.path("fifo2"))
	if err := unix.Mknod(m.path("sock"), syscall.S_IFSOCK|0o600, 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		mode os.FileMode
		st   uint32
	}{
		{"fifo", os.ModeNamedPipe | 0o640, syscall.S_IFIFO | 0o640},
		{"fifo2", os.ModeNamedPipe | 0o600, syscall.S_IFIFO | 0o600},
		{"sock", os.ModeSocket | 0o600, syscall.S_IFSOCK | 0o600},
	} {
		if fi, _ := m.b.Stat(ctx, "/"+c.name); fi.Mode != c.mode {
			t.Errorf("backend %s: mode %v, want %v", c.name, fi.Mode, c.mode)
		}
		if st := lstat(t, m.path(c.name)); st.Mode != c.st || st.Size != 0 || st.Blocks != 0 {
			t.Errorf("lstat %s: mode %o size %d blocks %d, want mode %o", c.name, st.Mode, st.Size, st.Blocks, c.st)
		}
	}
	wantErrno(t, "mkfifo over an existing name", syscall.Mkfifo(m.path("fifo"), 0o600), syscall.EEXIST)
	if out := run(t, "find", m.dir, "-type", "p"); strings.Count(out, "\n") != 2 {
		t.Errorf("find -type p:\n%s", out)
	}

	// The kernel opens a fifo itself: a pipe between processes of this
	// machine, whose bytes never reach the backend.
	r, err := os.OpenFile(m.path("fifo"), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := os.OpenFile(m.path("fifo"), os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	buf := make([]byte, 10)
	if n, err := r.Read(buf); err != nil || string(buf[:n]) != "ping" {
		t.Errorf("read from the fifo: %q %v", buf[:n], err)
	}
	if c := m.b.callsTo("Open", "/fifo"); len(c) != 0 {
		t.Errorf("opening the fifo reached the backend: %+v", c)
	}
	wantErrno(t, "link to a fifo", os.Link(m.path("fifo"), m.path("fifo-link")), syscall.EPERM)
}

func TestMknodDevice(t *testing.T) {
	requireRoot(t) // mknod(2) of a device needs CAP_MKNOD
	m := mountMem(t, newMemBackend(), Options{})
	if err := unix.Mknod(m.path("null"), syscall.S_IFCHR|0o640, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	run(t, "mknod", "-m", "600", m.path("blk"), "b", "7", "0")
	for _, c := range []struct {
		name string
		mode os.FileMode
		st   uint32
		rdev uint64
	}{
		{"null", os.ModeDevice | os.ModeCharDevice | 0o640, syscall.S_IFCHR | 0o640, unix.Mkdev(1, 3)},
		{"blk", os.ModeDevice | 0o600, syscall.S_IFBLK | 0o600, unix.Mkdev(7, 0)},
	} {
		if fi, _ := m.b.Stat(context.Background(), "/"+c.name); fi.Mode != c.mode || fi.Rdev != c.rdev {
			t.Errorf("backend %s: mode %v rdev %#x, want %v %#x", c.name, fi.Mode, fi.Rdev, c.mode, c.rdev)
		}
		if st := lstat(t, m.path(c.name)); st.Mode != c.st || st.Rdev != c.rdev {
			t.Errorf("lstat %s: mode %o rdev %#x, want mode %o rdev %#x", c.name, st.Mode, st.Rdev, c.st, c.rdev)
		}
	}
	// Metadata only: there is no device behind it.
	_, err := os.Open(m.path("null"))
	if err == nil {
		t.Error("opened a device node kept as metadata only")
	}
}

func TestXattrs(t *testing.T) {
	b := newMemBackend()
	b.put("/f", []byte("x"))
	b.mkdirAll("/d")
	m := mountMem(t, b, Options{})
	p := m.path("f")

	get := func(name string) (string, error) {
		buf := make([]byte, 256)
		n, err := unix.Getxattr(p, name, buf)
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	if err := unix.Setxattr(p, "user.color", []byte("blue"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := get("user.color"); err != nil || v != "blue" {
		t.Errorf("getxattr user.color: %q %v", v, err)
	}
	if n, err := unix.Getxattr(p, "user.color", nil); err != nil || n != 4 {
		t.Errorf("getxattr size: %d %v, want 4", n, err)
	}
	_, err := unix.Getxattr(p, "user.color", make([]byte, 2))
	wantErrno(t, "getxattr into a short buffer", err, syscall.ERANGE)

	// XATTR_CREATE and XATTR_REPLACE.
	wantErrno(t, "XATTR_CREATE of an existing attribute", unix.Setxattr(p, "user.color", []byte("red"), unix.XATTR_CREATE), syscall.EEXIST)
	wantErrno(t, "XATTR_REPLACE of a missing attribute", unix.Setxattr(p, "user.size", []byte("L"), unix.XATTR_REPLACE), syscall.ENODATA)
	if err := unix.Setxattr(p, "user.color", []byte("red"), unix.XATTR_REPLACE); err != nil {
		t.Errorf("XATTR_REPLACE of an existing attribute: %v", err)
	}
	if err := unix.Setxattr(p, "user.empty", nil, unix.XATTR_CREATE); err != nil {
		t.Errorf("XATTR_CREATE of a new attribute: %v", err)
	}
	var flags []cairn.XattrFlags
	for _, c := range b.callsTo("SetXattr", "/f") {
		flags = append(flags, c.flags)
	}
	if want := []cairn.XattrFlags{0, cairn.XattrCreate, cairn.XattrReplace, cairn.XattrReplace, cairn.XattrCreate}; !slices.Equal(flags, want) {
		t.Errorf("SetXattr flags %v, want %v", flags, want)
	}
	if v, err := get("user.color"); err != nil || v != "red" {
		t.Errorf("after XATTR_REPLACE: %q %v", v, err)
	}
	if v, err := get("user.empty"); err != nil || v != "" {
		t.Errorf("empty attribute: %q %v", v, err)
	}
	_, xs, _ := b.file("/f")
	if _, ok := xs["user.empty"]; len(xs) != 2 || string(xs["user.color"]) != "red" || !ok {
		t.Errorf("backend keeps %q", xs)
	}

	buf := make([]byte, 256)
	n, err := unix.Listxattr(p, buf)
	if err != nil || string(buf[:n]) != "user.color\x00user.empty\x00" {
		t.Errorf("listxattr: %q %v", buf[:n], err)
	}
	if n, err := unix.Listxattr(p, nil); err != nil || n != len("user.color\x00user.empty\x00") {
		t.Errorf("listxattr size: %d %v", n, err)
	}
	_, err = unix.Listxattr(p, make([]byte, 3))
	wantErrno(t, "listxattr into a short buffer", err, syscall.ERANGE)

	if err := unix.Removexattr(p, "user.color"); err != nil {
		t.Fatal(err)
	}
	_, err = get("user.color")
	wantErrno(t, "getxattr after removexattr", err, syscall.ENODATA)
	wantErrno(t, "removexattr of a missing attribute", unix.Removexattr(p, "user.color"), syscall.ENODATA)

	// On a directory too.
	if err := unix.Setxattr(m.path("d"), "user.owner-team", []byte("storage"), 0); err != nil {
		t.Errorf("setxattr on a directory: %v", err)
	}
	if _, xs, _ := b.file("/d"); string(xs["user.owner-team"]) != "storage" {
		t.Errorf("backend keeps %q on /d", xs)
	}

	// Other namespaces: nothing is kept, and reading security.* finds
	// nothing, without asking the backend.
	gets := len(b.callsTo("GetXattr", "/f"))
	for _, name := range []string{"trusted.x", "security.selinux"} {
		wantErrno(t, "setxattr "+name, unix.Setxattr(p, name, []byte("v"), 0), syscall.ENOTSUP)
		wantErrno(t, "removexattr "+name, unix.Removexattr(p, name), syscall.ENOTSUP)
	}
	for name, want := range map[string]syscall.Errno{
		"security.capability":     syscall.ENODATA,
		"security.selinux":        syscall.ENODATA,
		"system.posix_acl_access": syscall.ENODATA,
		"trusted.x":               syscall.ENOTSUP,
	} {
		_, err := get(name)
		wantErrno(t, "getxattr "+name, err, want)
	}
	r := m.refusals("/f")
	for _, e := range r {
		if e.ContextMap()["rule"] != ruleXattrNS {
			t.Errorf("refusal %v", e.ContextMap())
		}
	}
	if len(r) != 5 { // set and remove of two names, get of trusted.x
		t.Errorf("%d refusals logged, want 5: %v", len(r), r)
	}
	if got := len(b.callsTo("GetXattr", "/f")); got != gets {
		t.Errorf("%d GetXattr calls reached the backend for names outside user.*", got-gets)
	}
	for _, c := range b.calls {
		if strings.Contains(c.op, "Xattr") && !c.hasID {
			t.Errorf("%s %s without an identity", c.op, c.path)
		}
	}
}

// Writes through the mount ask for no extended attribute: the kernel
// checks security.capability before a write through the page cache, and
// a handle open for writing does not use it.
func TestWritesAskNoXattrs(t *testing.T) {
	m := mountMem(t, newMemBackend(), Options{Debug: true})
	f, err := os.Create(m.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if _, err := f.Write([]byte("0123456789")); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	run(t, "sh", "-c", "for i in 1 2 3 4 5; do echo $i; done >> "+m.path("f"))
	ops := map[string]int{}
	for _, e := range m.logs.All() {
		// go-fuse's debug lines: "rx UNIQUE: OPCODE ...".
		if f := strings.Fields(e.Message); len(f) > 2 && f[0] == "rx" {
			ops[f[2]]++
		}
	}
	if ops["WRITE"] < 100 || ops["GETXATTR"] != 0 {
		t.Errorf("requests while writing: %v; want 100 WRITE or more and no GETXATTR", ops)
	}
}

func TestSharedWritableMmapRefused(t *testing.T) {
	m := mountMem(t, newMemBackend(), Options{})
	p := m.path("f")
	data := bytes.Repeat([]byte("cairn"), 1000)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	_, err = unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	wantErrno(t, "shared writable mapping of a file being written", err, syscall.ENODEV)
	// A private mapping copies: nothing reaches the file.
	if got := mapped(t, f, "private", 4096); !bytes.Equal(got, data[:4096]) {
		t.Errorf("private mapping reads %q...", got[:min(len(got), 10)])
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	// An existing file opened for writing (to append).
	f, err = os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	wantErrno(t, "shared writable mapping of a file opened O_RDWR", err, syscall.ENODEV)
	f.Close()

	// Open for reading: a shared mapping reads; writing to it needs a
	// descriptor open for writing (the kernel's EACCES).
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := mapped(t, r, "shared", len(data)); !bytes.Equal(got, data) {
		t.Error("shared read-only mapping does not read the file")
	}
	_, err = unix.Mmap(int(r.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	wantErrno(t, "shared writable mapping of a read-only descriptor", err, syscall.EACCES)
	if got, _, _ := m.b.content("/f"); !bytes.Equal(got, data) {
		t.Error("the file changed")
	}
}

// asUser runs sh -c script as uid:gid with supplementary groups, in /,
// and returns its exit code.
func asUser(t *testing.T, uid, gid uint32, groups []uint32, script string) int {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		t.Logf("as %d: %s: exit %d: %s", uid, script, ee.ExitCode(), out)
		return ee.ExitCode()
	case err != nil:
		t.Fatalf("as %d: %s: %v", uid, script, err)
	}
	return 0
}

// mountShared mounts b for every user of this machine.
func mountShared(t *testing.T, b Backend) *testMount {
	t.Helper()
	m := mountMem(t, b, Options{AllowOther: true})
	// t.TempDir's directories are private to their owner.
	if err := os.Chmod(filepath.Dir(m.dir), 0o755); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestIdentity(t *testing.T) {
	requireRoot(t)
	b := newMemBackend()
	b.put("/mine", []byte("root's"))
	m := mountShared(t, b)
	const other = 4242 // a supplementary group with no name
	if code := asUser(t, nobodyID, nobodyID, []uint32{other, nobodyID}, "echo x > "+m.path("theirs")); code != 0 {
		t.Fatalf("writing as nobody: exit %d", code)
	}
	want := cairn.Identity{User: nameOf(t, nobodyID, false), Groups: []string{nameOf(t, nobodyID, true), "4242"}}
	c := b.callsTo("Create", "/theirs")
	if len(c) != 1 || !c[0].hasID || c[0].id.User != want.User || !slices.Equal(c[0].id.Groups, want.Groups) {
		t.Errorf("Create calls %+v; want one as %+v", c, want)
	}
	if got, _, _ := b.content("/theirs"); string(got) != "x\n" {
		t.Errorf("content %q", got)
	}
	if st := lstat(t, m.path("theirs")); st.Uid != nobodyID || st.Gid != nobodyID {
		t.Errorf("a file nobody made: uid %d gid %d", st.Uid, st.Gid)
	}
	if c := b.callsTo("SetAttr", "/theirs"); len(c) != 0 {
		t.Errorf("writing a new file changed its attributes: %+v", c)
	}

	// This process's own calls carry its identity.
	if err := os.WriteFile(m.path("own"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if c := b.callsTo("Create", "/own"); len(c) != 1 || !c[0].hasID || c[0].id.User != nameOf(t, 0, false) || c[0].id.Groups[0] != nameOf(t, 0, true) {
		t.Errorf("Create calls of this process: %+v", c)
	}

	// access(2) answers by name from the attributes (test(1), not the
	// shell's builtin, asks it).
	b.setOwner("/mine", nameOf(t, 0, false), nameOf(t, 0, true))
	for _, c := range []struct {
		script string
		code   int
	}{
		{"/usr/bin/test -r " + m.path("mine"), 0},
		{"/usr/bin/test -w " + m.path("mine"), 1},
		{"/usr/bin/test -w " + m.path("theirs"), 0},
		{"/usr/bin/test -x " + m.path("theirs"), 1},
	} {
		if code := asUser(t, nobodyID, nobodyID, nil, c.script); code != c.code {
			t.Errorf("as nobody, %s: exit %d, want %d", c.script, code, c.code)
		}
	}
}

// A refusal by the backend's rules or permission checks reaches the
// program as its errno and is logged with the path and the reason.
func TestBackendRefusals(t *testing.T) {
	b := newMemBackend()
	b.put("/f", []byte("x"))
	b.fail["SetAttr /f"] = cairn.E("test.SetAttr", cairn.KindPermission, "/f", "user=nobody: only the owner may change the mode")
	b.fail["Create /g"] = cairn.E("test.Create", cairn.KindAccess, "/g", `user=nobody, access=WRITE, inode="/":root:root:drwxr-xr-x`)
	m := mountMem(t, b, Options{})
	wantErrno(t, "chmod refused", os.Chmod(m.path("f"), 0o600), syscall.EPERM)
	m.wantRefused(t, "/f", "user=nobody: only the owner may change the mode")
	wantErrno(t, "create refused", os.WriteFile(m.path("g"), nil, 0o644), syscall.EACCES)
	m.wantRefused(t, "/g", `user=nobody, access=WRITE, inode="/":root:root:drwxr-xr-x`)
	if fi, _ := b.Stat(context.Background(), "/f"); fi.Mode != 0o644 {
		t.Errorf("mode %v after a refused chmod", fi.Mode)
	}
}

func TestReadOnlyAttributes(t *testing.T) {
	b := newMemBackend()
	b.put("/f", []byte("x"))
	m := mountMem(t, b, Options{ReadOnly: true})
	p := m.path("f")
	wantErrno(t, "chmod", os.Chmod(p, 0o600), syscall.EROFS)
	wantErrno(t, "chown", os.Chown(p, 1, 1), syscall.EROFS)
	wantErrno(t, "utimes", os.Chtimes(p, time.Now(), time.Now()), syscall.EROFS)
	wantErrno(t, "symlink", os.Symlink("f", m.path("l")), syscall.EROFS)
	wantErrno(t, "mkfifo", syscall.Mkfifo(m.path("p"), 0o600), syscall.EROFS)
	wantErrno(t, "setxattr", unix.Setxattr(p, "user.a", []byte("b"), 0), syscall.EROFS)
	if len(b.callsTo("SetAttr", "/f")) != 0 || len(b.callsTo("SetXattr", "/f")) != 0 {
		t.Error("a read-only mount changed attributes")
	}
}

func TestDuFind(t *testing.T) {
	b := newMemBackend()
	sizes := []int{0, 1, 512, 513, 100000}
	var blocks int64
	for i, n := range sizes {
		b.put("/d/f"+strconv.Itoa(i), make([]byte, n))
		blocks += int64(n+511) / 512
	}
	m := mountMem(t, b, Options{})
	if err := os.Symlink("f1", m.path("d/link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(m.path("d/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, n := range sizes {
		if st := lstat(t, m.path("d/f"+strconv.Itoa(i))); st.Blocks != int64(n+511)/512 {
			t.Errorf("f%d of %d bytes: st_blocks %d", i, n, st.Blocks)
		}
	}
	if out := run(t, "du", "-s", "--block-size=512", m.path("d")); !strings.HasPrefix(out, strconv.FormatInt(blocks, 10)+"\t") {
		t.Errorf("du -s: %q, want %d blocks of 512 bytes", out, blocks)
	}
	if out := run(t, "du", "-s", "-b", m.path("d")); !strings.HasPrefix(out, strconv.Itoa(0+1+512+513+100000+len("f1"))+"\t") {
		t.Errorf("du -sb: %q", out)
	}
	for typ, want := range map[string]int{"f": len(sizes), "l": 1, "p": 1, "d": 1} {
		if out := run(t, "find", m.path("d"), "-type", typ); strings.Count(out, "\n") != want {
			t.Errorf("find -type %s:\n%s", typ, out)
		}
	}
	if out := run(t, "find", m.path("d"), "-size", "+100k"); out != "" {
		t.Errorf("find -size +100k: %q", out)
	}
	if out := run(t, "find", m.path("d"), "-size", "+97k"); strings.TrimSpace(out) != m.path("d/f4") {
		t.Errorf("find -size +97k: %q", out)
	}
}

func TestIDMap(t *testing.T) {
	x := newIDMap(1234, 5678)
	for _, c := range []struct {
		name string
		got  any
		want any
	}{
		{"userName(0)", x.userName(0), nameOf(t, 0, false)},
		{"userName(unnamed)", x.userName(4242424), "4242424"},
		{"groupName(unnamed)", x.groupName(4242424), "4242424"},
		{"userID(root's name)", x.userID(nameOf(t, 0, false)), uint32(0)},
		{"userID(decimal)", x.userID("4242424"), uint32(4242424)},
		{"groupID(decimal)", x.groupID("4242425"), uint32(4242425)},
		{"userID(unknown)", x.userID("no-such-user-of-cairn"), uint32(nobodyID)},
		{"groupID(unknown)", x.groupID("no-such-group-of-cairn"), uint32(nobodyID)},
		{"userID(none)", x.userID(""), uint32(1234)},
		{"groupID(none)", x.groupID(""), uint32(5678)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// Lookups are cached, and looked up again once old.
	now := time.Unix(1000, 0)
	x.now = func() time.Time { return now }
	x.userID("cached-user-of-cairn")
	x.mu.Lock()
	x.uids["cached-user-of-cairn"] = idEntry[uint32]{7, now}
	x.mu.Unlock()
	if got := x.userID("cached-user-of-cairn"); got != 7 {
		t.Errorf("cached lookup: %d, want 7", got)
	}
	now = now.Add(idTTL)
	if got := x.userID("cached-user-of-cairn"); got != nobodyID {
		t.Errorf("lookup after %v: %d, want %d", idTTL, got, nobodyID)
	}

	st, ok := readProcStatus(uint32(os.Getpid()))
	gids, _ := os.Getgroups()
	var want []uint32
	for _, g := range gids {
		want = append(want, uint32(g))
	}
	if !ok || st.tgid != uint32(os.Getpid()) || st.fsuid != uint32(os.Geteuid()) || st.fsgid != uint32(os.Getegid()) || !slices.Equal(st.groups, want) {
		t.Errorf("readProcStatus(self) = %+v %v; want tgid %d, fs ids %d:%d, groups %v", st, ok, os.Getpid(), os.Geteuid(), os.Getegid(), want)
	}
	if _, ok := readProcStatus(0); ok {
		t.Error("readProcStatus(0) read something")
	}
	// The groups of a pid whose ids are not the caller's (a pid reused,
	// or of another pid namespace) are not the caller's.
	c := &fuse.Caller{Owner: fuse.Owner{Uid: 4242424, Gid: 4242425}, Pid: uint32(os.Getpid())}
	if id := x.identity(c); id.User != "4242424" || !slices.Equal(id.Groups, []string{"4242425"}) {
		t.Errorf("identity(%+v) = %+v", c, id)
	}
	// The kernel's own requests carry no identity; a caller whose pid is
	// not seen here carries its ids.
	ctx := context.Background()
	if _, ok := cairn.IdentityFrom(x.as(fuse.NewContext(ctx, &fuse.Caller{}))); ok {
		t.Error("a request without credentials got an identity")
	}
	c = &fuse.Caller{Owner: fuse.Owner{Uid: 4242424, Gid: 4242425}}
	if id, ok := cairn.IdentityFrom(x.as(fuse.NewContext(ctx, c))); !ok || id.User != "4242424" || !slices.Equal(id.Groups, []string{"4242425"}) {
		t.Errorf("caller with pid 0: %+v %v", id, ok)
	}
	given := cairn.Identity{User: "given"}
	if id, _ := cairn.IdentityFrom(x.as(cairn.WithIdentity(fuse.NewContext(ctx, c), given))); id.User != "given" {
		t.Errorf("an identity given was replaced by %+v", id)
	}
}
