package client_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"cairn"
	"cairn/client"
)

// TestIdleWriterKeepsItsPipeline: a writer idle for longer than its
// blockds' --idle-timeout and its own ack timeout, with bytes acked
// (after an hflush) and with bytes only buffered, writes on afterwards
// through the same pipeline: the block keeps the generation stamp it was
// written at (no recovery), all three replicas, and every byte.
func TestIdleWriterKeepsItsPipeline(t *testing.T) {
	const idle = 2 * time.Second
	c := startCluster(t, 3, 1<<20, "--idle-timeout", idle.String())
	// The writer waits 2 s for an ack (4 s with the extensions for the
	// nodes after the first): without heartbeats it would give up on its
	// idle pipeline too.
	cl, err := client.Dial(c.metad, client.Options{Creds: c.creds, AckTimeout: idle, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	pause := 5 * time.Second // past every timeout above
	stamp := func(path string) cairn.LocatedBlock {
		t.Helper()
		fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: path})
		if err != nil || len(fb.Blocks) != 1 {
			t.Fatalf("%s: %+v, %v; want one block", path, fb, err)
		}
		return fb.Blocks[0]
	}
	for _, flush := range []bool{true, false} {
		path := "/buffered"
		if flush {
			path = "/flushed"
		}
		t.Run(path[1:], func(t *testing.T) {
			w, err := cl.Create(ctx, path, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			var want []byte
			var before cairn.LocatedBlock // as the first write left it
			for i, part := range []string{"first line\n", "second line\n", "third line\n"} {
				if i > 0 {
					time.Sleep(pause)
				}
				if _, err := w.Write([]byte(part)); err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				want = append(want, part...)
				if flush {
					if err := w.Flush(); err != nil {
						t.Fatalf("hflush %d: %v", i, err)
					}
				}
				if i == 0 {
					before = stamp(path)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			after := stamp(path)
			if after.GenStamp != before.GenStamp || len(after.Locations) != 3 {
				t.Fatalf("block %v on %d blockds after close, was %v while written: the idle pipeline was recovered", after.Block, len(after.Locations), before.Block)
			}
			r, err := cl.Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read back %q (%v), want %q", got, err, want)
			}
		})
	}
}
