package tests

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
)

// Replacing files whole (O_TRUNC, truncate to 0) and hard links, through a
// real mount of a real cluster, with the programs people use: sh, cp,
// truncate, ln, mv, rsync, vim.

// blockIDs returns the IDs of the blocks of the file at path.
func blockIDs(t *testing.T, cl *client.Client, path string) []cairn.BlockID {
	t.Helper()
	fb, err := cl.NS.BlockLocations(asMe(), cairn.FileRef{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	var ids []cairn.BlockID
	for _, b := range fb.Blocks {
		ids = append(ids, b.ID)
	}
	if len(ids) == 0 {
		t.Fatalf("%s has no blocks", path)
	}
	return ids
}

// blockFilesOf returns how many of ids have a block file on some blockd.
func blockFilesOf(t *testing.T, c *cluster.Cluster, ids []cairn.BlockID) int {
	t.Helper()
	want := map[uint64]bool{}
	for _, id := range ids {
		want[uint64(id)] = true
	}
	n := 0
	for _, files := range c.BlockFiles(t) {
		for _, f := range files {
			if id, ok := cluster.BlockID(f); ok && want[id] {
				n++
			}
		}
	}
	return n
}

// waitBlocksGone waits until no blockd keeps a block file of ids: metad
// sends the deletions with the blockds' next heartbeats.
func waitBlocksGone(t *testing.T, c *cluster.Cluster, ids []cairn.BlockID, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for blockFilesOf(t, c, ids) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d block files of %v remain", what, blockFilesOf(t, c, ids), ids)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pattern is n bytes of a pattern that differs for each seed and offset.
func pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i/7) + byte(i>>16)
	}
	return b
}

// sh runs a shell script and fails t unless it exits 0 and prints nothing
// on stderr.
func sh(t *testing.T, script string) string {
	t.Helper()
	out := cluster.Exec(t, "sh", "-c", script)
	if out.Code != 0 || out.Stderr != "" {
		t.Fatalf("sh -c %q: exit %d, stderr %q", script, out.Code, out.Stderr)
	}
	return out.Stdout
}

