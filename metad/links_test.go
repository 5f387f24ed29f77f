package metad

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"cairn"
)

// checkNow checks a checkpoint of m's store, while m serves on.
func checkNow(t *testing.T, m *Metad) *CheckReport {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ckpt")
	must(t, m.Checkpoint(context.Background(), dir))
	return mustCheck(t, dir)
}

// namesOf stats path and checks it is ino with want names.
func namesOf(t *testing.T, m *Metad, path string, ino uint64, want int) {
	t.Helper()
	fi := stat(t, m, path)
	if fi.Inode != ino || fi.Nlink != want {
		t.Fatalf("%s: inode %d with %d names; want inode %d with %d", path, fi.Inode, fi.Nlink, ino, want)
	}
	if _, name := cairn.Split(path); fi.Name != name {
		t.Fatalf("%s is described as %q", path, fi.Name)
	}
}

// TestHardLinks: link, unlink and rename of files with several names; the
// blocks go with the last name only, and the check follows every step.
func TestHardLinks(t *testing.T) {
	m := openCfg(t, Config{})
	ctx := context.Background()
	fakeNode(t, m, "DS-1")
	must(t, m.Mkdirs(ctx, "/d/e", 0o755))
	blocks := writeFile(t, ctx, m, "/a", "c", "DS-1", false, testBlock, 10)
	ino := stat(t, m, "/a").Inode
	namesOf(t, m, "/a", ino, 1)

	must(t, m.Link(ctx, "/a", "/d/b"))
	must(t, m.Link(ctx, "/d/b", "/d/e/c"))
	namesOf(t, m, "/a", ino, 3)
	namesOf(t, m, "/d/b", ino, 3)
	es, _, err := m.List(ctx, "/d", "", 10)
	must(t, err)
	if len(es) != 2 || es[0].Name != "b" || es[0].Inode != ino || es[0].Nlink != 3 {
		t.Fatalf("list of /d: %+v", es)
	}
	if r := checkNow(t, m); r.Links != 2 || r.Entries != 5 {
		t.Fatalf("check counted %d other names, %d entries; want 2, 5", r.Links, r.Entries)
	}

	for _, c := range []struct {
		src, dst string
		want     error
	}{
		{"/d", "/x", cairn.ErrPermission},
		{"/a", "/d/b", cairn.ErrExist},
		{"/missing", "/x", cairn.ErrNotExist},
		{"/a", "/missing/x", cairn.ErrNotExist},
		{"/a", "/a/x", cairn.ErrNotDir},
	} {
		if err := m.Link(ctx, c.src, c.dst); !errors.Is(err, c.want) {
			t.Errorf("link %s %s: %v, want %v", c.src, c.dst, err, c.want)
		}
	}
	if err := m.Link(as("nobody"), "/a", "/d/x"); !errors.Is(err, cairn.ErrAccess) {
		t.Errorf("link into a directory the caller may not write: %v, want ErrAccess", err)
	}

	// Rename between two names of one file does nothing.
	before := dump(t, m)
	must(t, m.Rename(ctx, "/a", "/d/b"))
	if dump(t, m) != before {
		t.Fatal("rename between two names of one file changed the store")
	}
	// The primary name goes: another is promoted; the data stays.
	must(t, m.Delete(ctx, "/a", false))
	namesOf(t, m, "/d/b", ino, 2)
	if len(freedOn(m, "DS-1")) != 0 {
		t.Fatal("blocks freed while the file has names")
	}
	if fb, err := m.BlockLocations(ctx, cairn.FileRef{Path: "/d/e/c"}); err != nil || fb.Size != testBlock+10 {
		t.Fatalf("the file by another name: %+v, %v", fb, err)
	}
	checkNow(t, m)
	// Renames of a primary and of another name.
	must(t, m.Rename(ctx, "/d/e/c", "/c"))
	must(t, m.Rename(ctx, "/d/b", "/d/e/b"))
	namesOf(t, m, "/c", ino, 2)
	namesOf(t, m, "/d/e/b", ino, 2)
	checkNow(t, m)
	// A rename over a name of a file with others removes only that name.
	writeFile(t, ctx, m, "/other", "c", "DS-1", false, 5)
	must(t, m.Rename(ctx, "/other", "/c"))
	namesOf(t, m, "/d/e/b", ino, 1)
	if len(freedOn(m, "DS-1")) != 0 {
		t.Fatal("a rename over one of two names freed the file")
	}
	checkNow(t, m)

	// Two names in one subtree, removed by one recursive delete.
	must(t, m.Link(ctx, "/d/e/b", "/d/b2"))
	must(t, m.Link(ctx, "/d/e/b", "/keep"))
	must(t, m.Delete(ctx, "/d", true))
	namesOf(t, m, "/keep", ino, 1)
	if len(freedOn(m, "DS-1")) != 0 {
		t.Fatal("a recursive delete freed a file with a name outside it")
	}
	checkNow(t, m)
	must(t, m.Mkdir(ctx, "/d", 0o755))
	must(t, m.Link(ctx, "/keep", "/d/1"))
	must(t, m.Rename(ctx, "/keep", "/d/2"))
	must(t, m.Delete(ctx, "/d", true))
	freed := freedOn(m, "DS-1")
	if len(freed) != 2 || !freed[blocks[0].ID] || !freed[blocks[1].ID] {
		t.Fatalf("the last names' delete freed %v, want %v", freed, blocks)
	}
	if _, err := m.BlockLocations(ctx, cairn.FileRef{ID: ino}); !errors.Is(err, cairn.ErrNotExist) {
		t.Fatalf("the freed file by inode: %v", err)
	}
	if r := checkNow(t, m); r.Links != 0 || r.Inodes != 2 { // the root and /c
		t.Fatalf("after the last name: %d other names, %d inodes", r.Links, r.Inodes)
	}

	// Symlinks and special files may have several names too.
	must(t, m.Symlink(ctx, "target", "/s"))
	must(t, m.Link(ctx, "/s", "/s2"))
	if fi := stat(t, m, "/s2"); fi.Symlink != "target" || fi.Nlink != 2 {
		t.Fatalf("second name of a symlink: %+v", fi)
	}
	mustCheckOpen(t, m)
}

