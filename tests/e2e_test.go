package tests

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cairn/tests/cluster"
)

const (
	blockSize    = 1 << 20  // small, so that the big file spans many blocks
	bigSize      = 20 << 20 // the big file: 20 blocks
	treeFiles    = 200      // small files in the tree
	maxSmallSize = 20 << 10 // the largest small file
	replication  = 3
	healthyRoot  = "The filesystem under path '/' is HEALTHY"
)

// treeDirs are the directories of the tree of small files, relative to the
// source directory.
var treeDirs = []string{"tree", "tree/a", "tree/a/b", "tree/a/b/c", "tree/d", "tree/d/e"}

// TestEndToEnd runs metad and three blockds as processes, mounts them with
// `cairn mount`, and drives the mount with cp, ls, find, diff and cmp: the
// copy reads back equal and is replicated three times on disk, survives a
// metad restart and the loss of a replica, fsck reports it healthy, and an
// overwrite is refused.
func TestEndToEnd(t *testing.T) {
	RequireFUSE(t)
	src := t.TempDir()
	sizes := writeSource(t, src)
	big := filepath.Join(src, "big.bin")

	c := cluster.Start(t, cluster.Config{
		Blockds:     3,
		BlockSize:   blockSize,
		Replication: replication,
		Heartbeat:   200 * time.Millisecond,
	})
	mnt := c.Mount(t)

	if !t.Run("Copy", func(t *testing.T) {
		run(t, "cp", big, filepath.Join(mnt, "big.bin"))
		run(t, "cp", "-r", filepath.Join(src, "tree"), filepath.Join(mnt, "tree"))
		diffTrees(t, src, mnt)
		checkSizes(t, mnt, sizes)
	}) {
		t.FailNow() // nothing else means anything without the copy
	}

	t.Run("Replicas", func(t *testing.T) {
		checkReplicas(t, c, sizes)
	})

	t.Run("Fsck", func(t *testing.T) {
		out, code := c.Run(t, "fsck", "/")
		if code != 0 {
			t.Errorf("cairn fsck /: exit %d on a healthy cluster, want 0", code)
		}
		if last := cluster.LastLine(out); last != healthyRoot {
			t.Errorf("cairn fsck /: last line %q, want %q; output:\n%s", last, healthyRoot, out)
		}
	})

	t.Run("OverwriteRefused", func(t *testing.T) {
		path := filepath.Join(mnt, "big.bin")
		var openErr, writeErr, closeErr error
		within(t, time.Minute, "open, pwrite and close of "+path, func() {
			f, err := os.OpenFile(path, os.O_WRONLY, 0) // no O_TRUNC: appending is allowed
			if err != nil {
				openErr = err
				return
			}
			_, writeErr = f.WriteAt([]byte("overwrite"), 1000)
			closeErr = f.Close()
		})
		if openErr != nil {
			t.Fatalf("open O_WRONLY without O_TRUNC: %v; want success", openErr)
		}
		if !errors.Is(writeErr, syscall.EPERM) {
			t.Errorf("pwrite at offset 1000 of a %d-byte file: %v, want EPERM", int64(bigSize), writeErr)
		}
		if closeErr != nil {
			t.Logf("close after the refused write: %v", closeErr)
		}
		compare(t, big, path)
	})

	t.Run("RestartMetad", func(t *testing.T) {
		c.StopMetad(t)
		c.StartMetad(t)
		// Healthy only once the blockds have registered again and
		// reported their blocks.
		c.WaitHealthy(t, time.Minute)

		fresh := c.Mount(t)
		if got, want := find(t, fresh), find(t, src); !slices.Equal(got, want) {
			t.Errorf("after the restart, find lists %d paths, want %d:\n%s", len(got), len(want), listDiff(got, want))
		}
		diffTrees(t, src, fresh)
		t.Log("through the mount made before the restart:")
		diffTrees(t, src, mnt)
	})

	t.Run("MissingReplica", func(t *testing.T) {
		// Only the big file has full blocks.
		var victim string
		for _, p := range c.BlockFiles(t)[c.BlockdDataDirs()[1]] {
			if fi, err := os.Stat(p); err == nil && fi.Size() == blockSize {
				victim = p
				break
			}
		}
		if victim == "" {
			t.Fatalf("no %d-byte block file in %s", blockSize, c.BlockdDataDirs()[1])
		}
		if err := os.Remove(victim); err != nil {
			t.Fatal(err)
		}
		t.Logf("removed %s", victim)

		dropCaches(t)
		compare(t, big, filepath.Join(mnt, "big.bin"))
		fresh := c.Mount(t)
		compare(t, big, filepath.Join(fresh, "big.bin"))
	})
}

