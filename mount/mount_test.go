package mount

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"cairn"
)

// requireFUSE skips a test that needs FUSE where there is none, except
// in CI, where it fails.
func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs FUSE: %v", err)
		}
		t.Skipf("no FUSE here: %v", err)
	}
}

// testMount is a real mount of an in-memory backend on a temporary
// directory, unmounted when the test ends.
type testMount struct {
	dir  string
	b    *memBackend
	logs *observer.ObservedLogs
}

func mountMem(t *testing.T, b Backend, opts Options) *testMount {
	t.Helper()
	requireFUSE(t)
	core, logs := observer.New(zapcore.DebugLevel)
	opts.Logger = zap.New(core)
	dir := t.TempDir()
	m, err := Mount(context.Background(), b, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if n := FUSEMounts(dir); n != 1 {
		t.Errorf("%s: %d FUSE mounts in /proc/self/mountinfo, want 1", dir, n)
	}
	t.Cleanup(func() {
		done := make(chan error, 1)
		go func() { done <- m.Unmount() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("unmount: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("unmount %s hung; detaching lazily", dir)
			exec.Command("umount", "-l", dir).Run()
		}
		if t.Failed() {
			for _, e := range logs.All() {
				t.Logf("log: %s %s %v", e.Level, e.Message, e.ContextMap())
			}
		}
	})
	mb, _ := b.(*memBackend)
	if nb, ok := b.(noAppend); ok {
		mb = nb.Backend.(*memBackend)
	}
	return &testMount{dir: dir, b: mb, logs: logs}
}

func (m *testMount) path(name string) string { return filepath.Join(m.dir, name) }

// refusals are the "refused" log lines about cairn path p.
func (m *testMount) refusals(p string) []observer.LoggedEntry {
	var r []observer.LoggedEntry
	for _, e := range m.logs.FilterMessage("refused").All() {
		if e.ContextMap()["path"] == p {
			r = append(r, e)
		}
	}
	return r
}

// wantRefused checks that exactly one refusal of p was logged, naming rule.
func (m *testMount) wantRefused(t *testing.T, p, rule string) {
	t.Helper()
	r := m.refusals(p)
	if len(r) != 1 || r[0].ContextMap()["rule"] != rule {
		t.Errorf("refusals of %s = %v, want one with rule %q", p, r, rule)
	}
}

func wantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got %v, want %v (%d)", what, err, want, want)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestWriteReadBack(t *testing.T) {
	m := mountMem(t, newMemBackend(), Options{})
	data := randomBytes(300<<10 + 17)
	if err := os.WriteFile(m.path("a"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(m.path("a"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, want the %d written", len(got), len(data))
	}
	stored, writing, _ := m.b.content("/a")
	if !bytes.Equal(stored, data) || writing {
		t.Errorf("backend holds %d bytes, writing %v; want %d, closed", len(stored), writing, len(data))
	}
	st, err := os.Stat(m.path("a"))
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Size() != int64(len(data)) || st.Mode() != 0o644 || sys.Nlink != 1 ||
		sys.Blksize != ioBlockSize || sys.Blocks != (int64(len(data))+511)/512 ||
		sys.Uid != uint32(os.Getuid()) || sys.Gid != uint32(os.Getgid()) {
		t.Errorf("stat: size %d mode %v nlink %d blksize %d blocks %d uid %d gid %d",
			st.Size(), st.Mode(), sys.Nlink, sys.Blksize, sys.Blocks, sys.Uid, sys.Gid)
	}
	fi, _ := m.b.Stat(context.Background(), "/a")
	if sys.Ino != fi.Inode {
		t.Errorf("inode %d, want the backend's %d", sys.Ino, fi.Inode)
	}
}

func TestCopyAndCompare(t *testing.T) {
	m := mountMem(t, newMemBackend(), Options{})
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, randomBytes(1<<20+4093), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "cp", src, m.path("dst"))
	run(t, "cmp", src, m.path("dst"))
	// Shell redirections dup2 the new file onto stdout and close the
	// original descriptor before writing.
	run(t, "sh", "-c", "echo hello > "+m.path("echo"))
	if got, _ := os.ReadFile(m.path("echo")); string(got) != "hello\n" {
		t.Errorf("echo > file wrote %q", got)
	}
	run(t, "sh", "-c", "ls -l "+m.path("")+" > "+m.path("listing"))
	if got, _ := os.ReadFile(m.path("listing")); !strings.Contains(string(got), "echo") {
		t.Errorf("ls -l > file wrote %q", got)
	}
	// Processes that inherit the descriptor and exit do not end the file;
	// the shell that opened it does.
	run(t, "sh", "-c", "{ /bin/echo a; /bin/echo b; } > "+m.path("group")+"; (/bin/echo c; /bin/echo d) > "+m.path("subshell"))
	for name, want := range map[string]string{"group": "a\nb\n", "subshell": "c\nd\n"} {
		if got, _ := os.ReadFile(m.path(name)); string(got) != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
		if _, writing, _ := m.b.content("/" + name); writing {
			t.Errorf("%s still being written", name)
		}
	}
}

func TestDirectories(t *testing.T) {
	m := mountMem(t, newMemBackend(), Options{})
	if err := os.MkdirAll(m.path("d/e/f"), 0o755); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(m.path("d/e")); err != nil || !st.IsDir() || st.Sys().(*syscall.Stat_t).Nlink != 2 {
		t.Fatalf("stat d/e: %v %v", st, err)
	}
	wantErrno(t, "mkdir existing", os.Mkdir(m.path("d"), 0o755), syscall.EEXIST)
	if err := os.WriteFile(m.path("d/e/f/x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "rmdir non-empty", syscall.Rmdir(m.path("d/e/f")), syscall.ENOTEMPTY)

	// A directory moves with what is in it.
	if err := os.Rename(m.path("d/e"), m.path("moved")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(m.path("moved/f/x")); err != nil || string(got) != "x" {
		t.Errorf("after rename: %q %v", got, err)
	}
	if _, err := os.Stat(m.path("d/e")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old name still there: %v", err)
	}
	if _, ok, _ := m.b.content("/moved/f/x"); ok {
		t.Error("backend: /moved/f/x still being written")
	}

	// A file replaces another.
	os.WriteFile(m.path("old"), []byte("old"), 0o644)
	os.WriteFile(m.path("new"), []byte("new"), 0o644)
	if err := os.Rename(m.path("new"), m.path("old")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(m.path("old")); string(got) != "new" {
		t.Errorf("renamed over: %q, want new", got)
	}
	os.WriteFile(m.path("new"), []byte("again"), 0o644)
	wantErrno(t, "RENAME_NOREPLACE", unix.Renameat2(unix.AT_FDCWD, m.path("new"), unix.AT_FDCWD, m.path("old"), unix.RENAME_NOREPLACE), syscall.EEXIST)
	wantErrno(t, "RENAME_EXCHANGE", unix.Renameat2(unix.AT_FDCWD, m.path("new"), unix.AT_FDCWD, m.path("old"), unix.RENAME_EXCHANGE), syscall.EINVAL)
	if err := unix.Renameat2(unix.AT_FDCWD, m.path("new"), unix.AT_FDCWD, m.path("fresh"), unix.RENAME_NOREPLACE); err != nil {
		t.Errorf("RENAME_NOREPLACE to a free name: %v", err)
	}

	for _, p := range []string{"moved/f/x", "old", "fresh"} {
		if err := os.Remove(m.path(p)); err != nil {
			t.Error(err)
		}
	}
	wantErrno(t, "unlink missing", syscall.Unlink(m.path("old")), syscall.ENOENT)
	for _, p := range []string{"moved/f", "moved", "d"} {
		if err := syscall.Rmdir(m.path(p)); err != nil {
			t.Errorf("rmdir %s: %v", p, err)
		}
	}
	if es, err := os.ReadDir(m.dir); err != nil || len(es) != 0 {
		t.Errorf("left: %v %v", es, err)
	}
	if es, _, _ := m.b.List(context.Background(), "/", "", 10); len(es) != 0 {
		t.Errorf("backend still has %v", es)
	}
}

func TestReaddirPaged(t *testing.T) {
	b := newMemBackend()
	const n = 2500
	for i := range n {
		b.put("/big/f"+strconv.Itoa(i), []byte(strconv.Itoa(i)))
	}
	m := mountMem(t, b, Options{})
	out := run(t, "sh", "-c", "ls "+m.path("big")+" | wc -l")
	if got := strings.TrimSpace(out); got != strconv.Itoa(n) {
		t.Errorf("ls | wc -l = %s, want %d", got, n)
	}
	es, err := os.ReadDir(m.path("big"))
	if err != nil || len(es) != n {
		t.Fatalf("ReadDir: %d entries, %v", len(es), err)
	}
	if es[0].Name() != "f0" || es[n-1].Name() != "f999" || es[1].Name() != "f1" {
		t.Errorf("order: %s %s ... %s", es[0].Name(), es[1].Name(), es[n-1].Name())
	}
	// Rewinding a directory starts the listing over.
	d, err := os.Open(m.path("big"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if first, err := d.Readdirnames(1500); err != nil || len(first) != 1500 {
		t.Fatalf("first 1500 names: %d, %v", len(first), err)
	}
	if _, err := d.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	if all, err := d.Readdirnames(-1); err != nil || len(all) != n {
		t.Errorf("after rewinding: %d names, %v; want %d", len(all), err, n)
	}
	calls := b.listCalls("/big")
	if len(calls) < 2*((n+listPage-1)/listPage) {
		t.Errorf("%d List calls for two listings, want pages", len(calls))
	}
	for _, c := range calls {
		if c.limit > listPage {
			t.Errorf("List asked for %d entries at once", c.limit)
		}
	}
	if got := strings.Count(run(t, "ls", "-la", m.path("big")), "\n"); got != n+3 {
		t.Errorf("ls -la: %d lines, want %d entries, . and .. and the total", got, n)
	}
	// The attributes come with the listing (READDIRPLUS), not from one
	// Stat per entry.
	if s := b.statsUnder("/big"); s > n/10 {
		t.Errorf("%d Stat calls under /big for listings of %d entries", s, n)
	}
}

func TestOverwriteRefused(t *testing.T) {
	m := mountMem(t, newMemBackend(), Options{})
	p := m.path("f")
	if err := os.WriteFile(p, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open for writing without O_TRUNC: %v", err)
	}
	_, err = f.WriteAt([]byte("J"), 0)
	wantErrno(t, "overwrite", err, syscall.EPERM)
	m.wantRefused(t, "/f", ruleOverwrite)
	_, err = f.WriteAt([]byte("!"), 6)
	wantErrno(t, "hole", err, syscall.EPERM)
	if err := f.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if got, _ := os.ReadFile(p); string(got) != "hello" {
		t.Errorf("content %q, want hello unchanged", got)
	}
	if _, writing, _ := m.b.content("/f"); writing {
		t.Error("refused writes left the file open for writing")
	}
	if r := m.refusals("/f"); len(r) != 2 || r[1].ContextMap()["rule"] != ruleHole {
		t.Errorf("refusals: %v", r)
	}
}

func TestAppend(t *testing.T) {
	m := mountMem(t, newMemBackend(), Options{})
	p := m.path("f")
	if err := os.WriteFile(p, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	// At the end of a complete file, through O_WRONLY and O_APPEND.
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(" world"), 5); err != nil {
		t.Errorf("write at the end: %v", err)
	}
	if st, err := os.Stat(p); err != nil || st.Size() != 11 {
		t.Errorf("stat while appending: %v %v", st, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	run(t, "sh", "-c", "echo '!' >> "+p)
	// Another client appends; the kernel's idea of the size is stale, and
	// O_APPEND still writes at the real end.
	m.b.appendRaw("/f", []byte("[other]"))
	run(t, "sh", "-c", "echo again >> "+p)
	want := "hello world!\n[other]again\n"
	if got, _ := os.ReadFile(p); string(got) != want {
		t.Errorf("content %q, want %q", got, want)
	}
	if _, writing, _ := m.b.content("/f"); writing {
		t.Error("still being written after close")
	}

	// O_TRUNC of an empty file, then writing it.
	e := m.path("empty")
	os.WriteFile(e, nil, 0o644)
	run(t, "sh", "-c", "echo filled > "+e)
	if got, _ := os.ReadFile(e); string(got) != "filled\n" {
		t.Errorf("empty file written through O_TRUNC: %q", got)
	}

	// Two writers of one file through this mount: the second is busy.
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write([]byte("1"))
	w2, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w2.Write([]byte("2"))
	wantErrno(t, "second writer", err, syscall.EBUSY)
	w2.Close()
}

func TestAppendUnsupported(t *testing.T) {
	b := newMemBackend()
	b.put("/f", []byte("hello"))
	m := mountMem(t, noAppend{b}, Options{})
	f, err := os.OpenFile(m.path("f"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write([]byte("!"))
	wantErrno(t, "append", err, syscall.EPERM)
	f.Close()
	m.wantRefused(t, "/f", ruleAppendClosed)
	if got, _ := os.ReadFile(m.path("f")); string(got) != "hello" {
		t.Errorf("content %q, want hello unchanged", got)
	}
}

// TestTruncateRefused: a backend that cannot replace a file refuses
// O_TRUNC and truncate to 0 of a non-empty file; every backend refuses a
// truncate to a size other than 0 or the current one.
func TestTruncateRefused(t *testing.T) {
	m := mountMem(t, newMemBackend(), Options{})
	p := m.path("f")
	if err := os.WriteFile(p, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	wantErrno(t, "O_TRUNC of a non-empty file", err, syscall.EPERM)
	m.wantRefused(t, "/f", ruleReplace)
	wantErrno(t, "truncate to 0", os.Truncate(p, 0), syscall.EPERM)
	wantErrno(t, "truncate to 9", os.Truncate(p, 9), syscall.EPERM)
	if err := os.Truncate(p, 5); err != nil {
		t.Errorf("truncate to the current size: %v", err)
	}
	if c := m.b.callsTo("SetAttr", "/f"); len(c) != 0 {
		t.Errorf("truncates changed attributes: %+v", c)
	}
	if got, _ := os.ReadFile(p); string(got) != "hello" {
		t.Errorf("content %q, want hello unchanged", got)
	}
	if len(m.refusals("/f")) != 3 {
		t.Errorf("refusals: %v", m.refusals("/f"))
	}

	// An empty file: O_TRUNC and truncate to 0 change nothing and are fine.
	e := m.path("empty")
	if err := os.WriteFile(e, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(e, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatalf("O_TRUNC of an empty file: %v", err)
	}
	f.Close()
	if err := os.Truncate(e, 0); err != nil {
		t.Errorf("truncate of an empty file to 0: %v", err)
	}

	// A file being written may be "truncated" to the size it has.
	f, err = os.Create(m.path("w"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("abc"))
	if err := f.Truncate(3); err != nil {
		t.Errorf("ftruncate to the size written: %v", err)
	}
	wantErrno(t, "ftruncate below", f.Truncate(1), syscall.EPERM)
	if err := f.Close(); err != nil {
		t.Error(err)
	}
}

func TestHoleRefused(t *testing.T) {
	m := mountMem(t, newMemBackend(), Options{})
	f, err := os.Create(m.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt([]byte("x"), 10)
	wantErrno(t, "hole", err, syscall.EPERM)
	m.wantRefused(t, "/f", ruleHole)
	_, err = f.WriteAt([]byte("x"), 1)
	wantErrno(t, "overwrite while writing", err, syscall.EPERM)
	if _, err := f.WriteAt([]byte("def"), 3); err != nil {
		t.Errorf("write at the end: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(m.path("f")); string(got) != "abcdef" {
		t.Errorf("content %q, want abcdef", got)
	}
}

func TestCloseReportsError(t *testing.T) {
	b := newMemBackend()
	b.closeErr["/bad"] = cairn.E("test.Close", cairn.KindIO, "/bad", "pipeline lost")
	m := mountMem(t, b, Options{})
	f, err := os.Create(m.path("bad"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	dup, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "close", f.Close(), syscall.EIO)
	_, err = syscall.Write(dup, []byte("more"))
	wantErrno(t, "write after a failed close", err, syscall.EIO)
	syscall.Close(dup)
	if e := m.logs.FilterMessage("close failed").All(); len(e) != 1 || e[0].Level != zapcore.ErrorLevel {
		t.Errorf("the failed close was not logged once, at ERROR: %+v", e)
	}

	// After a good close, a write through another descriptor of the same
	// open file appends again, and the last close ends it.
	f, err = os.Create(m.path("good"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("data"))
	dup, _ = syscall.Dup(int(f.Fd()))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, writing, _ := m.b.content("/good"); writing {
		t.Error("close did not end the file")
	}
	if _, err := syscall.Write(dup, []byte("more")); err != nil {
		t.Errorf("write after close: %v", err)
	}
	if err := syscall.Close(dup); err != nil {
		t.Error(err)
	}
	if got, writing, _ := m.b.content("/good"); string(got) != "datamore" || writing {
		t.Errorf("content %q, writing %v; want datamore, closed", got, writing)
	}
}

func TestStatfs(t *testing.T) {
	b := newMemBackend()
	b.stats = cairn.FsStats{Capacity: 10 << 40, Used: 3 << 40, Remaining: 6 << 40}
	m := mountMem(t, b, Options{})
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Bsize != 4096 || st.Blocks != (10<<40)/4096 || st.Bfree != (6<<40)/4096 || st.Bavail != st.Bfree || st.Namelen != 255 {
		t.Errorf("statfs: bsize %d blocks %d bfree %d bavail %d namelen %d", st.Bsize, st.Blocks, st.Bfree, st.Bavail, st.Namelen)
	}
	if out := run(t, "df", "-P", m.dir); !strings.Contains(out, strconv.Itoa(10<<30)) {
		t.Errorf("df: %s", out)
	}
}

func TestStatWhileWriting(t *testing.T) {
	m := mountMem(t, newMemBackend(), Options{})
	f, err := os.Create(m.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := 1; i <= 3; i++ {
		if _, err := f.Write(make([]byte, 10000)); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(m.path("f"))
		if err != nil || st.Size() != int64(i*10000) {
			t.Errorf("stat during write %d: %v %v", i, st, err)
		}
	}
	if _, writing, _ := m.b.content("/f"); !writing {
		t.Error("backend: not being written")
	}
	// utimes on a file this mount is writing is accepted.
	now := time.Now()
	if err := os.Chtimes(m.path("f"), now, now); err != nil {
		t.Errorf("utimes while writing: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(m.path("f")); err != nil || st.Size() != 30000 {
		t.Errorf("stat after close: %v %v", st, err)
	}
}

func TestHardLinkRefused(t *testing.T) {
	m := mountMem(t, newMemBackend(), Options{})
	p := m.path("f")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "link", os.Link(p, m.path("g")), syscall.EPERM)
	m.wantRefused(t, "/g", ruleLink)
	if _, err := os.Lstat(m.path("g")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused link left g: %v", err)
	}
}

func TestReadOnly(t *testing.T) {
	b := newMemBackend()
	b.put("/f", []byte("x"))
	m := mountMem(t, b, Options{ReadOnly: true, Root: "/"})
	if got, err := os.ReadFile(m.path("f")); err != nil || string(got) != "x" {
		t.Errorf("read: %q %v", got, err)
	}
	wantErrno(t, "create", os.WriteFile(m.path("g"), nil, 0o644), syscall.EROFS)
	wantErrno(t, "mkdir", os.Mkdir(m.path("d"), 0o755), syscall.EROFS)
	wantErrno(t, "unlink", os.Remove(m.path("f")), syscall.EROFS)
}

func TestSubdirRoot(t *testing.T) {
	b := newMemBackend()
	b.put("/data/logs/a", []byte("a"))
	m := mountMem(t, b, Options{Root: "/data/logs/"})
	if got, err := os.ReadFile(m.path("a")); err != nil || string(got) != "a" {
		t.Errorf("read: %q %v", got, err)
	}
	if err := os.WriteFile(m.path("b"), []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := b.content("/data/logs/b"); string(got) != "b" {
		t.Errorf("backend /data/logs/b = %q", got)
	}
}

func TestUnlinkWhileOpen(t *testing.T) {
	b := newMemBackend()
	b.put("/f", []byte("still here"))
	m := mountMem(t, b, Options{})
	f, err := os.Open(m.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Remove(m.path("f")); err != nil {
		t.Fatal(err)
	}
	if st, err := f.Stat(); err != nil || st.Size() != 10 {
		t.Errorf("fstat of an unlinked file: %v %v", st, err)
	}
	buf := make([]byte, 20)
	if n, _ := f.ReadAt(buf, 0); string(buf[:n]) != "still here" {
		t.Errorf("read of an unlinked file: %q", buf[:n])
	}
}

func TestErrnoTable(t *testing.T) {
	for k := cairn.KindOther; k <= cairn.KindUnavailable; k++ {
		if errno(&cairn.Error{Kind: k}) == 0 {
			t.Errorf("kind %v has no errno", k)
		}
	}
	for _, c := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{cairn.E("x", cairn.KindNotExist, "/a", ""), syscall.ENOENT},
		{errors.Join(errors.New("wrapped"), cairn.ErrNotEmpty), syscall.ENOTEMPTY},
		{&cairn.Error{Kind: cairn.KindOther, Err: cairn.ErrBusy}, syscall.EBUSY},
		{cairn.ErrNoSpace, syscall.ENOSPC},
		{cairn.ErrUnavailable, syscall.EIO},
		{&os.PathError{Op: "open", Path: "/x", Err: syscall.EACCES}, syscall.EACCES},
		{context.Canceled, syscall.EINTR},
		{errors.ErrUnsupported, syscall.ENOTSUP},
		{errors.New("strange"), syscall.EIO},
	} {
		if got := errno(c.err); got != c.want {
			t.Errorf("errno(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestReadWhileWriting(t *testing.T) {
	m := mountMem(t, newMemBackend(), Options{})
	w, err := os.Create(m.path("log"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write([]byte("abc"))
	// O_DIRECT takes the page cache out, so every read reaches the mount.
	fd, err := syscall.Open(m.path("log"), syscall.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	buf := make([]byte, 100)
	if n, err := syscall.Pread(fd, buf, 0); err != nil || string(buf[:n]) != "abc" {
		t.Fatalf("read: %q %v", buf[:n], err)
	}
	if n, err := syscall.Pread(fd, buf, 3); err != nil || n != 0 {
		t.Fatalf("read at the end: %q %v", buf[:n], err)
	}
	w.Write([]byte("def"))
	if n, err := syscall.Pread(fd, buf, 3); err != nil || string(buf[:n]) != "def" {
		t.Errorf("read after the file grew: %q %v", buf[:n], err)
	}
}

// A reader that read a file to its end reads what was appended since,
// also when the kernel, having dropped its cache at the append's close,
// reads again from the start of the page (as tail -f does).
func TestReadAfterAppend(t *testing.T) {
	m := mountMem(t, newMemBackend(), Options{})
	p := m.path("log")
	if err := os.WriteFile(p, []byte("start\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 100)
	if n, _ := r.ReadAt(buf, 0); string(buf[:n]) != "start\n" {
		t.Fatalf("first read: %q", buf[:n])
	}
	for _, line := range []string{"one\n", "two\n"} {
		w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := r.ReadAt(buf, 0); string(buf[:n]) != "start\none\ntwo\n" {
		t.Errorf("read after the appends: %q", buf[:n])
	}
	// The reader of the file as it was is closed once a newer one reads.
	m.b.mu.Lock()
	readers := m.b.readers
	m.b.mu.Unlock()
	if readers != 1 {
		t.Errorf("%d readers open, want the newest only", readers)
	}
	if st, err := r.Stat(); err != nil || st.Size() != 14 {
		t.Errorf("fstat after the appends: %v %v", st, err)
	}
}

// Bytes this mount's writer has accepted show in stat(2) at once; a
// reader through the mount gets them (the writer flushes them for it),
// never the zeros the kernel would fill a short read with.
func TestReadSeesOwnWriter(t *testing.T) {
	b := newMemBackend()
	b.buffered = true
	m := mountMem(t, b, Options{})
	p := m.path("f")
	w, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 100)
	want := ""
	for _, s := range []string{"abc", "defg", "hi\n"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
		want += s
		if st, err := os.Stat(p); err != nil || st.Size() != int64(len(want)) {
			t.Fatalf("stat while writing: %v %v; want %d bytes", st, err, len(want))
		}
		if n, _ := r.ReadAt(buf, 0); string(buf[:n]) != want {
			t.Errorf("read while writing: %q, want %q", buf[:n], want)
		}
	}
	b.mu.Lock()
	flushes := b.flushes
	b.mu.Unlock()
	if flushes == 0 {
		t.Error("the writer was never flushed for the reader")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != want {
		t.Errorf("after close: %q", got)
	}
}

// TestCloseRefusedLogsInfo: a close refused for a reason a user meets in
// normal use (a full cluster) is ENOSPC to the program and an INFO line
// naming the path and the reason, not an ERROR.
func TestCloseRefusedLogsInfo(t *testing.T) {
	b := newMemBackend()
	b.closeErr["/full"] = cairn.E("test.Close", cairn.KindNoSpace, "/full", "no blockd has room")
	m := mountMem(t, b, Options{})
	f, err := os.Create(m.path("full"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "close", f.Close(), syscall.ENOSPC)
	e := m.logs.FilterMessage("close failed").All()
	if len(e) != 1 || e[0].Level != zapcore.InfoLevel || e[0].ContextMap()["path"] != "/full" || e[0].ContextMap()["rule"] != "no blockd has room" {
		t.Errorf("the refused close: logged %+v, want one INFO line with the path and the reason", e)
	}
}