// TestLinksOfOpenFiles: the last name of a file written or held goes, the
// file stays an orphan until its writer closes it and every holder
// releases it, also when the holder unlinked another name than the last.
func TestLinksOfOpenFiles(t *testing.T) {
	m := openCfg(t, Config{})
	ctx := context.Background()
	fakeNode(t, m, "DS-1")
	blocks := writeFile(t, ctx, m, "/f", "w", "DS-1", false, 100)
	ino := stat(t, m, "/f").Inode
	must(t, m.Link(ctx, "/f", "/g"))

	// mount-1 has the file open and unlinks one name; another client
	// removes the other without holding it: mount-1 still reads it.
	must(t, m.Unlink(ctx, "/f", "mount-1"))
	checkNow(t, m)
	must(t, m.Delete(ctx, "/g", false))
	if freedOn(m, "DS-1")[blocks[0].ID] {
		t.Fatal("a held file was freed at its last name's delete")
	}
	if fb, err := m.BlockLocations(ctx, cairn.FileRef{ID: ino}); err != nil || fb.Size != 100 {
		t.Fatalf("held file by inode: %+v, %v", fb, err)
	}
	if r := checkNow(t, m); r.Orphans != 1 {
		t.Fatalf("%d orphans, want 1", r.Orphans)
	}
	must(t, m.Release(ctx, ino, "mount-1"))
	if !freedOn(m, "DS-1")[blocks[0].ID] {
		t.Fatal("the last release did not free the file")
	}

	// A hold on a file that keeps a name ends with its release.
	writeFile(t, ctx, m, "/h", "w", "DS-1", false, 7)
	ino = stat(t, m, "/h").Inode
	must(t, m.Link(ctx, "/h", "/i"))
	must(t, m.Unlink(ctx, "/h", "mount-1"))
	must(t, m.Release(ctx, ino, "mount-1"))
	if len(freedOn(m, "DS-1")) != 0 {
		t.Fatal("a release freed a file that has a name")
	}
	if _, err := m.st.get(orphanKey(ino)); !isNotFound(err) {
		t.Fatal("the hold outlived its release")
	}
	namesOf(t, m, "/i", ino, 1)

	// A file being written loses both names; its writer's close frees it.
	fi, err := m.Create(ctx, "/w", cairn.CreateOptions{Client: "c", BlockSize: testBlock})
	must(t, err)
	must(t, m.Link(ctx, "/w", "/w2"))
	wr := cairn.WriterRef{FileID: fi.Inode, Path: "/w", Client: "c"}
	lb, err := m.AddBlock(ctx, wr, nil, nil)
	must(t, err)
	must(t, m.Delete(ctx, "/w2", false))
	must(t, m.Delete(ctx, "/w", false))
	b := lb.Block
	b.Len = 5
	must(t, m.BlocksReceived(ctx, "DS-1", finalized(b)))
	checkNow(t, m)
	must(t, m.Complete(ctx, wr, &b))
	if !freedOn(m, "DS-1")[b.ID] {
		t.Fatal("the writer's close did not free a file without names")
	}
	mustCheckOpen(t, m)
}