// writeSource writes into dir a random file big.bin of bigSize bytes and a
// tree of treeFiles small files spread over treeDirs, and returns the size
// of every file by its path relative to dir.
func writeSource(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	var seed [32]byte
	if s := os.Getenv("CAIRN_TEST_SEED"); s != "" {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != len(seed) {
			t.Fatalf("CAIRN_TEST_SEED=%s: want %d bytes in hex", s, len(seed))
		}
		copy(seed[:], b)
	} else {
		for i := range seed {
			seed[i] = byte(rand.Uint32())
		}
	}
	t.Logf("source data from seed %x (CAIRN_TEST_SEED repeats it)", seed)
	chacha := rand.NewChaCha8(seed)
	rng := rand.New(chacha)

	sizes := map[string]int64{}
	write := func(rel string, n int) {
		b := make([]byte, n)
		chacha.Read(b)
		if err := os.WriteFile(filepath.Join(dir, rel), b, 0o644); err != nil {
			t.Fatal(err)
		}
		sizes[rel] = int64(n)
	}
	write("big.bin", bigSize)
	for _, d := range treeDirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range treeFiles {
		n := rng.IntN(maxSmallSize + 1)
		switch i {
		case 0:
			n = 0 // an empty file has no block
		case 1:
			n = maxSmallSize
		}
		write(filepath.Join(treeDirs[i%len(treeDirs)], fmt.Sprintf("f%03d", i)), n)
	}
	return sizes
}

// checkSizes checks that `ls -lR` through the mount lists exactly the files
// of sizes, each with its size.
func checkSizes(t *testing.T, mnt string, sizes map[string]int64) {
	t.Helper()
	// -n: numeric owners; --time-style=+%s: the time is one field. An entry
	// is then: mode links uid gid size time name.
	out := run(t, "ls", "-lRn", "--time-style=+%s", mnt)
	got := map[string]int64{}
	dir := mnt
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, mnt) && strings.HasSuffix(line, ":") {
			dir = strings.TrimSuffix(line, ":")
			continue
		}
		f := strings.Fields(line)
		if len(f) != 7 || !strings.HasPrefix(f[0], "-") {
			continue
		}
		size, err := strconv.ParseInt(f[4], 10, 64)
		if err != nil {
			t.Errorf("ls: cannot parse the size in %q", line)
			continue
		}
		rel, _ := filepath.Rel(mnt, filepath.Join(dir, f[6]))
		got[rel] = size
	}
	var problems []string
	for rel, want := range sizes {
		if n, ok := got[rel]; !ok {
			problems = append(problems, rel+": not listed")
		} else if n != want {
			problems = append(problems, fmt.Sprintf("%s: size %d, want %d", rel, n, want))
		}
	}
	for rel := range got {
		if _, ok := sizes[rel]; !ok {
			problems = append(problems, rel+": listed, but never copied")
		}
	}
	report(t, "ls -lR through the mount", problems)
	if t.Failed() {
		t.Logf("ls -lRn output:\n%s", out)
	}
}

