package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
)

// TestKillMatrixChecks shows that each check of the kill matrix fails when
// what it looks for is wrong, so a PASS in the matrix means something: a
// client writer (the matrix's, as a separate process) writes two columns
// with nothing killed and every check passes; then an acknowledgement the
// file does not hold, an acknowledged length past the end of the file, a
// finalized replica of a live file deleted from a blockd's disk, a file
// left open, and a read through the handle of an unlinked file that failed
// while any blockd was up each fail the cell with their own reason.
func TestKillMatrixChecks(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 3, Replication: 3, BlockSize: 512 << 10})
	ctx := context.Background()
	cl, err := client.Dial(c.MetadAddr(), client.Options{Creds: c.ClientCreds(), Logger: zap.NewNop()})
	must(t, err)
	defer cl.Close()
	cols := []string{colCreate, colHsync}
	dir := t.TempDir()
	cfg := writerConfig{
		Kind: kindClient, Metad: c.MetadAddr(), Columns: cols, Dirs: map[string]string{},
		Steps: 3, Seed: 7, MinSeg: 100 << 10, MaxSeg: 700 << 10,
		Manifest: filepath.Join(dir, "manifest"), GoFile: filepath.Join(dir, "go"),
	}
	for _, col := range cols {
		cfg.Dirs[col] = cellDir(col, kindClient)
		must(t, cl.NS.Mkdirs(ctx, cfg.Dirs[col], 0o755))
	}
	b, _ := json.Marshal(cfg)
	must(t, os.WriteFile(filepath.Join(dir, "cfg"), b, 0o644))
	exe, err := os.Executable()
	must(t, err)
	w := c.StartProcess(t, "writer", exe, []string{"-test.run=^$"}, []string{writerEnv + "=" + filepath.Join(dir, "cfg")})
	if !w.Wait(writerWait) {
		t.Fatalf("the writer did not end within %v", writerWait)
	}
	newCells := func() []*cell {
		logs, err := readManifest(cfg.Manifest)
		must(t, err)
		var cells []*cell
		for _, col := range cols {
			ce := &cell{row: "none", col: col, kinds: []string{kindClient}, logs: []*columnLog{logs[col]}}
			if logs[col] == nil || !logs[col].done {
				t.Fatalf("column %s did not finish: %+v", col, logs[col])
			}
			writerNotes(ce, time.Time{})
			cells = append(cells, ce)
		}
		return cells
	}
	open, exists := clientReader(ctx, cl)
	wantFail := func(what string, ce *cell, reason string) {
		t.Helper()
		if ce.passed() {
			t.Errorf("%s: the cell passed", what)
			return
		}
		if !strings.Contains(strings.Join(ce.reasons, "; "), reason) {
			t.Errorf("%s: the cell failed for %q, want a reason with %q", what, ce.reasons, reason)
		}
	}

	// Nothing wrong: every check passes.
	cells := newCells()
	waitClosed(ctx, cl, cells, 30*time.Second)
	watch := watchReplicas(c)
	for _, ce := range cells {
		checkFsck(c, ce, false, fsckWait)
		if ce.readBack = checkRead(ce, "client", open, exists); ce.readBack != ce.acked || ce.acked == 0 {
			t.Errorf("%s: read back %d of %d acknowledged bytes", ce.col, ce.readBack, ce.acked)
		}
	}
	now, err := watch.finish()
	must(t, err)
	checkLiveReplicas(ctx, c, cl, cells, watch.seen, now)
	for _, ce := range cells {
		if !ce.passed() {
			t.Fatalf("%s with nothing killed: %s", ce.col, strings.Join(ce.reasons, "; "))
		}
	}

	// An acknowledgement of bytes the file does not hold.
	ce := newCells()[1]
	f := ce.liveFiles()[0]
	f.segs[1].Sum = strings.Repeat("0", 64)
	checkRead(ce, "client", open, exists)
	wantFail("a wrong checksum", ce, "read back different")

	// Acknowledged bytes past the end of the file.
	ce = newCells()[1]
	f = ce.liveFiles()[0]
	last := f.segs[len(f.segs)-1]
	last.Off += last.Len
	f.segs = append(f.segs, last)
	checkRead(ce, "client", open, exists)
	wantFail("an acknowledgement past the end", ce, fmt.Sprintf("%d were acknowledged", last.Off+last.Len))

	// A read of the unlinked file through its open handle that failed:
	// honest with every blockd, metad or the writer's own mount down, a
	// failure anywhere else.
	for _, c := range []struct {
		row    string
		honest bool
	}{{"blockds", true}, {"metad", true}, {"blockd", false}, {"client", false}} {
		ce := newCells()[0]
		ce.row, ce.reasons = c.row, nil
		ce.logs[0].readErrors = []string{"[0,10): input/output error"}
		writerNotes(ce, time.Time{})
		if c.honest && !ce.passed() {
			t.Errorf("a read error with %s down fails the cell: %s", c.row, ce.reasons)
		}
		if !c.honest {
			wantFail("a read error with "+c.row+" down", ce, "could not read its unlinked file")
		}
	}
	if !readNeedsKilled("mount", kindMount) || readNeedsKilled("mount", kindClient) {
		t.Errorf("with the mount killed, only the mount writer's reads may fail")
	}

	// A finalized replica of a live file deleted.
	cells = newCells()
	watch = watchReplicas(c)
	fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: cells[0].liveFiles()[0].path})
	must(t, err)
	blk := fb.Blocks[0]
	data := filepath.Join(cluster.FinalizedDir(c.BlockdDataDirs()[0], uint64(blk.ID)), fmt.Sprintf("blk_%d", blk.ID))
	must(t, os.Remove(data))
	for _, m := range cluster.MetaFiles(data) {
		must(t, os.Remove(m))
	}
	now, err = watch.finish()
	must(t, err)
	checkLiveReplicas(ctx, c, cl, cells, watch.seen, now)
	wantFail("a deleted replica", cells[0], fmt.Sprintf("blk_%d_%d on blockd0", blk.ID, blk.GenStamp))
	wantFail("a deleted replica", cells[0], "that is not on its disk")
	if !cells[1].passed() {
		t.Errorf("a replica of another column's file deleted fails %s: %s", cells[1].col, cells[1].reasons)
	}

	// A file left open.
	cells = newCells()
	wr, err := cl.Create(ctx, cellDir(colCreate, kindClient)+"/open", 0o644)
	must(t, err)
	_, err = wr.Write(make([]byte, 1000))
	must(t, err)
	must(t, wr.Flush())
	waitClosed(ctx, cl, cells, time.Second)
	wantFail("a file left open", cells[0], "/open still open for writing")
	must(t, wr.Close())
}
