package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"cairn/tests/cluster"
)

// TestHardLinksThroughMount: ln, st_nlink, unlink of one name, rename
// between two names of one file, the blocks freed with the last name and
// the last close, cp -al and rsync --link-dest backups; metad check
// clean at the end.
func TestHardLinksThroughMount(t *testing.T) {
	RequireFUSE(t)
	c := cluster.Start(t, cluster.Config{Blockds: 1, Replication: 1, BlockSize: 64 << 10})
	mnt := c.Mount(t)
	cl := dial(t, c)
	p := func(name string) string { return filepath.Join(mnt, name) }
	nlink := func(name string, ino uint64, want uint64) {
		t.Helper()
		st := mustLstat(t, p(name))
		if st.Ino != ino || st.Nlink != want {
			t.Errorf("%s: ino %d nlink %d; want ino %d nlink %d", name, st.Ino, st.Nlink, ino, want)
		}
	}

	t.Run("LinkUnlinkRename", func(t *testing.T) {
		data := pattern(4, 100<<10)
		if err := os.WriteFile(p("a"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		ino := mustLstat(t, p("a")).Ino
		run(t, "ln", p("a"), p("b"))
		if err := os.Mkdir(p("d"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(p("b"), p("d/c")); err != nil {
			t.Fatalf("link(2): %v", err)
		}
		nlink("a", ino, 3)
		nlink("b", ino, 3)
		nlink("d/c", ino, 3)
		wantErr(t, "link of a directory", os.Link(p("d"), p("d2")), syscall.EPERM)
		wantErr(t, "link onto an existing name", os.Link(p("a"), p("b")), syscall.EEXIST)
		wantErr(t, "link of a missing file", os.Link(p("missing"), p("m2")), syscall.ENOENT)

		// rename(2) between two names of one file does nothing.
		if err := os.Rename(p("a"), p("b")); err != nil {
			t.Fatalf("rename between two names of one file: %v", err)
		}
		nlink("a", ino, 3)
		nlink("b", ino, 3)

		// Unlinking one name keeps the data under the others.
		if err := os.Remove(p("a")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(p("a")); !os.IsNotExist(err) {
			t.Errorf("a after its unlink: %v", err)
		}
		nlink("b", ino, 2)
		if got := readFile(t, p("d/c")); got != string(data) {
			t.Error("the data under another name changed")
		}
		// mv of one name over another file.
		if err := os.WriteFile(p("other"), []byte("other"), 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, "mv", p("d/c"), p("other"))
		nlink("other", ino, 2)
		nlink("b", ino, 2)
		if got := readFile(t, p("other")); got != string(data) {
			t.Error("content after mv over another file")
		}
		// A new version (O_TRUNC) through one name is the file's under all.
		sh(t, "echo v2 > "+p("b"))
		if got := readFile(t, p("other")); got != "v2\n" {
			t.Errorf("the other name reads %q after a replace through b", got)
		}
	})

	t.Run("FreedAtLastLinkAndClose", func(t *testing.T) {
		data := pattern(8, 200<<10)
		if err := os.WriteFile(p("x"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		ids := blockIDs(t, cl, "/x")
		run(t, "ln", p("x"), p("y"))
		f, err := os.Open(p("y"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := os.Remove(p("x")); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(p("y")); err != nil {
			t.Fatal(err)
		}
		if n := blockFilesOf(t, c, ids); n != len(ids) {
			t.Fatalf("%d of %d block files left while the file is open", n, len(ids))
		}
		dropCaches(t)
		buf := make([]byte, len(data)+1)
		if n, err := f.ReadAt(buf, 0); n != len(data) || string(buf[:n]) != string(data) {
			t.Fatalf("reading the open file after its last name went: %d bytes, %v", n, err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		waitBlocksGone(t, c, ids, "after the last name and the last close")

		// Without an open descriptor the last name frees at once.
		if err := os.WriteFile(p("z"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		ids = blockIDs(t, cl, "/z")
		run(t, "ln", p("z"), p("z2"))
		run(t, "rm", p("z"))
		if n := blockFilesOf(t, c, ids); n != len(ids) {
			t.Fatalf("%d of %d block files left with a name left", n, len(ids))
		}
		run(t, "rm", p("z2"))
		waitBlocksGone(t, c, ids, "after the last name")
	})

	// A source tree outside the mount, and its copies inside.
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src)

	t.Run("CpAl", func(t *testing.T) {
		run(t, "cp", "-a", src, p("orig"))
		run(t, "cp", "-al", p("orig"), p("linked"))
		diffTrees(t, src, p("linked"))
		diffTrees(t, p("orig"), p("linked"))
		for _, rel := range find(t, src) {
			st := mustLstat(t, filepath.Join(p("orig"), rel))
			lt := mustLstat(t, filepath.Join(p("linked"), rel))
			if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
				continue
			}
			if st.Ino != lt.Ino || st.Nlink != 2 || lt.Nlink != 2 {
				t.Errorf("%s: inodes %d, %d with %d, %d names; want one inode with 2", rel, st.Ino, lt.Ino, st.Nlink, lt.Nlink)
			}
		}
		run(t, "rm", "-rf", p("orig"))
		diffTrees(t, src, p("linked"))
	})

	t.Run("RsyncLinkDest", func(t *testing.T) {
		run(t, "rsync", "-a", src+"/", p("backup1")+"/")
		diffTrees(t, src, p("backup1"))
		// A change in the source: one file new, one changed.
		files := find(t, src)
		var changed string
		for _, rel := range files {
			if st := mustLstat(t, filepath.Join(src, rel)); st.Mode&syscall.S_IFMT == syscall.S_IFREG {
				changed = rel
				break
			}
		}
		if err := os.WriteFile(filepath.Join(src, changed), []byte("changed since backup1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, "new-file"), []byte("new\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, "rsync", "-a", "--link-dest="+p("backup1"), src+"/", p("backup2")+"/")
		diffTrees(t, src, p("backup2"))
		linked := 0
		for _, rel := range find(t, p("backup2")) {
			b2 := mustLstat(t, filepath.Join(p("backup2"), rel))
			if b2.Mode&syscall.S_IFMT != syscall.S_IFREG {
				continue
			}
			b1, err := os.Lstat(filepath.Join(p("backup1"), rel))
			same := err == nil && b1.Sys().(*syscall.Stat_t).Ino == b2.Ino
			if want := rel != changed && rel != "new-file"; same != want {
				t.Errorf("%s: hard-linked to backup1 %v, want %v", rel, same, want)
			}
			if same {
				linked++
			}
		}
		if linked == 0 {
			t.Fatal("rsync --link-dest linked nothing")
		}
		run(t, "rm", "-rf", p("backup1"))
		diffTrees(t, src, p("backup2"))
	})

	t.Run("Vim", func(t *testing.T) {
		if _, err := os.Stat("/usr/bin/vim"); err != nil {
			t.Fatalf("vim is needed: %v", err)
		}
		swap := t.TempDir()
		for _, bc := range []string{"yes", "no"} {
			name := "vim-" + bc + ".txt"
			if err := os.WriteFile(p(name), []byte("first line\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			ino := mustLstat(t, p(name)).Ino
			// The swap file is made when the file is loaded, before the
			// -c commands run: its directory is set with --cmd (or in a
			// vimrc), as the README says.
			out := cluster.Exec(t, "vim", "-Es", "-u", "NONE", "--cmd", "set directory="+swap, "-c", "set backupcopy="+bc,
				"-c", "normal Gofoo", "-c", "wq", p(name))
			if out.Code != 0 || out.Stdout != "" || out.Stderr != "" {
				t.Errorf("vim backupcopy=%s: exit %d, stdout %q, stderr %q", bc, out.Code, out.Stdout, out.Stderr)
			}
			if got := readFile(t, p(name)); got != "first line\nfoo\n" {
				t.Errorf("vim backupcopy=%s saved %q", bc, got)
			}
			if st := mustLstat(t, p(name)); bc == "yes" && st.Ino != ino {
				t.Errorf("backupcopy=yes wrote a new inode %d, was %d", st.Ino, ino)
			}
			if left, _ := filepath.Glob(p("*~")); len(left) > 0 {
				t.Errorf("vim backupcopy=%s left %v", bc, left)
			}
		}
		// The log holds no error of these saves.
		for _, line := range strings.Split(c.Log("mount0"), "\n") {
			if strings.Contains(line, "\terror\t") || strings.Contains(line, "\twarn\t") {
				t.Errorf("the mount logged: %s", line)
			}
		}
	})
	metadCheckNow(t, c)
}

// writeTree writes a small tree into dir: files of a few sizes (empty,
// one block, several) in nested directories, and a symlink.
func writeTree(t *testing.T, dir string) {
	t.Helper()
	for i := 0; i < 30; i++ {
		d := filepath.Join(dir, fmt.Sprintf("d%d", i%3), fmt.Sprintf("e%d", i%2))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		n := (i * 9973) % (150 << 10)
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%02d", i)), pattern(byte(i), n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("d0/e0/f00", filepath.Join(dir, "ln")); err != nil {
		t.Fatal(err)
	}
}