// checkReplicas checks the blockd data directories: each block of the
// copied files has exactly one replica in each of the three, in the
// finalized directory its id selects, with exactly one .meta beside it; the
// replicas of a block are equally long; and the blocks add up to the files.
func checkReplicas(t *testing.T, c *cluster.Cluster, sizes map[string]int64) {
	t.Helper()
	type replica struct {
		dataDir string
		size    int64
	}
	byID := map[uint64][]replica{}
	var problems []string
	for dataDir, paths := range c.BlockFiles(t) {
		for _, p := range paths {
			id, _ := cluster.BlockID(p)
			fi, err := os.Stat(p)
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			byID[id] = append(byID[id], replica{dataDir, fi.Size()})
			if metas := cluster.MetaFiles(p); len(metas) != 1 {
				problems = append(problems, fmt.Sprintf("%s: %d .meta files beside it %v, want 1", p, len(metas), metas))
			}
			if want := cluster.FinalizedDir(dataDir, id); filepath.Dir(p) != want {
				problems = append(problems, fmt.Sprintf("%s: not in %s", p, want))
			}
		}
	}

	var wantBlocks, wantBytes, gotBytes int64
	for _, n := range sizes {
		wantBlocks += (n + blockSize - 1) / blockSize
		wantBytes += n
	}
	if int64(len(byID)) != wantBlocks {
		problems = append(problems, fmt.Sprintf("%d distinct block ids on disk, want %d (the files' sizes over %d-byte blocks)", len(byID), wantBlocks, blockSize))
	}
	for id, rs := range byID {
		dirs := map[string]bool{}
		for _, r := range rs {
			dirs[r.dataDir] = true
			if r.size != rs[0].size {
				problems = append(problems, fmt.Sprintf("block %d: replicas of %d and %d bytes", id, rs[0].size, r.size))
			}
		}
		if len(rs) != replication || len(dirs) != replication {
			problems = append(problems, fmt.Sprintf("block %d: %d replicas in %d data directories, want %d in %d", id, len(rs), len(dirs), replication, replication))
		}
		gotBytes += rs[0].size
	}
	if gotBytes != wantBytes {
		problems = append(problems, fmt.Sprintf("the blocks hold %d bytes, the files %d", gotBytes, wantBytes))
	}
	report(t, "block files", problems)
}

// diffTrees checks that `diff -r a b` finds no difference.
func diffTrees(t *testing.T, a, b string) {
	t.Helper()
	if out := cluster.Exec(t, "diff", "-r", a, b); out.Code != 0 {
		t.Errorf("diff -r %s %s: exit %d\n%s%s", a, b, out.Code, head(out.Stdout, 40), out.Stderr)
	}
}

// compare checks that `cmp a b` finds the files equal.
func compare(t *testing.T, a, b string) {
	t.Helper()
	if out := cluster.Exec(t, "cmp", a, b); out.Code != 0 {
		t.Errorf("cmp %s %s: exit %d\n%s%s", a, b, out.Code, out.Stdout, out.Stderr)
	}
}

// find returns the paths under dir, relative to it, sorted.
func find(t *testing.T, dir string) []string {
	t.Helper()
	paths := strings.Fields(run(t, "find", dir, "-mindepth", "1", "-printf", "%P\n"))
	slices.Sort(paths)
	return paths
}

// run runs a program that must succeed and returns its stdout.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out := cluster.Exec(t, name, args...)
	if out.Code != 0 {
		t.Fatalf("%s %s: exit %d\n%s", name, strings.Join(args, " "), out.Code, out.Stderr)
	}
	return out.Stdout
}

// within runs f, which works on the mount, and fails the test if it has not
// returned after d. (A hung call is freed by the unmount at cleanup.)
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: no return within %v", what, d)
	}
}

// dropCaches asks the kernel to drop its page, dentry and inode caches, so
// that reads reach the mount again. Only root may; a failure is logged.
func dropCaches(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Log("not root: the kernel's caches are not dropped")
		return
	}
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		t.Logf("dropping the kernel's caches: %v", err)
	}
}

// report fails the test with the first problems found, if any.
func report(t *testing.T, what string, problems []string) {
	t.Helper()
	if len(problems) == 0 {
		return
	}
	slices.Sort(problems)
	const show = 20
	n, more := len(problems), ""
	if n > show {
		problems, more = problems[:show], fmt.Sprintf("\n... and %d more", n-show)
	}
	t.Errorf("%s: %d problems:\n%s%s", what, n, strings.Join(problems, "\n"), more)
}

// listDiff describes how the sorted lists got and want differ.
func listDiff(got, want []string) string {
	var b strings.Builder
	for _, p := range want {
		if _, ok := slices.BinarySearch(got, p); !ok {
			fmt.Fprintf(&b, "missing: %s\n", p)
		}
	}
	for _, p := range got {
		if _, ok := slices.BinarySearch(want, p); !ok {
			fmt.Fprintf(&b, "extra: %s\n", p)
		}
	}
	return head(b.String(), 40)
}

// head returns the first n lines of s.
func head(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) <= n {
		return s
	}
	return strings.Join(lines[:n], "") + fmt.Sprintf("[... %d more lines]\n", len(lines)-n)
}
