package tests

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"cairn/tests/cluster"
)

// TestRenameWhileWriting is logrotate's pattern and `mv` during a download
// through a real mount: a file is written, renamed (and so is the
// directory above it), written again and closed. The writer is bound to
// the file, not its path, so every byte lands in the renamed file, as on
// ext4.
func TestRenameWhileWriting(t *testing.T) {
	RequireFUSE(t)
	c := cluster.Start(t, cluster.Config{Blockds: 3, Replication: 3, BlockSize: 1 << 20})
	mnt := c.Mount(t)
	p := func(name string) string { return filepath.Join(mnt, name) }
	if err := os.Mkdir(p("logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	part := func(i int) []byte { return randomBytes(700<<10, uint64(i)) } // spans blocks of 1 MiB

	f, err := os.OpenFile(p("logs/app.log"), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	write := func(i int) {
		t.Helper()
		if _, err := f.Write(part(i)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		want = append(want, part(i)...)
	}
	write(0)
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	must(t, os.Rename(p("logs/app.log"), p("logs/app.log.1"))) // logrotate
	write(1)
	must(t, os.Rename(p("logs"), p("old-logs"))) // a directory above it
	write(2)
	// A new file at the old name, written meanwhile, as a program
	// logrotate signalled would.
	must(t, os.MkdirAll(p("logs"), 0o755))
	must(t, os.WriteFile(p("logs/app.log"), []byte("fresh\n"), 0o644))
	write(3)
	if err := f.Close(); err != nil {
		t.Fatalf("close after the renames: %v (the writer must be bound to the file, not its path)", err)
	}
	got, err := os.ReadFile(p("old-logs/app.log.1"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("renamed file: %d bytes, want %d (equal: %v)", len(got), len(want), bytes.Equal(got[:min(len(got), len(want))], want[:min(len(got), len(want))]))
	}
	if got, _ := os.ReadFile(p("logs/app.log")); string(got) != "fresh\n" {
		t.Fatalf("the new file at the old name holds %q", got)
	}
	if out, code := c.Run(t, "fsck", "/", "-files"); code != 0 {
		t.Fatalf("fsck after the renames: exit %d\n%s", code, out)
	}
}

// TestUnlinkWhileOpen is a program that unlinks its temporary file and
// goes on using it: the open handles keep working until the last close,
// as POSIX says, and only then are its blocks freed.
func TestUnlinkWhileOpen(t *testing.T) {
	RequireFUSE(t)
	c := cluster.Start(t, cluster.Config{Blockds: 1, Replication: 1, BlockSize: 1 << 20})
	mnt := c.Mount(t)
	p := func(name string) string { return filepath.Join(mnt, name) }

	t.Run("Writer", func(t *testing.T) {
		f, err := os.OpenFile(p("tmp-w"), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
		must(t, err)
		first, second := randomBytes(1500<<10, 7), randomBytes(900<<10, 8)
		_, err = f.Write(first)
		must(t, err)
		must(t, os.Remove(p("tmp-w")))
		if _, err := f.Write(second); err != nil {
			t.Fatalf("write after unlink: %v", err)
		}
		must(t, f.Sync())
		if err := f.Close(); err != nil {
			t.Fatalf("close after unlink: %v", err)
		}
		if _, err := os.Lstat(p("tmp-w")); !os.IsNotExist(err) {
			t.Fatalf("the unlinked file is back: %v", err)
		}
	})

	t.Run("Reader", func(t *testing.T) {
		data := randomBytes(2500<<10, 9) // three blocks
		must(t, os.WriteFile(p("tmp-r"), data, 0o600))
		r, err := os.Open(p("tmp-r"))
		must(t, err)
		defer r.Close()
		head := make([]byte, 4096)
		if _, err := io.ReadFull(r, head); err != nil {
			t.Fatal(err)
		}
		must(t, os.Remove(p("tmp-r")))
		// Let metad's deletions reach the blockd if it were to free the
		// blocks now.
		time.Sleep(time.Second)
		rest, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("read after unlink: %v", err)
		}
		if got := append(head, rest...); !bytes.Equal(got, data) {
			t.Fatalf("read after unlink: %d bytes, want %d", len(got), len(data))
		}
		must(t, r.Close())
	})

	// Once the last handle is closed every block is freed.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		for _, files := range c.BlockFiles(t) {
			n += len(files)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d block files remain after the last close of every unlinked file", n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
