package metad

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"cairn"
	"cairn/internal/versionfile"
)

// crashable is a metad whose store lives on a crashable memory file
// system, so a test can cut it where a crash would: crash returns the
// metad a restart would find, with exactly what was synced.
type crashable struct {
	t   *testing.T
	dir string
	fs  *vfs.MemFS
	m   *Metad
}

func openCrashable(t *testing.T) *crashable {
	t.Helper()
	dir := t.TempDir()
	must(t, versionfile.Write(dir, map[string]string{
		"namespaceID": "ns-crash", "layoutVersion": strconv.Itoa(LayoutVersion), "storageType": "METAD",
	}))
	fs := vfs.NewCrashableMem()
	must(t, fs.MkdirAll(filepath.Join(dir, storeDir), 0o755))
	// The directories are made durable, as on a disk formatted long ago.
	for d := filepath.Join(dir, storeDir); ; d = filepath.Dir(d) {
		f, err := fs.OpenDir(filepath.Dir(d))
		must(t, err)
		must(t, f.Sync())
		must(t, f.Close())
		if d == "/" {
			break
		}
	}
	st, err := openStore(filepath.Join(dir, storeDir), true, 1<<20, fs)
	must(t, err)
	must(t, st.close())
	c := &crashable{t: t, dir: dir, fs: fs}
	c.m = c.open(fs)
	return c
}

func (c *crashable) open(fs *vfs.MemFS) *Metad {
	c.t.Helper()
	m, err := Open(Config{Dir: c.dir, storeFS: fs})
	must(c.t, err)
	c.t.Cleanup(func() { _ = m.Close() })
	registerNodes(c.t, m, 3)
	return m
}

// crash cuts the store at this moment, keeping only what was synced, and
// opens a new metad on what is left; the old one is closed.
func (c *crashable) crash() *Metad {
	c.t.Helper()
	cut := c.fs.CrashClone(vfs.CrashCloneCfg{})
	_ = c.m.Close()
	c.fs = cut
	c.m = c.open(cut)
	return c.m
}

// TestAddBlockLostInACrashNeverReusesIDs: AddBlock is not synced by
// itself, so a crash right after it loses it (the writer was told the
// block, no more), but the block ID and stamp it handed out may already
// be on blockds: the restarted metad must never hand them out again, or a
// stale replica of the lost block, at the same ID and stamp, would pass
// for a replica of another file's block. (With the counters stored in the
// AddBlock's own batch, as before the reservation, the new block got the
// lost one's ID and stamp.)
func TestAddBlockLostInACrashNeverReusesIDs(t *testing.T) {
	c := openCrashable(t)
	ctx := context.Background()
	opts := cairn.CreateOptions{Client: "w", Replication: 1}
	w := cairn.WriterRef{Path: "/f", Client: "w"}
	_, err := c.m.Create(ctx, "/f", opts)
	must(t, err)
	lost, err := c.m.AddBlock(ctx, w, nil, nil)
	must(t, err)
	// The first AddBlock reserves a range of IDs (a synced batch); the next
	// ones, inside it, are not synced.
	must(t, c.m.AbandonBlock(ctx, w, lost.Block))
	syncs := c.m.stats.walSyncs.Load()
	lost, err = c.m.AddBlock(ctx, w, nil, nil)
	must(t, err)
	if got := c.m.stats.walSyncs.Load() - syncs; got != 0 {
		t.Fatalf("AddBlock inside the reserved range synced the WAL %d times, want 0", got)
	}

	m := c.crash()
	fb, err := m.BlockLocations(ctx, cairn.FileRef{Path: "/f"})
	must(t, err)
	if len(fb.Blocks) != 0 {
		t.Fatalf("after the crash the file has blocks %v; the unsynced AddBlock should be lost", fb.Blocks)
	}
	if !fb.Writing {
		t.Fatal("after the crash the file is closed; its synced Create left it open")
	}
	again, err := m.AddBlock(ctx, w, nil, nil)
	must(t, err)
	if again.ID <= lost.ID || again.GenStamp <= lost.GenStamp {
		t.Fatalf("after the crash AddBlock handed out %v; the lost one was %v: IDs and stamps must only grow", again.Block, lost.Block)
	}
	// The writer's next call names the lost block: refused, nothing changes.
	b := lost.Block
	b.Len = 10
	if err := m.Complete(ctx, w, &b, lost.Locations...); err == nil {
		t.Fatal("Complete naming the block lost in the crash succeeded")
	}
}

// TestAddBlockMadeDurableByTheNextSyncedCall: every acknowledgement that
// depends on an AddBlock is a later synced batch — Complete, Fsync (hflush,
// hsync) — and Pebble's WAL is written in order, so once that call
// returns a crash keeps the block.
func TestAddBlockMadeDurableByTheNextSyncedCall(t *testing.T) {
	for _, then := range []string{"complete", "fsync", "another file's create"} {
		t.Run(then, func(t *testing.T) {
			c := openCrashable(t)
			ctx := context.Background()
			w := cairn.WriterRef{Path: "/f", Client: "w"}
			_, err := c.m.Create(ctx, "/f", cairn.CreateOptions{Client: "w", Replication: 1})
			must(t, err)
			first, err := c.m.AddBlock(ctx, w, nil, nil) // reserves IDs: synced
			must(t, err)
			must(t, c.m.AbandonBlock(ctx, w, first.Block))
			lb, err := c.m.AddBlock(ctx, w, nil, nil) // not synced
			must(t, err)
			b := lb.Block
			b.Len = 4096
			switch then {
			case "complete":
				must(t, c.m.Complete(ctx, w, &b, lb.Locations...))
			case "fsync":
				must(t, c.m.Fsync(ctx, w, b))
			default:
				_, err := c.m.Create(ctx, "/g", cairn.CreateOptions{Client: "other"})
				must(t, err)
			}
			m := c.crash()
			fb, err := m.BlockLocations(ctx, cairn.FileRef{Path: "/f"})
			must(t, err)
			if len(fb.Blocks) != 1 || fb.Blocks[0].ID != lb.ID {
				t.Fatalf("after %s and a crash the file has blocks %v, want %v", then, fb.Blocks, lb.Block)
			}
			if then != "another file's create" && fb.Size != 4096 {
				t.Fatalf("after %s and a crash the file holds %d bytes, want 4096", then, fb.Size)
			}
		})
	}
}

