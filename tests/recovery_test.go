package tests

import (
	"bytes"
	"cairn"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cairn/tests/cluster"
)

// TestBlockdCrashMidBlock kills a blockd with SIGKILL while a block is
// being written to it, tears the end of its replica as a crash mid-write
// would, and restarts it: the replica left in rbw/ is cut back to its last
// verified chunk and reported to metad as being recovered, the write goes
// on without the dead node, and no finalized replica is damaged.
func TestBlockdCrashMidBlock(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 3, BlockSize: 16 << 20, Replication: 3})
	cl := dial(t, c)
	ctx := context.Background()
	write(t, cl, "/done", 11, 3<<20) // finalized replicas on every blockd

	w, err := cl.Create(ctx, "/open", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	const flushed = 5<<20 + 1000 // ends inside a chunk
	buf := make([]byte, flushed)
	_, _ = newStream(12).Read(buf)
	if _, err := w.Write(buf); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/open"})
	if err != nil {
		t.Fatal(err)
	}
	blk := fb.Blocks[0]
	c.KillBlockd(t, 0)

	var rbw string
	for _, dir := range c.BlockdDirs(0) {
		p := filepath.Join(dir, "current", "rbw", fmt.Sprintf("blk_%d", blk.ID))
		if _, err := os.Stat(p); err == nil {
			rbw = p
		}
	}
	if rbw == "" {
		t.Fatalf("blockd0 has no replica of %s in rbw/", blk.Block)
	}
	// A torn write: bytes past what the .meta covers.
	f, err := os.OpenFile(rbw, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(strings.Repeat("torn", 1000))); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	c.StartBlockd(t, 0)
	line := c.WaitLog(t, "blockd0", 10*time.Second, "replica left being written recovered", blk.Block.String())
	if !strings.Contains(line, fmt.Sprintf(`"len": %d`, flushed)) {
		t.Errorf("recovered replica: %s; want it cut back to %d bytes", line, flushed)
	}
	if st, err := os.Stat(rbw); err != nil || st.Size() != flushed {
		t.Errorf("replica file after recovery: %v, %v; want %d bytes", st, err, flushed)
	}
	c.WaitLog(t, "metad", 10*time.Second, "replicas being recovered", `"kept": 1`)

	// The writer goes on and finishes through the rest of the pipeline.
	more := make([]byte, 1<<20)
	if _, err := w.Write(more); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close after the crash: %v", err)
	}
	checkContent(t, cl, "/open", append(buf, more...))
	sameAs(t, cl, "/done", 11, 3<<20)

	// Every finalized replica on the crashed blockd is whole.
	c.KillBlockd(t, 0)
	out := cluster.Exec(t, cluster.Binary(t), "blockd", "verify", "--data", strings.Join(c.BlockdDirs(0), ","))
	if out.Code != 0 {
		t.Errorf("cairn blockd verify after the crash: exit %d\n%s%s", out.Code, out.Stdout, out.Stderr)
	}
}

// TestCleanBlockdRestartsKeepAnOpenFile writes 10 MiB to a file, fsyncs it
// and keeps it open, then stops each blockd cleanly (SIGTERM) and starts it
// again, one after the other: every replica is left in rbw/, and every
// synced byte still reads back with its checksums. (A start used to delete
// the .meta of each such replica, so the file read as EIO.)
func TestCleanBlockdRestartsKeepAnOpenFile(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 3, BlockSize: 64 << 20, Replication: 3})
	cl := dial(t, c)
	ctx := context.Background()
	w, err := cl.Create(ctx, "/open", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10<<20)
	_, _ = newStream(13).Read(buf)
	if _, err := w.Write(buf); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		c.SignalBlockd(i, syscall.SIGTERM)
		c.WaitBlockdExit(t, i, time.Minute)
		c.StartBlockd(t, i)
	}
	r, err := dial(t, c).Open(ctx, "/open")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make([]byte, len(buf))
	if n, err := r.ReadAt(got, 0); n != len(buf) || !bytes.Equal(got, buf) {
		t.Fatalf("after a clean restart of every blockd: read %d of the %d synced bytes (%v), equal: %v", n, len(buf), err, bytes.Equal(got[:n], buf[:n]))
	}
}
