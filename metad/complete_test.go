package metad

import (
	"context"
	"slices"
	"testing"

	"cairn"
)

// readLocations returns the storage IDs metad offers for reading the only
// block of the file at path.
func readLocations(t *testing.T, m *Metad, path string) []string {
	t.Helper()
	fb, err := m.BlockLocations(context.Background(), cairn.FileRef{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if len(fb.Blocks) != 1 {
		t.Fatalf("%s has %d blocks, want 1", path, len(fb.Blocks))
	}
	var out []string
	for _, n := range fb.Blocks[0].Locations {
		out = append(out, n.StorageID)
	}
	slices.Sort(out)
	return out
}

// TestCompleteTakesAckedReplicas: Complete naming the pipeline's nodes
// that acked the last packet closes the file with no report from any
// blockd, and readers are offered those nodes; nodes metad did not place
// in the pipeline, or a block at another stamp, are not taken, and the
// writer waits for reports as before (ErrRetry). A later full report that
// lacks the replica removes it as any report does.
func TestCompleteTakesAckedReplicas(t *testing.T) {
	m := openCfg(t, Config{})
	nodes := registerNodes(t, m, 4)
	ctx := context.Background()
	w := cairn.WriterRef{Path: "/f", Client: "w"}
	if _, err := m.Create(ctx, "/f", cairn.CreateOptions{Client: "w", Replication: 3, BlockSize: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	lb, err := m.AddBlock(ctx, w, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := lb.Block
	b.Len = 4096
	var outsider cairn.Node
	for _, n := range nodes {
		if !slices.ContainsFunc(lb.Locations, func(p cairn.Node) bool { return p.StorageID == n.StorageID }) {
			outsider = n
		}
	}

	if err := m.Complete(ctx, w, &b); cairn.KindOf(err) != cairn.KindRetry {
		t.Fatalf("Complete without acked nodes or reports: %v, want ErrRetry", err)
	}
	if err := m.Complete(ctx, w, &b, outsider); cairn.KindOf(err) != cairn.KindRetry {
		t.Fatalf("Complete naming a node outside the pipeline: %v, want ErrRetry", err)
	}
	stale := b
	stale.GenStamp++
	if err := m.Complete(ctx, w, &stale, lb.Locations...); cairn.KindOf(err) != cairn.KindInvalid {
		t.Fatalf("Complete of another stamp: %v, want KindInvalid", err)
	}

	must(t, m.Complete(ctx, w, &b, append([]cairn.Node{outsider}, lb.Locations...)...))
	var want []string
	for _, n := range lb.Locations {
		want = append(want, n.StorageID)
	}
	slices.Sort(want)
	if got := readLocations(t, m, "/f"); !slices.Equal(got, want) {
		t.Fatalf("read locations after Complete %v, want the acked pipeline %v", got, want)
	}
	fi, err := m.Stat(ctx, "/f")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size != 4096 || fi.Writing {
		t.Fatalf("after Complete: size %d writing %v, want 4096 and closed", fi.Size, fi.Writing)
	}

	// The blockds' own reports confirm; a full report without the
	// replica takes that node away.
	for _, n := range lb.Locations {
		must(t, m.BlocksReceived(ctx, n.StorageID, finalized(b)))
	}
	if got := readLocations(t, m, "/f"); !slices.Equal(got, want) {
		t.Fatalf("read locations after the reports %v, want %v", got, want)
	}
	must(t, m.BlockReport(ctx, lb.Locations[0].StorageID, nil))
	if got := readLocations(t, m, "/f"); len(got) != 2 || slices.Contains(got, lb.Locations[0].StorageID) {
		t.Fatalf("read locations after %s reported nothing: %v", lb.Locations[0].StorageID, got)
	}
}

// A Complete naming the last block at an older stamp — an earlier
// writer's close, run late — is refused and leaves the file open: were it
// taken, the file would close with the old length while its replicas,
// appended to at the new stamp, hold more (fsck: "length mismatch").
func TestCompleteRefusesStaleStamp(t *testing.T) {
	m := openCfg(t, Config{})
	registerNodes(t, m, 3)
	ctx := context.Background()
	w := cairn.WriterRef{Path: "/f", Client: "w"}
	if _, err := m.Create(ctx, "/f", cairn.CreateOptions{Client: "w", Replication: 3, BlockSize: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	lb, err := m.AddBlock(ctx, w, nil, nil)
	must(t, err)
	first := lb.Block
	first.Len = 4096
	must(t, m.Complete(ctx, w, &first, lb.Locations...))

	// The same client appends: a new stamp, committed before a byte.
	fi, last, err := m.Append(ctx, "/f", "w")
	must(t, err)
	if last == nil {
		t.Fatal("Append gave no last block to append to")
	}
	w.FileID = fi.Inode
	ulb, err := m.UpdateBlockForPipeline(ctx, w, last.Block)
	must(t, err)
	updated := last.Block
	updated.GenStamp = ulb.GenStamp
	must(t, m.UpdatePipeline(ctx, w, last.Block, updated, last.Locations))

	// The first close, run again late, names the old stamp.
	if err := m.Complete(ctx, w, &first, lb.Locations...); cairn.KindOf(err) != cairn.KindInvalid {
		t.Fatalf("a late Complete at the old stamp: %v, want KindInvalid", err)
	}
	st, err := m.Stat(ctx, "/f")
	must(t, err)
	if !st.Writing {
		t.Fatal("a late Complete at the old stamp closed the appended file")
	}
	// The appender's own close, at the new stamp, closes it.
	done := updated
	done.Len = 6000
	must(t, m.Complete(ctx, w, &done, last.Locations...))
	if st, err = m.Stat(ctx, "/f"); err != nil || st.Writing || st.Size != 6000 {
		t.Fatalf("after the appender's close: %+v, %v", st, err)
	}
}