// TestCreateClosed: a file created closed is complete at once, in one
// synced write; its creator claims the lease with its first AddBlock,
// nobody else can, and not once somebody else wrote it.
func TestCreateClosed(t *testing.T) {
	c := openCrashable(t)
	m := c.m
	ctx := context.Background()

	syncs := m.stats.walSyncs.Load()
	fi, err := m.Create(ctx, "/empty", cairn.CreateOptions{Client: "a", Closed: true})
	must(t, err)
	if fi.Writing {
		t.Fatal("a file created closed shows as being written")
	}
	if got := m.stats.walSyncs.Load() - syncs; got != 1 {
		t.Fatalf("Create closed cost %d WAL syncs, want 1", got)
	}
	// Nothing lost in a crash right after: the file is there, complete.
	m = c.crash()
	fi, err = m.Stat(ctx, "/empty")
	must(t, err)
	if fi.Writing || fi.Size != 0 {
		t.Fatalf("after a crash the file created closed is %+v, want complete and empty", fi)
	}
	// Anyone may append to it, as to any closed file.
	_, _, err = m.Append(ctx, "/empty", "b")
	must(t, err)
	must(t, m.Complete(ctx, cairn.WriterRef{FileID: fi.Inode, Path: "/empty", Client: "b"}, nil))

	fi, err = m.Create(ctx, "/f", cairn.CreateOptions{Client: "a", Closed: true})
	must(t, err)
	if _, err := m.Create(ctx, "/x", cairn.CreateOptions{Client: "a", Closed: true, Overwrite: true}); cairn.KindOf(err) != cairn.KindInvalid {
		t.Fatalf("Create closed with overwrite: %v, want KindInvalid", err)
	}
	other := cairn.WriterRef{FileID: fi.Inode, Path: "/f", Client: "b", Claim: true}
	if _, err := m.AddBlock(ctx, other, nil, nil); cairn.KindOf(err) != cairn.KindBusy {
		t.Fatalf("another client's claim: %v, want KindBusy", err)
	}
	unclaimed := cairn.WriterRef{FileID: fi.Inode, Path: "/f", Client: "a"}
	if _, err := m.AddBlock(ctx, unclaimed, nil, nil); cairn.KindOf(err) != cairn.KindPermission {
		t.Fatalf("AddBlock of the creator without a claim: %v, want KindPermission", err)
	}
	w := unclaimed
	w.Claim = true
	lb, err := m.AddBlock(ctx, w, nil, nil)
	must(t, err)
	if fi, err := m.Stat(ctx, "/f"); err != nil || !fi.Writing {
		t.Fatalf("after the claim: %+v, %v; want the file being written", fi, err)
	}
	if _, _, err := m.Append(ctx, "/f", "b"); cairn.KindOf(err) != cairn.KindBusy {
		t.Fatalf("another client's append of the claimed file: %v, want KindBusy", err)
	}
	b := lb.Block
	b.Len = 100
	must(t, m.Complete(ctx, unclaimed, &b, lb.Locations...))
	if fi, err := m.Stat(ctx, "/f"); err != nil || fi.Writing || fi.Size != 100 {
		t.Fatalf("after Complete: %+v, %v; want 100 bytes, closed", fi, err)
	}
	// The claim was used up: the creator cannot claim it again.
	if _, err := m.AddBlock(ctx, w, nil, nil); cairn.KindOf(err) != cairn.KindBusy {
		t.Fatalf("a second claim: %v, want KindBusy", err)
	}

	// Somebody else wrote the file before the creator's first block: the
	// creator's claim is refused, nothing changes.
	fi, err = m.Create(ctx, "/g", cairn.CreateOptions{Client: "a", Closed: true})
	must(t, err)
	_, _, err = m.Append(ctx, "/g", "b")
	must(t, err)
	bw := cairn.WriterRef{FileID: fi.Inode, Path: "/g", Client: "b"}
	lb, err = m.AddBlock(ctx, bw, nil, nil)
	must(t, err)
	b = lb.Block
	b.Len = 7
	must(t, m.Complete(ctx, bw, &b, lb.Locations...))
	before := dump(t, m)
	if _, err := m.AddBlock(ctx, cairn.WriterRef{FileID: fi.Inode, Path: "/g", Client: "a", Claim: true}, nil, nil); cairn.KindOf(err) != cairn.KindBusy {
		t.Fatalf("the creator's claim after another client wrote the file: %v, want KindBusy", err)
	}
	if after := dump(t, m); after != before {
		t.Fatal("a refused claim changed the store")
	}
}