// TestReplace: Create with Overwrite makes an existing file a new empty
// version at the same inode, keeping its names and attributes, and frees
// the old blocks; a file written by another client is busy until its
// writer passes the soft limit.
func TestReplace(t *testing.T) {
	clk := newFakeClock()
	m := openCfg(t, leaseConfig(clk))
	ctx := context.Background()
	fakeNode(t, m, "DS-1")
	old := writeFile(t, ctx, m, "/f", "c1", "DS-1", false, testBlock, 99)
	mode := fs.FileMode(0o640)
	_, err := m.SetAttr(ctx, "/f", cairn.Attr{Perm: &mode})
	must(t, err)
	must(t, m.SetXattr(ctx, "/f", "user.k", []byte("v"), 0))
	must(t, m.Link(ctx, "/f", "/g"))
	was := stat(t, m, "/f")

	clk.Add(time.Second)
	fi, err := m.Create(ctx, "/f", cairn.CreateOptions{Client: "c2", Overwrite: true, Perm: 0o777, BlockSize: 2 * testBlock, Replication: 1})
	must(t, err)
	if fi.Inode != was.Inode || fi.Size != 0 || !fi.Writing || fi.Mode != was.Mode || fi.Owner != was.Owner ||
		fi.BlockSize != was.BlockSize || fi.Replication != was.Replication || fi.Nlink != 2 || !fi.ModTime.After(was.ModTime) {
		t.Fatalf("replaced file %+v; was %+v", fi, was)
	}
	if v, err := m.GetXattr(ctx, "/g", "user.k"); err != nil || string(v) != "v" {
		t.Fatalf("attribute after the replace: %q, %v", v, err)
	}
	freed := freedOn(m, "DS-1")
	if len(freed) != 2 || !freed[old[0].ID] || !freed[old[1].ID] {
		t.Fatalf("replace freed %v, want the old blocks %v", freed, old)
	}
	if fb, err := m.BlockLocations(ctx, cairn.FileRef{ID: was.Inode}); err != nil || fb.Size != 0 || len(fb.Blocks) != 0 || !fb.Writing {
		t.Fatalf("the new version: %+v, %v", fb, err)
	}
	checkNow(t, m)

	// Another client may not replace it while c2 writes it...
	if _, err := m.Create(ctx, "/g", cairn.CreateOptions{Client: "c3", Overwrite: true}); !errors.Is(err, cairn.ErrBusy) {
		t.Fatalf("replace of a file another client writes: %v, want ErrBusy", err)
	}
	// ...c2 writes the new version and closes it.
	w := cairn.WriterRef{FileID: fi.Inode, Path: "/f", Client: "c2"}
	lb, err := m.AddBlock(ctx, w, nil, nil)
	must(t, err)
	b := lb.Block
	b.Len = 3
	must(t, m.BlocksReceived(ctx, "DS-1", finalized(b)))
	must(t, m.Complete(ctx, w, &b))
	if got := stat(t, m, "/g"); got.Size != 3 || got.Writing {
		t.Fatalf("new version after close: %+v", got)
	}

	// Past the soft limit another client takes the file over.
	_, err = m.Create(ctx, "/f", cairn.CreateOptions{Client: "c2", Overwrite: true})
	must(t, err)
	clk.Add(2 * time.Minute)
	if _, err := m.Create(ctx, "/f", cairn.CreateOptions{Client: "c3", Overwrite: true}); err != nil {
		t.Fatalf("replace of an abandoned file: %v", err)
	}
	if !freedOn(m, "DS-1")[b.ID] {
		t.Fatal("the taken-over version's block was not freed")
	}
	must(t, m.Complete(ctx, cairn.WriterRef{FileID: fi.Inode, Client: "c3"}, nil))

	// Refusals; a missing file is made.
	must(t, m.Mkdir(ctx, "/dir", 0o777))
	must(t, m.Symlink(ctx, "f", "/sl"))
	for _, c := range []struct {
		ctx  context.Context
		path string
		want error
	}{
		{ctx, "/dir", cairn.ErrIsDir},
		{ctx, "/sl", cairn.ErrInvalid},
		{as("nobody"), "/f", cairn.ErrAccess},
	} {
		before := dump(t, m)
		if _, err := m.Create(c.ctx, c.path, cairn.CreateOptions{Client: "c4", Overwrite: true}); !errors.Is(err, c.want) {
			t.Errorf("replace of %s: %v, want %v", c.path, err, c.want)
		}
		if dump(t, m) != before {
			t.Errorf("a refused replace of %s changed the store", c.path)
		}
	}
	nfi, err := m.Create(ctx, "/dir/new", cairn.CreateOptions{Client: "c4", Overwrite: true, Perm: 0o600})
	must(t, err)
	if nfi.Mode != 0o600 || !nfi.Writing || nfi.Nlink != 1 {
		t.Fatalf("an overwriting create of a new file: %+v", nfi)
	}
	mustCheckOpen(t, m)
}

