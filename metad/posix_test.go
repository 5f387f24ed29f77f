package metad

import (
	"context"
	"errors"
	"io/fs"
	"testing"
	"time"

	"cairn"
	"cairn/metad/metapb"
)

// TestChangeTime: every change of an inode sets its ctime, and only its
// own changes: chmod, chown, utimes, setxattr and removexattr of the
// inode; rename of it; an entry made or removed in a directory (and its
// mtime with it); a file's close after writing.
func TestChangeTime(t *testing.T) {
	clk := newFakeClock()
	m := openCfg(t, Config{Clock: clk})
	ctx := context.Background()
	must(t, m.Mkdir(ctx, "/d", 0o755))
	must(t, m.Mkdir(ctx, "/e", 0o755))
	if _, err := m.Create(ctx, "/d/f", cairn.CreateOptions{Client: "c1"}); err != nil {
		t.Fatal(err)
	}
	must(t, m.Complete(ctx, cairn.WriterRef{Path: "/d/f", Client: "c1"}, nil))
	stat := func(p string) cairn.FileInfo {
		t.Helper()
		fi, err := m.Stat(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	step := func(what string, fn func() error, changed ...string) {
		t.Helper()
		before := map[string]cairn.FileInfo{}
		for _, p := range []string{"/d", "/e", "/d/f", "/e/f"} {
			if fi, err := m.Stat(ctx, p); err == nil {
				before[p] = fi
			}
		}
		clk.Add(time.Second)
		now := clk.Now()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		for p, was := range before {
			fi, err := m.Stat(ctx, p)
			if err != nil {
				continue
			}
			want := was.ChangeTime
			for _, c := range changed {
				if c == p {
					want = now
				}
			}
			if !fi.ChangeTime.Equal(want) {
				t.Errorf("%s: %s ctime %v, want %v", what, p, fi.ChangeTime, want)
			}
		}
	}
	step("chmod", func() error { _, err := m.SetAttr(ctx, "/d/f", cairn.Attr{Perm: ptr(fs.FileMode(0o600))}); return err }, "/d/f")
	step("chown", func() error { _, err := m.SetAttr(ctx, "/d/f", cairn.Attr{Owner: ptr("alice")}); return err }, "/d/f")
	step("utimes", func() error {
		_, err := m.SetAttr(ctx, "/d/f", cairn.Attr{ModTime: ptr(time.Unix(1e9, 0))})
		return err
	}, "/d/f")
	if fi := stat("/d/f"); !fi.ModTime.Equal(time.Unix(1e9, 0)) {
		t.Errorf("utimes: mtime %v", fi.ModTime)
	}
	step("setxattr", func() error { return m.SetXattr(ctx, "/d/f", "user.a", []byte("1"), 0) }, "/d/f")
	step("setxattr again", func() error { return m.SetXattr(ctx, "/d/f", "user.a", []byte("2"), 0) }, "/d/f")
	step("removexattr", func() error { return m.RemoveXattr(ctx, "/d/f", "user.a") }, "/d/f")
	step("rename", func() error { return m.Rename(ctx, "/d/f", "/e/f") }, "/d", "/e", "/e/f")
	step("mkdir", func() error { return m.Mkdir(ctx, "/d/sub", 0o755) }, "/d")
	step("rmdir", func() error { return m.Delete(ctx, "/d/sub", false) }, "/d")
	step("append and close", func() error {
		if _, _, err := m.Append(ctx, "/e/f", "c2"); err != nil {
			return err
		}
		return m.Complete(ctx, cairn.WriterRef{Path: "/e/f", Client: "c2"}, nil)
	}, "/e/f")
	if fi := stat("/e/f"); !fi.ModTime.Equal(fi.ChangeTime) {
		t.Errorf("close: mtime %v, ctime %v", fi.ModTime, fi.ChangeTime)
	}
	step("unlink", func() error { return m.Delete(ctx, "/e/f", false) }, "/e")
}

func ptr[T any](v T) *T { return &v }

// TestSubdirs: a directory's st_nlink is 2 plus its subdirectories,
// through mkdir, mkdirs, rmdir, recursive delete and renames of
// directories (between parents, within one, over an empty directory),
// and a file changes nothing.
func TestSubdirs(t *testing.T) {
	m := openCfg(t, Config{})
	ctx := context.Background()
	nlink := func(p string) int {
		t.Helper()
		fi, err := m.Stat(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Nlink
	}
	check := func(what string, want map[string]int) {
		t.Helper()
		for p, n := range want {
			if got := nlink(p); got != n {
				t.Errorf("%s: nlink of %s is %d, want %d", what, p, got, n)
			}
		}
	}
	check("new store", map[string]int{"/": 2})
	must(t, m.Mkdirs(ctx, "/a/b/c", 0o755))
	must(t, m.Mkdir(ctx, "/a/x", 0o755))
	if _, err := m.Create(ctx, "/a/file", cairn.CreateOptions{Client: "c"}); err != nil {
		t.Fatal(err)
	}
	must(t, m.Mknod(ctx, "/a/fifo", fs.ModeNamedPipe|0o644, 0))
	check("made", map[string]int{"/": 3, "/a": 4, "/a/b": 3, "/a/b/c": 2, "/a/file": 1})
	must(t, m.Rename(ctx, "/a/b/c", "/c"))
	check("moved up", map[string]int{"/": 4, "/a/b": 2})
	must(t, m.Rename(ctx, "/a/x", "/a/y"))
	check("renamed in place", map[string]int{"/a": 4})
	must(t, m.Mkdir(ctx, "/a/empty", 0o755))
	must(t, m.Rename(ctx, "/a/y", "/a/empty"))
	check("over an empty directory in the same parent", map[string]int{"/a": 4})
	must(t, m.Mkdir(ctx, "/empty", 0o755))
	must(t, m.Rename(ctx, "/a/empty", "/empty"))
	check("over an empty directory in another parent", map[string]int{"/": 5, "/a": 3})
	must(t, m.Rename(ctx, "/a/file", "/file"))
	check("a file moved", map[string]int{"/": 5, "/a": 3})
	must(t, m.Delete(ctx, "/empty", false))
	check("rmdir", map[string]int{"/": 4})
	must(t, m.Delete(ctx, "/a", true))
	check("recursive delete", map[string]int{"/": 3})
	mustCheckOpen(t, m)
}

// TestSubdirsCountedAtStart: a store written before directories counted
// their subdirectories (no mark, no counts) is counted once at start.
func TestSubdirsCountedAtStart(t *testing.T) {
	m := openCfg(t, Config{})
	ctx := context.Background()
	must(t, m.Mkdirs(ctx, "/a/b/c", 0o755))
	must(t, m.Mkdirs(ctx, "/a/d", 0o755))
	if _, err := m.Create(ctx, "/a/f", cairn.CreateOptions{Client: "c"}); err != nil {
		t.Fatal(err)
	}
	// Make it an old store: no counts, no mark.
	b := m.st.db.NewBatch()
	err := m.st.eachInode([]byte{prefixInode}, func(in *metapb.Inode) error {
		in.Subdirs = 0
		return setInode(b, in)
	})
	must(t, err)
	must(t, b.Delete(subdirsKey, nil))
	must(t, b.Commit(nil))
	must(t, b.Close())
	if fi, _ := m.Stat(ctx, "/a"); fi.Nlink != 2 {
		t.Fatalf("the old store's /a has nlink %d", fi.Nlink)
	}
	m = reopen(t, m, Config{})
	for p, n := range map[string]int{"/": 3, "/a": 4, "/a/b": 3, "/a/b/c": 2, "/a/d": 2} {
		if fi, err := m.Stat(ctx, p); err != nil || fi.Nlink != n {
			t.Errorf("after the count: %s nlink %d (%v), want %d", p, fi.Nlink, err, n)
		}
	}
	mustCheckOpen(t, m)
}

// TestSetAttrRules: Linux's rules for chown, chgrp and times.
func TestSetAttrRules(t *testing.T) {
	m := openCfg(t, Config{})
	su := context.Background()
	alice, bob, carol := as("alice", "staff", "extra"), as("bob", "users"), as("carol", "staff")
	must(t, m.Mkdir(su, "/pub", 0o777))
	if _, err := m.Create(alice, "/pub/f", cairn.CreateOptions{Client: "c", Perm: 0o664}); err != nil {
		t.Fatal(err)
	}
	must(t, m.Complete(alice, cairn.WriterRef{Path: "/pub/f", Client: "c"}, nil))
	for _, c := range []struct {
		what string
		ctx  context.Context
		a    cairn.Attr
		want error
	}{
		{"owner chowns to itself", alice, cairn.Attr{Owner: ptr("alice")}, nil},
		{"non-owner chowns to the current owner", bob, cairn.Attr{Owner: ptr("alice")}, cairn.ErrPermission},
		{"owner chowns to another", alice, cairn.Attr{Owner: ptr("bob")}, cairn.ErrPermission},
		{"owner chgrps to the current group", alice, cairn.Attr{Group: ptr("staff")}, nil},
		{"owner chgrps to a group it is in", alice, cairn.Attr{Group: ptr("extra")}, nil},
		{"owner chgrps to a group it is not in", alice, cairn.Attr{Group: ptr("users")}, cairn.ErrPermission},
		{"non-owner chgrps to the current group", carol, cairn.Attr{Group: ptr("extra")}, cairn.ErrPermission},
		{"non-owner with write permission touches", carol, cairn.Attr{TimesNow: true}, nil},
		{"non-owner without write permission touches", bob, cairn.Attr{TimesNow: true}, cairn.ErrAccess},
		{"non-owner with write permission sets times", carol, cairn.Attr{ModTime: ptr(time.Unix(1e9, 0))}, cairn.ErrPermission},
		{"owner sets times", alice, cairn.Attr{ModTime: ptr(time.Unix(1e9, 0))}, nil},
		{"superuser chowns", su, cairn.Attr{Owner: ptr("bob")}, nil},
	} {
		if c.what == "non-owner with write permission touches" {
			// carol is in the file's group again, with write permission.
			if _, err := m.SetAttr(alice, "/pub/f", cairn.Attr{Group: ptr("staff")}); err != nil {
				t.Fatal(err)
			}
		}
		before, _ := m.Stat(su, "/pub/f")
		fi, err := m.SetAttr(c.ctx, "/pub/f", c.a)
		switch {
		case c.want == nil && err != nil:
			t.Errorf("%s: %v", c.what, err)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%s: %v, want %v", c.what, err, c.want.(*cairn.Error).Kind)
		case c.want != nil:
			if after, _ := m.Stat(su, "/pub/f"); after != before {
				t.Errorf("%s: refused, but changed %+v to %+v", c.what, before, after)
			}
		case c.a.TimesNow && !fi.ModTime.After(before.ModTime):
			t.Errorf("%s: mtime %v, was %v", c.what, fi.ModTime, before.ModTime)
		}
	}
}

// TestAccessAndRdev: Access is Stat refused without the permission asked
// for; Mknod keeps a device's number and nothing else's.
func TestAccessAndRdev(t *testing.T) {
	m := openCfg(t, Config{})
	su := context.Background()
	must(t, m.Mkdir(su, "/pub", 0o755))
	if _, err := m.Create(su, "/pub/f", cairn.CreateOptions{Client: "c", Perm: 0o644}); err != nil {
		t.Fatal(err)
	}
	bob := as("bob", "users")
	if fi, err := m.Access(bob, "/pub/f", cairn.AccessRead); err != nil || fi.Name != "f" {
		t.Errorf("read access: %+v %v", fi, err)
	}
	if _, err := m.Access(bob, "/pub/f", cairn.AccessWrite); !errors.Is(err, cairn.ErrAccess) {
		t.Errorf("write access of root's 0644 file: %v, want ErrAccess", err)
	}
	if _, err := m.Access(bob, "/pub/missing", cairn.AccessWrite); !errors.Is(err, cairn.ErrNotExist) {
		t.Errorf("access of nothing: %v", err)
	}
	if _, err := m.Access(bob, "/pub/f", 8); !errors.Is(err, cairn.ErrInvalid) {
		t.Errorf("access mode 8: %v", err)
	}
	must(t, m.Mknod(su, "/pub/tty", fs.ModeDevice|fs.ModeCharDevice|0o620, 0x8801))
	must(t, m.Mknod(su, "/pub/fifo", fs.ModeNamedPipe|0o620, 0x8801))
	if fi, _ := m.Stat(su, "/pub/tty"); fi.Rdev != 0x8801 {
		t.Errorf("device rdev %#x", fi.Rdev)
	}
	if fi, _ := m.Stat(su, "/pub/fifo"); fi.Rdev != 0 {
		t.Errorf("fifo rdev %#x", fi.Rdev)
	}
}