// TestReplaceThroughMount: O_TRUNC, `echo x > f`, cp over a file and
// truncate -s 0 give a new version of the file at the same inode, with
// its attributes, and free the old blocks; a truncate to another size is
// EPERM; a file another writer holds is EBUSY.
func TestReplaceThroughMount(t *testing.T) {
	RequireFUSE(t)
	c := cluster.Start(t, cluster.Config{Blockds: 1, Replication: 1, BlockSize: 64 << 10})
	mnt := c.Mount(t)
	cl := dial(t, c)
	p := func(name string) string { return filepath.Join(mnt, name) }

	t.Run("OTrunc", func(t *testing.T) {
		old := pattern(1, 200<<10) // four blocks
		if err := os.WriteFile(p("f"), old, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p("f"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := unix.Setxattr(p("f"), "user.k", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
		was := mustLstat(t, p("f"))
		ids := blockIDs(t, cl, "/f")
		f, err := os.OpenFile(p("f"), os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatalf("O_TRUNC of a closed file: %v", err)
		}
		if _, err := f.Write([]byte("new\n")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("close of the new version: %v", err)
		}
		if got := readFile(t, p("f")); got != "new\n" {
			t.Fatalf("content %q, want the new version", got)
		}
		st := mustLstat(t, p("f"))
		if st.Ino != was.Ino || st.Mode != was.Mode || st.Size != 4 || st.Nlink != 1 {
			t.Errorf("after the replace: ino %d mode %o size %d nlink %d; was ino %d mode %o", st.Ino, st.Mode, st.Size, st.Nlink, was.Ino, was.Mode)
		}
		buf := make([]byte, 8)
		if n, err := unix.Getxattr(p("f"), "user.k", buf); err != nil || string(buf[:n]) != "v" {
			t.Errorf("user.k after the replace: %q, %v", buf[:n], err)
		}
		waitBlocksGone(t, c, ids, "the old version's blocks")
	})

	t.Run("EchoTwice", func(t *testing.T) {
		sh(t, "echo one > "+p("e"))
		ino := mustLstat(t, p("e")).Ino
		sh(t, "echo two > "+p("e"))
		sh(t, "echo three > "+p("e"))
		if got := readFile(t, p("e")); got != "three\n" {
			t.Errorf("content %q, want three", got)
		}
		if st := mustLstat(t, p("e")); st.Ino != ino {
			t.Errorf("inode %d, was %d", st.Ino, ino)
		}
		sh(t, ": > "+p("e"))
		if st := mustLstat(t, p("e")); st.Size != 0 {
			t.Errorf("size %d after ': >', want 0", st.Size)
		}
	})

	t.Run("CpOver", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "src")
		if err := os.WriteFile(src, pattern(9, 150<<10), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p("c"), pattern(3, 300<<10), 0o644); err != nil {
			t.Fatal(err)
		}
		ids := blockIDs(t, cl, "/c")
		run(t, "cp", src, p("c"))
		compare(t, src, p("c"))
		if st := mustLstat(t, p("c")); st.Mode&0o777 != 0o644 {
			t.Errorf("cp over a file changed its mode to %o", st.Mode&0o777)
		}
		waitBlocksGone(t, c, ids, "the overwritten file's blocks")
	})

	t.Run("Truncate", func(t *testing.T) {
		if err := os.WriteFile(p("t"), pattern(5, 100<<10), 0o644); err != nil {
			t.Fatal(err)
		}
		ino := mustLstat(t, p("t")).Ino
		ids := blockIDs(t, cl, "/t")
		out := cluster.Exec(t, "truncate", "-s", "3", p("t"))
		if out.Code == 0 || !strings.Contains(out.Stderr, "Operation not permitted") {
			t.Errorf("truncate -s 3: exit %d, stderr %q; want EPERM", out.Code, out.Stderr)
		}
		wantErr(t, "truncate(2) below the end", os.Truncate(p("t"), 10), syscall.EPERM)
		wantErr(t, "truncate(2) past the end", os.Truncate(p("t"), 200<<10), syscall.EPERM)
		if got := readFile(t, p("t")); got != string(pattern(5, 100<<10)) {
			t.Fatal("a refused truncate changed the file")
		}
		run(t, "truncate", "-s", "0", p("t"))
		if st := mustLstat(t, p("t")); st.Size != 0 || st.Ino != ino {
			t.Errorf("after truncate -s 0: size %d ino %d (was %d)", st.Size, st.Ino, ino)
		}
		waitBlocksGone(t, c, ids, "the truncated file's blocks")
		if err := os.WriteFile(p("t2"), []byte("0123456789"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p("t2"), 0); err != nil {
			t.Fatalf("truncate(2) to 0: %v", err)
		}
		if fi, err := cl.NS.Stat(asMe(), "/t2"); err != nil || fi.Size != 0 || fi.Writing {
			t.Errorf("after truncate(2) to 0: %+v, %v; want an empty closed file", fi, err)
		}
		// ftruncate(0) of a descriptor that wrote: its bytes are dropped,
		// it writes on from 0.
		f, err := os.OpenFile(p("t3"), os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("draft")); err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(0); err != nil {
			t.Fatalf("ftruncate(0) after writing: %v", err)
		}
		if _, err := f.WriteAt([]byte("final"), 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, p("t3")); got != "final" {
			t.Errorf("content %q, want final", got)
		}
	})

	t.Run("Busy", func(t *testing.T) {
		// Another client writes the file: O_TRUNC is EBUSY.
		w, err := cl.Create(asMe(), "/busy", 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("theirs")); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		_, err = os.OpenFile(p("busy"), os.O_WRONLY|os.O_TRUNC, 0)
		wantErr(t, "O_TRUNC of a file another client writes", err, syscall.EBUSY)
		wantErr(t, "truncate(2) to 0 of a file another client writes", os.Truncate(p("busy"), 0), syscall.EBUSY)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, p("busy")); got != "theirs" {
			t.Errorf("content %q after refused replaces", got)
		}
		// A descriptor of this mount that has written: the same.
		f, err := os.OpenFile(p("busy"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write([]byte("+mine")); err != nil {
			t.Fatal(err)
		}
		_, err = os.OpenFile(p("busy"), os.O_WRONLY|os.O_TRUNC, 0)
		wantErr(t, "O_TRUNC of a file another descriptor is writing", err, syscall.EBUSY)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, p("busy")); got != "theirs+mine" {
			t.Errorf("content %q", got)
		}
	})

	t.Run("ConcurrentReader", func(t *testing.T) {
		const size = 512 << 10 // eight blocks
		old, repl := pattern(11, size), pattern(77, size)
		for round := 0; round < 3; round++ {
			if err := os.WriteFile(p("r"), old, 0o644); err != nil {
				t.Fatal(err)
			}
			dropCaches(t)
			r, err := os.Open(p("r"))
			if err != nil {
				t.Fatal(err)
			}
			chunk := make([]byte, 64<<10)
			readAt := func(off int) (int, error) { return r.ReadAt(chunk, int64(off)) }
			// The reader has read a part of the old version...
			split := (round + 1) * (128 << 10)
			for off := 0; off < split; off += len(chunk) {
				n, err := readAt(off)
				if err != nil || !bytes.Equal(chunk[:n], old[off:off+n]) {
					t.Fatalf("round %d: read at %d before the replace: %d bytes, %v", round, off, n, err)
				}
			}
			// ...when the file is replaced by a version of the same size.
			if err := os.WriteFile(p("r"), repl, 0o644); err != nil {
				t.Fatal(err)
			}
			good, failed := 0, 0
			for off := 0; off < size; off += len(chunk) {
				n, err := readAt(off)
				switch {
				case err != nil && !errors.Is(err, io.EOF):
					failed++
				case n == 0:
					// the end: the reader learned the file is shorter
				case bytes.Equal(chunk[:n], old[off:off+n]):
					good++
				default:
					t.Fatalf("round %d: read at %d after the replace returned bytes of no version it opened (new version's: %v)",
						round, off, bytes.Equal(chunk[:n], repl[off:off+n]))
				}
			}
			t.Logf("round %d: after the replace, %d reads of old bytes, %d failed", round, good, failed)
			r.Close()
			if got := readFile(t, p("r")); got != string(repl) {
				t.Fatalf("round %d: a new open does not read the new version", round)
			}
		}
	})

	// The library reader: the same promise.
	t.Run("ClientReader", func(t *testing.T) {
		const size = 256 << 10
		if err := os.WriteFile(p("cr"), pattern(21, size), 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := cl.Open(asMe(), "/cr")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if err := os.WriteFile(p("cr"), pattern(99, 2*size), 0o644); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2*size)
		n, err := r.ReadAt(buf, 0)
		if err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("reading a replaced file's deleted old version: %d bytes, %v; want an error", n, err)
		}
		if !bytes.Equal(buf[:n], pattern(21, size)[:n]) {
			t.Fatal("the reader of the old version read bytes of the new one")
		}
	})
	metadCheckNow(t, c)
}

// metadCheckNow checks a checkpoint of the running metad.
func metadCheckNow(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	ckpt := filepath.Join(c.MetadDataDir(), "checkpoints", "ckpt")
	if out, code := c.Run(t, "admin", "-checkpoint", ckpt); code != 0 {
		t.Fatalf("cairn admin -checkpoint: exit %d, %q", code, out)
	}
	metadCheck(t, ckpt)
}

// wantErr fails t unless err is errno want.
func wantErr(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
}
