package tests

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cairn/tests/cluster"
)

// TestTools runs what people run on a disk, on the mount: tar x of a tree
// with directories, files, symlinks, modes and times; rsync -a of it; git
// clone, gc and fsck. Each result is compared with its source by diff -r,
// and by every mode, owner and modification time; none of them logs an
// error on the mount.
func TestTools(t *testing.T) {
	RequireFUSE(t)
	for _, tool := range []string{"tar", "rsync", "git", "diff"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (make deps installs it): %v", tool, err)
		}
	}
	c := cluster.Start(t, cluster.Config{Blockds: 1, Replication: 1})
	mnt := c.Mount(t)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)

	t.Run("TarX", func(t *testing.T) {
		archive := filepath.Join(t.TempDir(), "tree.tar")
		run(t, "tar", "-C", src, "-cf", archive, ".")
		dst := filepath.Join(mnt, "tar")
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		run(t, "tar", "-C", dst, "-xpf", archive)
		sameTree(t, src, dst)
	})

	t.Run("RsyncA", func(t *testing.T) {
		dst := filepath.Join(mnt, "rsync")
		run(t, "rsync", "-a", src+"/", dst+"/")
		sameTree(t, src, dst)
		// Again, after a change at the source: rsync replaces the changed
		// file through a temporary file and a rename.
		if err := os.WriteFile(filepath.Join(src, "d1/changed"), []byte("new bytes\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		run(t, "rsync", "-a", src+"/", dst+"/")
		sameTree(t, src, dst)
	})

	t.Run("Git", func(t *testing.T) {
		repo := filepath.Join(t.TempDir(), "repo")
		git := func(dir string, args ...string) string {
			t.Helper()
			return run(t, "git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		}
		run(t, "git", "init", "-q", "-b", "main", repo)
		for i := range 20 {
			name := filepath.Join(repo, fmt.Sprintf("d%d/f%d.txt", i%4, i))
			if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(name, []byte(strings.Repeat(fmt.Sprintf("line %d\n", i), 100*i+1)), 0o644); err != nil {
				t.Fatal(err)
			}
			git(repo, "add", ".")
			git(repo, "commit", "-q", "-m", fmt.Sprintf("commit %d", i))
		}
		clone := filepath.Join(mnt, "clone")
		run(t, "git", "clone", "-q", "--no-local", repo, clone)
		git(clone, "gc", "-q", "--aggressive", "--prune=now")
		git(clone, "fsck", "--full", "--strict")
		if got, want := git(clone, "rev-parse", "HEAD"), git(repo, "rev-parse", "HEAD"); got != want {
			t.Errorf("clone's HEAD %q, the repository's %q", got, want)
		}
		// A commit on the mount, and a status that finds nothing changed.
		if err := os.WriteFile(filepath.Join(clone, "new.txt"), []byte("new\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		git(clone, "add", "new.txt")
		git(clone, "commit", "-q", "-m", "on the mount")
		if st := git(clone, "status", "--porcelain"); st != "" {
			t.Errorf("git status after the commit: %q", st)
		}
		git(clone, "fsck", "--full", "--strict")
		if out := cluster.Exec(t, "diff", "-r", "--exclude=.git", repo, clone); out.Code != 1 || !strings.Contains(out.Stdout, "Only in "+clone+": new.txt") {
			t.Errorf("diff -r of the repository and the clone: exit %d\n%s%s", out.Code, out.Stdout, out.Stderr)
		}
	})

	if log := c.Log("mount0"); strings.Contains(log, "\terror\t") || strings.Contains(log, "\twarn\t") {
		t.Errorf("the mount logged errors or warnings for ordinary use:\n%s", log)
	}
}

// makeTree writes a tree of directories (modes 0700 to 2775), files (empty
// to 300 KiB, modes 0400 to 0755), relative, absolute and dangling
// symlinks, and old modification times on all of them.
func makeTree(t *testing.T, root string) {
	t.Helper()
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	dirs := []struct {
		path string
		mode fs.FileMode
	}{{"d1", 0o755}, {"d1/private", 0o700}, {"d2", 0o2775}, {"d2/deep/er/still", 0o755}, {"empty", 0o750}}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d.path), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 60 {
		name := filepath.Join(root, []string{"d1", "d1/private", "d2", "d2/deep/er/still", "."}[i%5], fmt.Sprintf("file%02d", i))
		size := []int{0, 1, 100, 4096, 65537, 300 << 10}[i%6]
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(i + j*7)
		}
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(name, []fs.FileMode{0o644, 0o600, 0o755, 0o400, 0o640}[i%5]); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "d1/changed"), []byte("old bytes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"d1/rel": "../d2/file02", "abs": "/etc/hostname", "d2/dangling": "nowhere", "d2/dirlink": "deep"} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	// Times last, deepest first, so setting them is not undone.
	var paths []string
	must(t, filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}))
	for i := len(paths) - 1; i >= 0; i-- {
		run(t, "touch", "-h", "-d", old.Add(time.Duration(i)*time.Hour).Format(time.RFC3339), paths[i])
	}
	for _, d := range dirs {
		if err := os.Chmod(filepath.Join(root, d.path), d.mode); err != nil {
			t.Fatal(err)
		}
	}
}

// sameTree fails t unless diff -r finds src and dst the same and every
// entry has the same type, mode, owner, size, modification time and
// symlink target.
func sameTree(t *testing.T, src, dst string) {
	t.Helper()
	if out := cluster.Exec(t, "diff", "-r", "--no-dereference", src, dst); out.Code != 0 {
		t.Errorf("diff -r %s %s: exit %d\n%s%s", src, dst, out.Code, out.Stdout, out.Stderr)
	}
	n := 0
	must(t, filepath.WalkDir(src, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		var a, b syscall.Stat_t
		if err := syscall.Lstat(p, &a); err != nil {
			return err
		}
		if err := syscall.Lstat(filepath.Join(dst, rel), &b); err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		n++
		isLink := a.Mode&syscall.S_IFMT == syscall.S_IFLNK
		switch {
		case a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid:
			t.Errorf("%s: mode %o %d:%d, source %o %d:%d", rel, b.Mode, b.Uid, b.Gid, a.Mode, a.Uid, a.Gid)
		case a.Mode&syscall.S_IFMT != syscall.S_IFDIR && a.Size != b.Size:
			t.Errorf("%s: size %d, source %d", rel, b.Size, a.Size)
		case rel != "." && a.Mtim != b.Mtim && !isLink:
			t.Errorf("%s: mtime %v, source %v", rel, time.Unix(b.Mtim.Unix()), time.Unix(a.Mtim.Unix()))
		}
		if isLink {
			at, _ := os.Readlink(p)
			bt, _ := os.Readlink(filepath.Join(dst, rel))
			if at != bt {
				t.Errorf("%s: symlink to %q, source to %q", rel, bt, at)
			}
		}
		return nil
	}))
	t.Logf("%d entries of %s compared", n, dst)
}
