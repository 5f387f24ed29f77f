package metad

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"cairn/metad/metapb"
)

// TestCheckFindsDamage damages copies of a healthy store one way at a time
// and expects Check to name each damage, while the healthy store is clean.
func TestCheckFindsDamage(t *testing.T) {
	m := openCfg(t, Config{})
	ctx := context.Background()
	fakeNode(t, m, "DS-1")
	must(t, m.Mkdirs(ctx, "/x/y", 0o755))
	blocks := writeFile(t, ctx, m, "/x/f", "c", "DS-1", false, testBlock, 10)
	writeFile(t, ctx, m, "/x/y/g", "c", "DS-1", false, 5)
	writeFile(t, ctx, m, "/open", "w", "", true, 0)
	must(t, m.SetXattr(ctx, "/x/f", "user.a", []byte("1"), 0))
	must(t, m.Symlink(ctx, "f", "/x/ln"))
	ino := func(p string) uint64 { return stat(t, m, p).Inode }
	x, y, f, g, open := ino("/x"), ino("/x/y"), ino("/x/f"), ino("/x/y/g"), ino("/open")
	healthy := filepath.Join(t.TempDir(), "healthy")
	must(t, m.Checkpoint(ctx, healthy))
	r := mustCheck(t, healthy)
	if r.Inodes != 7 || r.Blocks != 4 || r.Writing != 1 || r.Xattrs != 1 || r.Reachable != 7 {
		t.Errorf("healthy store counted %+v", r)
	}

	cases := []struct {
		name   string
		damage func(b *pebble.Batch)
		want   string
	}{
		{"inode lost", func(b *pebble.Batch) { _ = b.Delete(inodeKey(g), nil) }, "inode " + strconv.FormatUint(g, 10) + " is missing"},
		{"entry lost", func(b *pebble.Batch) { _ = b.Delete(entryKey(y, "g"), nil) }, "has no directory entry"},
		{"detached cycle", func(b *pebble.Batch) {
			in, _ := m.st.inode(x)
			in.Parent = y
			_ = setInode(b, in)
			_ = b.Delete(entryKey(RootIno, "x"), nil)
			_ = b.Set(entryKey(y, "x"), u64(x), nil)
		}, "of 7 inodes are reachable from the root"},
		{"block of no file", func(b *pebble.Batch) { _ = b.Set(blockKey(blocks[1].ID+1000), u64(f), nil) }, "does not list it"},
		{"block in two files", func(b *pebble.Batch) {
			in, _ := m.st.inode(g)
			_ = b.Set(fileBlockKey(g, 1), encodeBlock(blocks[0]), nil)
			in.Blocks, in.Size = 2, in.Size+blocks[0].Len
			_ = setInode(b, in)
		}, "whose block key names inode"},
		{"size", func(b *pebble.Batch) {
			blk := blocks[1]
			blk.Len = 11
			_ = b.Set(fileBlockKey(f, 1), encodeBlock(blk), nil)
		}, "blocks hold"},
		{"inode counter", func(b *pebble.Batch) { _ = b.Set(counterKey("inode"), u64(open), nil) }, "counter inode"},
		{"block counter", func(b *pebble.Batch) { _ = b.Set(counterKey("block"), u64(uint64(blocks[1].ID)), nil) }, "counter block"},
		{"files counter", func(b *pebble.Batch) { _ = b.Set(counterKey("files"), u64(3), nil) }, "counter files is 3"},
		{"writing index", func(b *pebble.Batch) { _ = b.Delete(writingKey(open), nil) }, "indexed as being written: false"},
		{"xattr count", func(b *pebble.Batch) { _ = b.Delete(xattrKey(f, "user.a"), nil) }, "counts 1 attributes, the store holds 0"},
		{"unknown key", func(b *pebble.Batch) { _ = b.Set([]byte("zzz"), nil, nil) }, "unknown key"},
		{"bad name", func(b *pebble.Batch) { _ = b.Set(entryKey(RootIno, "a/b"), u64(f), nil) }, "name contains '/'"},
	}
	for _, c := range cases {
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
			if r.Clean() || !strings.Contains(out.String(), c.want) || !strings.Contains(out.String(), "is CORRUPT") {
				t.Errorf("check after %s: want a problem saying %q; got:\n%s", c.name, c.want, out.String())
			}
		})
	}
}

