package tests

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
)

// TestSyncedBytesSurviveBlockdRestarts restarts each of the three blockds
// in turn, within one block, while a writer appends 64 KiB at a time and
// fsyncs (hsync) each: once cleanly (SIGTERM) and once by SIGKILL. The
// writer goes on (its pipeline drops each restarted blockd and takes it
// back once it is up again), and every fsynced byte reads back.
func TestSyncedBytesSurviveBlockdRestarts(t *testing.T) {
	for _, mode := range []string{"clean", "kill"} {
		t.Run(mode, func(t *testing.T) {
			c := cluster.Start(t, cluster.Config{Blockds: 3, Replication: 3, BlockSize: 256 << 20, DeadAfter: 5 * time.Second})
			cl, err := client.Dial(c.MetadAddr(), client.Options{Creds: c.ClientCreds(), Logger: zaptest.NewLogger(t),
				AckTimeout: 5 * time.Second, SetupTimeout: 3 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx := context.Background()
			w, err := cl.Create(ctx, "/log", 0o644)
			if err != nil {
				t.Fatal(err)
			}
			const seed = 21
			var synced atomic.Int64
			stop := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				src := newStream(seed)
				buf := make([]byte, 64<<10)
				for {
					select {
					case <-stop:
						done <- nil
						return
					default:
					}
					_, _ = src.Read(buf)
					if _, err := w.Write(buf); err != nil {
						done <- fmt.Errorf("write after %d synced bytes: %w", synced.Load(), err)
						return
					}
					if err := w.Sync(); err != nil {
						done <- fmt.Errorf("sync after %d synced bytes: %w", synced.Load(), err)
						return
					}
					synced.Store(w.Size())
				}
			}()
			var werr error
			writerDone := false
			// grow waits until another n bytes are synced, or the writer ends.
			grow := func(n int64) {
				want := synced.Load() + n
				deadline := time.Now().Add(2 * time.Minute)
				for synced.Load() < want && !writerDone {
					select {
					case werr = <-done:
						writerDone = true
					case <-time.After(20 * time.Millisecond):
					}
					if time.Now().After(deadline) {
						t.Fatalf("the writer synced %d bytes, not %d, in 2 minutes", synced.Load(), want)
					}
				}
			}
			for i := range 3 {
				grow(1 << 20)
				if writerDone {
					break
				}
				if mode == "clean" {
					c.StopBlockd(t, i)
				} else {
					c.KillBlockd(t, i)
				}
				t.Logf("blockd%d stopped (%s) after %d synced bytes", i, mode, synced.Load())
				c.StartBlockd(t, i)
				grow(1 << 20)
				rejoined(t, c, cl, "/log", i, &writerDone)
			}
			if !writerDone {
				close(stop)
				werr = <-done
			}
			if werr != nil {
				t.Errorf("the writer failed: %v", werr)
			}
			if err := w.Close(); err != nil && werr == nil {
				t.Errorf("close: %v", err)
			}
			n := synced.Load()
			t.Logf("%d bytes synced, all within one block", n)
			checkPrefix(t, cl, "/log", seed, n)
		})
	}
}

// rejoined waits until blockd i is back in the pipeline of path's last
// block (the writer adds a node back to a short pipeline of a block that
// was hflushed); it fails the test if that takes a minute.
func rejoined(t *testing.T, c *cluster.Cluster, cl *client.Client, path string, i int, writerDone *bool) {
	t.Helper()
	id := c.BlockdStorageID(i)
	deadline := time.Now().Add(time.Minute)
	for !*writerDone {
		fb, err := cl.NS.BlockLocations(context.Background(), cairn.FileRef{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(fb.Blocks); n > 0 && slices.ContainsFunc(fb.Blocks[n-1].Locations, func(n cairn.Node) bool { return n.StorageID == id }) {
			t.Logf("blockd%d is back in the pipeline", i)
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("blockd%d is not back in the pipeline of %s a minute after its restart", i, path)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkPrefix reads the first n bytes of path and compares them with the
// stream of seed.
func checkPrefix(t *testing.T, cl *client.Client, path string, seed uint64, n int64) {
	t.Helper()
	r, err := cl.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size() < n {
		t.Fatalf("%s holds %d bytes, fewer than the %d fsynced", path, r.Size(), n)
	}
	got := make([]byte, n)
	if k, err := r.ReadAt(got, 0); int64(k) != n && err != nil {
		t.Fatalf("%s: read %d of %d fsynced bytes: %v", path, k, n, err)
	}
	want := make([]byte, n)
	_, _ = newStream(seed).Read(want)
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: fsynced bytes differ from offset %d", path, i)
	}
}

// TestHungBlockdDuringCopy copies 200 MiB through a real mount twice: once
// with every blockd well, once with one blockd stopped by SIGSTOP (hung:
// its sockets open, answering nothing) a quarter of the way. It prints
// the ratio of the two times. The second copy succeeds and is equal to
// its source; the mount blames only the hung blockd (never a healthy one
// in the middle of a pipeline); and once the hung blockd is dead and
// metad has re-replicated, no block is left with one replica.
func TestHungBlockdDuringCopy(t *testing.T) {
	RequireFUSE(t)
	const size = 200 << 20
	c := cluster.Start(t, cluster.Config{Blockds: 3, Replication: 3, DeadAfter: 6 * time.Second, MetadArgs: []string{"--stale-after", "2s"}})
	mnt := c.Mount(t, "-o", "ack_timeout=2s,setup_timeout=2s,read_timeout=2s")
	src := filepath.Join(t.TempDir(), "src")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, newStream(31), size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	run(t, "cp", src, filepath.Join(mnt, "normal"))
	normal := time.Since(start)

	const hung = 1
	dst := filepath.Join(mnt, "hung")
	cp := exec.Command("cp", src, dst)
	var cpErr bytes.Buffer
	cp.Stderr = &cpErr
	start = time.Now()
	if err := cp.Start(); err != nil {
		t.Fatal(err)
	}
	finished := make(chan error, 1)
	go func() { finished <- cp.Wait() }()
	stopped := false
	var cpResult error
	for waiting := true; waiting; {
		select {
		case cpResult = <-finished:
			waiting = false
		case <-time.After(10 * time.Millisecond):
			if fi, err := os.Stat(dst); !stopped && err == nil && fi.Size() >= size/4 {
				c.SignalBlockd(hung, syscall.SIGSTOP)
				stopped = true
				t.Logf("blockd%d stopped (SIGSTOP) at %d MiB of the copy", hung, fi.Size()>>20)
			}
			if time.Since(start) > 15*time.Minute {
				_ = cp.Process.Kill()
				t.Fatalf("cp still runs after 15 minutes")
			}
		}
	}
	withHung := time.Since(start)
	t.Logf("200 MiB copy: %v with every blockd well, %v with blockd%d hung: ratio %.2f",
		normal.Round(time.Millisecond), withHung.Round(time.Millisecond), hung, withHung.Seconds()/normal.Seconds())
	if cpResult != nil {
		t.Fatalf("cp with a hung blockd: %v: %s", cpResult, cpErr.String())
	}
	if !stopped {
		t.Fatalf("the copy ended before blockd%d could be stopped", hung)
	}
	compare(t, src, dst)

	hungAddr := ""
	hungID := c.BlockdStorageID(hung)
	for _, line := range strings.Split(c.Log("mount0"), "\n") {
		if !strings.Contains(line, "dropping a blockd from the pipeline") {
			continue
		}
		if hungAddr == "" {
			cl := dial(t, c)
			rep, err := cl.NS.Report(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range rep.Nodes {
				if n.StorageID == hungID {
					hungAddr = n.DataAddr
				}
			}
		}
		if !strings.Contains(line, `"blockd": "`+hungAddr+`"`) {
			t.Errorf("the mount dropped a blockd that did not hang (blockd%d at %s did): %s", hung, hungAddr, line)
		}
	}

	// The hung blockd dies; metad restores what it held from the others.
	c.KillBlockd(t, hung)
	cl := dial(t, c)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		fb, err := cl.NS.BlockLocations(context.Background(), cairn.FileRef{Path: "/hung"})
		if err != nil {
			t.Fatal(err)
		}
		var thin []string
		for _, b := range fb.Blocks {
			live := 0
			for _, n := range b.Locations {
				if n.StorageID != hungID {
					live++
				}
			}
			if live < 2 {
				thin = append(thin, fmt.Sprintf("%s: %d replica(s)", b.Block, live))
			}
		}
		if len(thin) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("blocks of /hung left with fewer than 2 replicas after blockd%d died: %v", hung, thin)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
