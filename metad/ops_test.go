package metad

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"testing"
	"time"

	"cairn"
)

// fakeNode registers a blockd with room, so AddBlock has a target.
func fakeNode(t testing.TB, m *Metad, id string) {
	t.Helper()
	ctx := context.Background()
	if _, err := m.Register(ctx, cairn.Registration{Node: cairn.Node{StorageID: id, DataAddr: "127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Heartbeat(ctx, cairn.Heartbeat{StorageID: id, Capacity: 1 << 40, Remaining: 1 << 40}); err != nil {
		t.Fatal(err)
	}
}

const testBlock = 64 << 10

// writeFile writes a file of blocks of the given lengths (all but the last
// full) by client, each block reported by node, and closes it unless open.
func writeFile(t testing.TB, ctx context.Context, m *Metad, path, client, node string, open bool, lens ...int64) []cairn.Block {
	t.Helper()
	if _, err := m.Create(ctx, path, cairn.CreateOptions{Client: client, BlockSize: testBlock, Replication: 2}); err != nil {
		t.Fatal(err)
	}
	var prev *cairn.Block
	var out []cairn.Block
	for _, n := range lens {
		lb, err := m.AddBlock(ctx, cairn.WriterRef{Path: path, Client: client}, prev, nil)
		if err != nil {
			t.Fatal(err)
		}
		b := lb.Block
		b.Len = n
		out = append(out, b)
		if node != "" {
			must(t, m.BlocksReceived(ctx, node, finalized(b)))
		}
		prev = &out[len(out)-1]
	}
	if !open {
		must(t, m.Complete(ctx, cairn.WriterRef{Path: path, Client: client}, prev))
	}
	return out
}

func TestPermissionsAllow(t *testing.T) {
	m := fixture(t, Config{})
	su := context.Background()
	str := func(s string) *string { return &s }
	mode := func(p fs.FileMode) *fs.FileMode { return &p }

	fi, err := m.Create(alice, "/home/alice/n", cairn.CreateOptions{Client: "a", Perm: 0o640})
	if err != nil || fi.Owner != "alice" || fi.Group != "staff" || fi.Mode != 0o640 {
		t.Fatalf("alice's create: %+v, %v; want alice:staff -rw-r-----", fi, err)
	}
	if _, _, err := m.List(carol, "/home/alice", "", 0); err != nil {
		t.Errorf("carol (staff) lists drwxr-x--- /home/alice: %v", err)
	}
	if _, err := m.BlockLocations(carol, cairn.FileRef{Path: "/home/alice/f"}); err != nil {
		t.Errorf("carol (staff) reads -rw-r----- f: %v", err)
	}
	must(t, m.Mkdir(as("dave", "supergroup"), "/home/alice/dave", 0o700))

	// A setgid directory passes its group on, and setgid to directories.
	must(t, m.Mkdir(su, "/sg", 0o777|fs.ModeSetgid))
	if _, err := m.SetAttr(su, "/sg", cairn.Attr{Group: str("proj")}); err != nil {
		t.Fatal(err)
	}
	if fi, err := m.Create(bob, "/sg/f", cairn.CreateOptions{Client: "b"}); err != nil || fi.Group != "proj" {
		t.Errorf("bob's file in setgid /sg: group %q, %v; want proj", fi.Group, err)
	}
	must(t, m.Mkdir(bob, "/sg/d", 0o755))
	if fi, _ := m.Stat(bob, "/sg/d"); fi.Group != "proj" || fi.Mode&fs.ModeSetgid == 0 {
		t.Errorf("bob's directory in setgid /sg: %v %s; want setgid, group proj", fi.Mode, fi.Group)
	}

	// Sticky: the owner of the entry may remove it.
	must(t, m.Delete(alice, "/tmp/af", false))

	// The owner changes the group to one of its groups; chmod g+s by an
	// owner outside the group drops the setgid bit, as Linux does.
	if fi, err := m.SetAttr(as("alice", "staff", "staff2"), "/pub/af", cairn.Attr{Group: str("staff2")}); err != nil || fi.Group != "staff2" {
		t.Errorf("alice's chgrp to staff2: %q, %v", fi.Group, err)
	}
	if fi, err := m.SetAttr(as("alice", "other"), "/pub/af", cairn.Attr{Perm: mode(0o755 | fs.ModeSetgid)}); err != nil || fi.Mode != 0o755 {
		t.Errorf("chmod g+s by an owner outside the group: %v, %v; want -rwxr-xr-x", fi.Mode, err)
	}

	// Mkdirs gives the directories on the way u+wx.
	must(t, m.Mkdirs(alice, "/home/alice/p/q/r", 0o500))
	for p, want := range map[string]fs.FileMode{"/home/alice/p": 0o700, "/home/alice/p/q": 0o700, "/home/alice/p/q/r": 0o500} {
		if fi, _ := m.Stat(alice, p); fi.Mode.Perm() != want || fi.Owner != "alice" {
			t.Errorf("%s: %v %s, want %v owned by alice", p, fi.Mode, fi.Owner, want)
		}
	}
	must(t, m.Rename(alice, "/home/alice/d", "/pub/d2"))
	must(t, m.Delete(alice, "/pub/d2", true))

	// With checking off, anyone does anything; owners are still recorded.
	off := reopen(t, m, Config{NoPermissions: true})
	must(t, off.Mkdir(bob, "/home/alice/bob", 0o700))
	if fi, _ := off.Stat(bob, "/home/alice/bob"); fi.Owner != "bob" {
		t.Errorf("owner with checking off: %s, want bob", fi.Owner)
	}
	must(t, off.Delete(bob, "/home", true))
	mustCheckOpen(t, off)
}

func TestSetAttrSymlinkMknod(t *testing.T) {
	m := openCfg(t, Config{Replication: 3})
	ctx := context.Background()
	writeFile(t, ctx, m, "/f", "c", "", false)
	p, o, g, rep := fs.ModeSetuid|0o751, "alice", "staff", 2
	mt, at := time.Unix(1e9, 5), time.Unix(2e9, 7)
	fi, err := m.SetAttr(ctx, "/f", cairn.Attr{Perm: &p, Owner: &o, Group: &g, ModTime: &mt, AccessTime: &at, Replication: &rep})
	must(t, err)
	want := fmt.Sprint(p, o, g, mt.UnixNano(), at.UnixNano(), rep)
	if got := fmt.Sprint(fi.Mode, fi.Owner, fi.Group, fi.ModTime.UnixNano(), fi.AccessTime.UnixNano(), fi.Replication); got != want {
		t.Errorf("SetAttr returned %s, want %s", got, want)
	}
	must(t, m.Symlink(ctx, "../some/where", "/ln"))
	must(t, m.Mknod(ctx, "/fifo", fs.ModeNamedPipe|0o600, 0))
	must(t, m.Mknod(ctx, "/sock", fs.ModeSocket|0o600, 0))
	must(t, m.Mknod(ctx, "/tty", fs.ModeDevice|fs.ModeCharDevice|0o620, 0))
	must(t, m.Mknod(ctx, "/empty", 0o644, 0))
	m = reopen(t, m, Config{Replication: 3})
	if fi, _ := m.Stat(ctx, "/f"); fmt.Sprint(fi.Mode, fi.Owner, fi.Group, fi.ModTime.UnixNano(), fi.AccessTime.UnixNano(), fi.Replication) != want {
		t.Errorf("after restart /f is %+v", fi)
	}
	checks := map[string]func(cairn.FileInfo) bool{
		"/ln": func(fi cairn.FileInfo) bool {
			return fi.Mode == fs.ModeSymlink|0o777 && fi.Symlink == "../some/where" && fi.Size == 13
		},
		"/fifo": func(fi cairn.FileInfo) bool { return fi.Mode == fs.ModeNamedPipe|0o600 },
		"/sock": func(fi cairn.FileInfo) bool { return fi.Mode == fs.ModeSocket|0o600 },
		"/tty":  func(fi cairn.FileInfo) bool { return fi.Mode == fs.ModeDevice|fs.ModeCharDevice|0o620 },
		"/empty": func(fi cairn.FileInfo) bool {
			return fi.Mode == 0o644 && !fi.Writing && fi.Replication == 3 && fi.Size == 0
		},
	}
	for p, ok := range checks {
		if fi, err := m.Stat(ctx, p); err != nil || !ok(fi) {
			t.Errorf("%s: %+v, %v", p, fi, err)
		}
	}
	mustCheckOpen(t, m)
}

func TestXattrs(t *testing.T) {
	m := openCfg(t, Config{})
	ctx := context.Background()
	must(t, m.Mkdirs(ctx, "/d", 0o755))
	writeFile(t, ctx, m, "/d/f", "c", "", false)
	must(t, m.SetXattr(ctx, "/d/f", "user.b", []byte("2"), cairn.XattrCreate))
	must(t, m.SetXattr(ctx, "/d/f", "user.a", []byte("1"), 0))
	must(t, m.SetXattr(ctx, "/d/f", "user.a", []byte("one"), cairn.XattrReplace))
	must(t, m.SetXattr(ctx, "/d", "user.dir", nil, 0))
	if v, err := m.GetXattr(ctx, "/d/f", "user.a"); err != nil || string(v) != "one" {
		t.Errorf("user.a = %q, %v", v, err)
	}
	if names, err := m.ListXattrs(ctx, "/d/f"); err != nil || !slices.Equal(names, []string{"user.a", "user.b"}) {
		t.Errorf("ListXattrs = %q, %v", names, err)
	}
	if v, err := m.GetXattr(ctx, "/d", "user.dir"); err != nil || len(v) != 0 {
		t.Errorf("empty attribute = %q, %v", v, err)
	}
	must(t, m.RemoveXattr(ctx, "/d/f", "user.b"))
	if names, _ := m.ListXattrs(ctx, "/d/f"); !slices.Equal(names, []string{"user.a"}) {
		t.Errorf("after removal: %q", names)
	}
	// Renames keep them; deletes take them along.
	must(t, m.Rename(ctx, "/d/f", "/g"))
	if v, _ := m.GetXattr(ctx, "/g", "user.a"); string(v) != "one" {
		t.Errorf("after rename: %q", v)
	}
	must(t, m.Delete(ctx, "/g", false))
	must(t, m.Delete(ctx, "/d", true))
	if d := dump(t, m); containsKeyPrefix(d, prefixXattr) {
		t.Errorf("attributes outlive their inodes:\n%s", d)
	}
	mustCheckOpen(t, m)
}

func containsKeyPrefix(dump string, p byte) bool {
	for _, l := range splitLines(dump) {
		if len(l) > 1 && l[1] == p {
			return true
		}
	}
	return false
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}

func TestContentSummary(t *testing.T) {
	m := openCfg(t, Config{})
	ctx := context.Background()
	fakeNode(t, m, "DS-1")
	must(t, m.Mkdirs(ctx, "/top/a/b", 0o755))
	must(t, m.Mkdirs(ctx, "/top/c", 0o755))
	writeFile(t, ctx, m, "/top/f1", "c", "DS-1", false, testBlock, 100)   // 65636 bytes, replication 2
	writeFile(t, ctx, m, "/top/a/b/f2", "c", "DS-1", false, 10)           // 10 bytes
	writeFile(t, ctx, m, "/top/c/open", "c", "DS-1", true, testBlock, 50) // being written: counted as far as recorded
	must(t, m.Symlink(ctx, "f1", "/top/ln"))
	must(t, m.Mkdir(ctx, "/outside", 0o755))
	writeFile(t, ctx, m, "/outside/x", "c", "DS-1", false, 7)
	cs, err := m.ContentSummary(ctx, "/top")
	must(t, err)
	// The open file's last block is not settled: its recorded length is 0.
	want := cairn.ContentSummary{Length: testBlock + 100 + 10 + testBlock, Files: 4, Dirs: 4, SpaceConsumed: 2 * (testBlock + 100 + 10 + testBlock)}
	if cs != want {
		t.Errorf("ContentSummary(/top) = %+v, want %+v", cs, want)
	}
	if cs, _ := m.ContentSummary(ctx, "/top/f1"); cs != (cairn.ContentSummary{Length: testBlock + 100, Files: 1, SpaceConsumed: 2 * (testBlock + 100)}) {
		t.Errorf("ContentSummary of a file: %+v", cs)
	}
	// A directory wider than any page.
	for i := range 3000 {
		must(t, m.Mkdir(ctx, fmt.Sprintf("/top/c/d%04d", i), 0o755))
	}
	if cs, _ := m.ContentSummary(ctx, "/top/c"); cs.Dirs != 3001 || cs.Files != 1 {
		t.Errorf("ContentSummary(/top/c) = %+v, want 3001 directories and 1 file", cs)
	}
}

// TestResolveParent: resolveParent (for callers without an identity to
// check) finds the directory holding a path's last name.
func TestResolveParent(t *testing.T) {
	m := openCfg(t, Config{})
	ctx := context.Background()
	must(t, m.Mkdirs(ctx, "/a/b", 0o755))
	writeFile(t, ctx, m, "/a/f", "c", "", false)
	if dir, name, err := m.resolveParent("test", "/a/b/new"); err != nil || dir.Name != "b" || name != "new" {
		t.Errorf("resolveParent(/a/b/new) = %v %q %v", dir, name, err)
	}
	for p, want := range map[string]error{"/": cairn.ErrInvalid, "/x/y": cairn.ErrNotExist, "/a/f/z": cairn.ErrNotDir, "/a/../b": cairn.ErrInvalid} {
		if _, _, err := m.resolveParent("test", p); !errors.Is(err, want) {
			t.Errorf("resolveParent(%s) = %v, want kind %q", p, err, want.(*cairn.Error).Kind)
		}
	}
}
