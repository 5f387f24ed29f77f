package tests

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
)

// keepIdle is the --idle-timeout of the blockds in the idle writer tests,
// and keepPause a writer's pause, past it and past the writer's own ack
// wait (keepIdle, grown by 1 s per node after the first: 4 s).
const (
	keepIdle  = 2 * time.Second
	keepPause = 5 * time.Second
)

// TestIdleWriterOutlivesIdleTimeout: writers that pause for longer than
// the blockds' --idle-timeout and their own ack timeout, through the
// client library and through a real mount, write on afterwards through
// the same pipeline: no blockd drops it, no recovery gives the block a
// new stamp (the mount logs none), and every byte reads back.
//
// The shell keeps one descriptor open across its pauses with
// `{ echo a; sleep; echo b; } >f`. (`exec 3>f; echo a >&3` would not do:
// the shell's restoring its stdout after each `>&3` is a flush from the
// opening process, which closes the writer, so the next echo appends
// through a new one and no pipeline is ever idle.)
func TestIdleWriterOutlivesIdleTimeout(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 3, Replication: 3, BlockSize: 1 << 20,
		BlockdArgs: []string{"--idle-timeout", keepIdle.String()}})
	ctx := context.Background()
	cl, err := client.Dial(c.MetadAddr(), client.Options{Creds: c.ClientCreds(), AckTimeout: keepIdle, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	block := func(path string) cairn.LocatedBlock {
		t.Helper()
		fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: path})
		if err != nil || len(fb.Blocks) != 1 {
			t.Fatalf("%s: %+v, %v; want one block", path, fb, err)
		}
		return fb.Blocks[0]
	}
	readBack := func(path, want string) {
		t.Helper()
		r, err := cl.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
		if err != nil || string(got) != want {
			t.Fatalf("%s: read back %q (%v), want %q", path, got, err, want)
		}
	}
	noneDropped := func() {
		t.Helper()
		for i := range 3 {
			name := fmt.Sprintf("blockd%d", i)
			if log := c.Log(name); strings.Contains(log, "within the idle timeout") {
				t.Errorf("%s dropped an idle writer's pipeline:\n%s", name, log)
			}
		}
	}

	t.Run("client", func(t *testing.T) {
		w, err := cl.Create(ctx, "/lib", 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("flushed\n")); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		before := block("/lib")
		time.Sleep(keepPause)
		if _, err := w.Write([]byte("buffered\n")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(keepPause)
		if _, err := w.Write([]byte("last\n")); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if after := block("/lib"); after.GenStamp != before.GenStamp || len(after.Locations) != 3 {
			t.Fatalf("block %v on %d blockds after close, was %v after the first hflush: the idle pipeline was recovered", after.Block, len(after.Locations), before.Block)
		}
		readBack("/lib", "flushed\nbuffered\nlast\n")
		noneDropped()
	})

	t.Run("mount", func(t *testing.T) {
		RequireFUSE(t)
		// The mount waits for acks as the client above does.
		mnt := c.Mount(t, "-o", "ack_timeout="+keepIdle.String())
		f := filepath.Join(mnt, "log")
		sh(t, fmt.Sprintf("{ echo a; sleep %d; echo b; sleep %d; echo c; } >%s", int(keepPause.Seconds()), int(keepPause.Seconds()), f))
		got, err := os.ReadFile(f)
		if err != nil || string(got) != "a\nb\nc\n" {
			t.Fatalf("read back %q through the mount (%v), want %q", got, err, "a\nb\nc\n")
		}
		readBack("/log", "a\nb\nc\n")
		if log := c.Log("mount0"); strings.Contains(log, "pipeline recovered") || strings.Contains(log, "dropping a blockd") {
			t.Fatalf("the mount recovered its idle pipeline:\n%s", log)
		}
		noneDropped()
		out, code := c.Run(t, "fsck", "/", "-verify")
		if code != 0 || cluster.LastLine(out) != cluster.HealthyLine("/") {
			t.Fatalf("fsck / -verify: exit %d\n%s", code, out)
		}
	})
}