// TestCheckFindsLinkDamage: the check names a lost link key, an entry no
// name accounts for, and a count of names that disagrees.
func TestCheckFindsLinkDamage(t *testing.T) {
	m := openCfg(t, Config{})
	ctx := context.Background()
	fakeNode(t, m, "DS-1")
	must(t, m.Mkdir(ctx, "/d", 0o755))
	writeFile(t, ctx, m, "/f", "c", "DS-1", false, 10)
	must(t, m.Link(ctx, "/f", "/d/g"))
	f := stat(t, m, "/f").Inode
	healthy := filepath.Join(t.TempDir(), "healthy")
	must(t, m.Checkpoint(ctx, healthy))
	d := stat(t, m, "/d").Inode
	for _, c := range []struct {
		name   string
		damage func(b *pebble.Batch)
		want   string
	}{
		{"link key lost", func(b *pebble.Batch) { _ = b.Delete(linkKey(f, d, "g"), nil) }, "no link key names this one"},
		{"entry lost", func(b *pebble.Batch) { _ = b.Delete(entryKey(d, "g"), nil) }, "without an entry"},
		{"count", func(b *pebble.Batch) {
			in, _ := m.st.inode(f)
			in.Nlink = 3
			_ = setInode(b, in)
		}, "counts 3 names, the store holds 2"},
		{"stray name", func(b *pebble.Batch) { _ = b.Set(linkKey(f, d, "zz"), nil, nil) }, "has a name \"zz\" in directory"},
		{"orphan with names", func(b *pebble.Batch) {
			in, _ := m.st.inode(f)
			in.Parent = 0
			_ = setInode(b, in)
			_ = b.Set(orphanKey(f), nil, nil)
		}, "unlinked inode"},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			must(t, Restore(healthy, dir, false))
			db, err := pebble.Open(filepath.Join(dir, storeDir), storeOptions(1<<20))
			must(t, err)
			b := db.NewBatch()
			c.damage(b)
			must(t, b.Commit(pebble.Sync))
			must(t, db.Close())
			r, err := Check(dir)
			must(t, err)
			var out strings.Builder
			r.Write(&out)
			if r.Clean() || !strings.Contains(out.String(), c.want) {
				t.Errorf("check after %s: want a problem saying %q; got:\n%s", c.name, c.want, out.String())
			}
		})
	}
}
