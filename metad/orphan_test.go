package metad

import (
	"context"
	"errors"
	"testing"
	"time"

	"cairn"
)

// freedOn returns the blocks queued for deletion on node.
func freedOn(m *Metad, node string) map[cairn.BlockID]bool {
	out := map[cairn.BlockID]bool{}
	for _, b := range m.blocks.takeDeletes(node, 0) {
		out[b.ID] = true
	}
	return out
}

// TestWriterBoundToInode: a writer names its file by inode, so renaming
// the file or a directory above it, or replacing it by a rename, does not
// disturb it; a writer whose file was unlinked goes on, and the file's
// blocks are freed when it closes.
func TestWriterBoundToInode(t *testing.T) {
	m := openCfg(t, Config{})
	ctx := context.Background()
	fakeNode(t, m, "DS-1")
	must(t, m.Mkdirs(ctx, "/logs", 0o755))
	fi, err := m.Create(ctx, "/logs/app.log", cairn.CreateOptions{Client: "c", BlockSize: testBlock})
	must(t, err)
	w := cairn.WriterRef{FileID: fi.Inode, Path: "/logs/app.log", Client: "c"}
	lb, err := m.AddBlock(ctx, w, nil, nil)
	must(t, err)
	first := lb.Block
	first.Len = testBlock
	must(t, m.Rename(ctx, "/logs/app.log", "/logs/app.log.1"))
	must(t, m.Rename(ctx, "/logs", "/old"))
	lb, err = m.AddBlock(ctx, w, &first, nil) // the path it names is gone
	must(t, err)
	second := lb.Block
	second.Len = 10
	must(t, m.BlocksReceived(ctx, "DS-1", finalized(first, second)))
	must(t, m.Complete(ctx, w, &second))
	if got := stat(t, m, "/old/app.log.1"); got.Writing || got.Size != testBlock+10 || got.Inode != fi.Inode {
		t.Fatalf("renamed file after close: %+v", got)
	}

	// Unlinked while written: the writer goes on; its close frees it.
	fi, err = m.Create(ctx, "/tmp-file", cairn.CreateOptions{Client: "c", BlockSize: testBlock})
	must(t, err)
	w = cairn.WriterRef{FileID: fi.Inode, Path: "/tmp-file", Client: "c"}
	lb, err = m.AddBlock(ctx, w, nil, nil)
	must(t, err)
	must(t, m.Delete(ctx, "/tmp-file", false))
	if _, err := m.Stat(ctx, "/tmp-file"); !errors.Is(err, cairn.ErrNotExist) {
		t.Fatalf("stat of the unlinked file: %v", err)
	}
	b := lb.Block
	b.Len = 100
	must(t, m.Fsync(ctx, w, b))
	fb, err := m.BlockLocations(ctx, cairn.FileRef{ID: fi.Inode})
	if err != nil || fb.Size != 100 {
		t.Fatalf("reading the unlinked file by inode: size %d, %v", fb.Size, err)
	}
	must(t, m.BlocksReceived(ctx, "DS-1", finalized(b)))
	if freedOn(m, "DS-1")[b.ID] {
		t.Fatal("the unlinked file's block was freed while it is written")
	}
	must(t, m.Complete(ctx, w, &b))
	if !freedOn(m, "DS-1")[b.ID] {
		t.Error("the unlinked file's block was not freed at its close")
	}
	if _, err := m.BlockLocations(ctx, cairn.FileRef{ID: fi.Inode}); !errors.Is(err, cairn.ErrNotExist) {
		t.Errorf("the freed file by inode: %v, want ErrNotExist", err)
	}
	mustCheckOpen(t, m)
}

// TestUnlinkHeld: a file unlinked by a client that has it open stays
// readable by inode until that client releases it, or stops renewing its
// lease; an unlink without holder frees at once.
func TestUnlinkHeld(t *testing.T) {
	clk := newFakeClock()
	cfg := leaseConfig(clk)
	m := openCfg(t, cfg)
	ctx := context.Background()
	fakeNode(t, m, "DS-1")
	read := func(path string) (uint64, cairn.Block) {
		blocks := writeFile(t, ctx, m, path, "w", "DS-1", false, 1000)
		return stat(t, m, path).Inode, blocks[0]
	}

	ino, b := read("/held")
	must(t, m.Unlink(ctx, "/held", "mount-1"))
	if freedOn(m, "DS-1")[b.ID] {
		t.Fatal("a held file was freed at its unlink")
	}
	if fb, err := m.BlockLocations(ctx, cairn.FileRef{ID: ino}); err != nil || fb.Size != 1000 || len(fb.Blocks[0].Locations) != 1 {
		t.Fatalf("held file by inode: %+v, %v", fb, err)
	}
	must(t, m.Release(ctx, ino, "someone-else")) // not a holder: nothing
	if freedOn(m, "DS-1")[b.ID] {
		t.Fatal("a release by another client freed the file")
	}
	must(t, m.Release(ctx, ino, "mount-1"))
	if !freedOn(m, "DS-1")[b.ID] {
		t.Fatal("the last release did not free the file")
	}
	must(t, m.Release(ctx, ino, "mount-1")) // again: nothing, no error

	// A holder that stops renewing is dropped after the hard limit.
	ino, b = read("/abandoned")
	must(t, m.Unlink(ctx, "/abandoned", "mount-2"))
	clk.Add(30 * time.Minute)
	if n, err := m.releaseExpiredHolders(); err != nil || n != 0 {
		t.Fatalf("before the hard limit: %d released, %v", n, err)
	}
	clk.Add(31 * time.Minute)
	if n, err := m.releaseExpiredHolders(); err != nil || n != 1 {
		t.Fatalf("past the hard limit: %d released, %v", n, err)
	}
	if !freedOn(m, "DS-1")[b.ID] {
		t.Fatal("an abandoned hold kept the file")
	}
	if _, err := m.BlockLocations(ctx, cairn.FileRef{ID: ino}); !errors.Is(err, cairn.ErrNotExist) {
		t.Errorf("the freed file by inode: %v", err)
	}

	fakeNode(t, m, "DS-1") // alive again after the clock moved
	_, b = read("/plain")
	must(t, m.Delete(ctx, "/plain", false))
	if !freedOn(m, "DS-1")[b.ID] {
		t.Fatal("a file nobody holds was not freed at its delete")
	}
	if err := m.Unlink(ctx, "/", "mount-1"); err == nil {
		t.Error("unlink of the root was accepted")
	}
	must(t, m.Mkdir(ctx, "/d", 0o755))
	if err := m.Unlink(ctx, "/d", "mount-1"); !errors.Is(err, cairn.ErrInvalid) {
		t.Errorf("unlink-while-open of a directory: %v, want ErrInvalid", err)
	}
	if err := m.Unlink(ctx, "/nothing", "metad/recovery"); !errors.Is(err, cairn.ErrInvalid) {
		t.Errorf("a holder with metad's reserved name: %v, want ErrInvalid", err)
	}
	mustCheckOpen(t, m)
}