// TestLayoutVersions: a store of a newer layout is refused with a clear
// message; a layout 1 store is upgraded, its files being written indexed.
func TestLayoutVersions(t *testing.T) {
	m := openCfg(t, Config{})
	ctx := context.Background()
	writeFile(t, ctx, m, "/open", "w", "", true)
	dir := m.cfg.Dir
	must(t, m.Close())

	setLayout := func(v uint32, drop bool) {
		db, err := pebble.Open(filepath.Join(dir, storeDir), storeOptions(1<<20))
		must(t, err)
		b := db.NewBatch()
		_ = b.Set(layoutKey, []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}, nil)
		if drop {
			_ = deletePrefix(db, b, []byte{prefixWriting})
		}
		must(t, b.Commit(pebble.Sync))
		must(t, db.Close())
	}
	setLayout(LayoutVersion+1, false)
	if _, err := Open(Config{Dir: dir}); err == nil || !strings.Contains(err.Error(), "newer than this metad") {
		t.Fatalf("open of a newer layout: %v", err)
	}
	if _, err := Check(dir); err == nil || !strings.Contains(err.Error(), "newer than this cairn") {
		t.Fatalf("check of a newer layout: %v", err)
	}
	setLayout(1, true)
	m2, err := Open(Config{Dir: dir})
	must(t, err)
	if fi, _ := m2.Stat(ctx, "/open"); !fi.Writing {
		t.Error("upgraded store lost the file being written")
	}
	mustCheckOpen(t, m2)
	must(t, m2.Close())

	// A layout 2 store (no orphans) is upgraded by its version alone.
	setLayout(2, false)
	m3, err := Open(Config{Dir: dir})
	must(t, err)
	if fi, _ := m3.Stat(ctx, "/open"); !fi.Writing {
		t.Error("a store upgraded from layout 2 lost the file being written")
	}
	if v, err := m3.st.get(layoutKey); err != nil || len(v) != 4 || v[3] != LayoutVersion {
		t.Errorf("layout after the upgrade from 2: %v, %v; want %d", v, err, LayoutVersion)
	}
	mustCheckOpen(t, m3)

	// A layout 3 store's files do not count their names (nlink 0): each
	// has one, and the upgrade to 4 only raises the version.
	writeFileAt := func() uint64 {
		m, err := Open(Config{Dir: dir})
		must(t, err)
		defer m.Close()
		writeFile(t, ctx, m, "/old", "w", "", false)
		return stat(t, m, "/old").Inode
	}
	ino := writeFileAt()
	db, err := pebble.Open(filepath.Join(dir, storeDir), storeOptions(1<<20))
	must(t, err)
	in := &metapb.Inode{}
	v, closer, err := db.Get(inodeKey(ino))
	must(t, err)
	must(t, proto.Unmarshal(v, in))
	must(t, closer.Close())
	in.Nlink = 0
	b := db.NewBatch()
	must(t, setInode(b, in))
	_ = b.Set(layoutKey, []byte{0, 0, 0, 3}, nil)
	must(t, b.Commit(pebble.Sync))
	must(t, db.Close())
	m4, err := Open(Config{Dir: dir})
	must(t, err)
	if fi := stat(t, m4, "/old"); fi.Nlink != 1 {
		t.Errorf("a layout 3 file has %d names, want 1", fi.Nlink)
	}
	if v, err := m4.st.get(layoutKey); err != nil || len(v) != 4 || v[3] != 4 {
		t.Errorf("layout after the upgrade from 3: %v, %v; want 4", v, err)
	}
	must(t, m4.Link(ctx, "/old", "/old2"))
	must(t, m4.Delete(ctx, "/old", false))
	if fi := stat(t, m4, "/old2"); fi.Nlink != 1 || fi.Inode != ino {
		t.Errorf("a layout 3 file after a link and an unlink: %+v", fi)
	}
	mustCheckOpen(t, m4)
}
