package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cairn/client"
	"cairn/tests/cluster"
)

// TestFullDisksENOSPC gives each of three blockds a 24 MiB tmpfs and
// fills them through a real mount. dd fails with ENOSPC at a write (not
// only at close); a file created while the disks are full refuses its
// first write, so `echo hello > f` fails; no file is left open for
// writing; the bytes dd was told were written up to its last full block
// read back. After rm the blockds' disks empty again and a new file can
// be written.
func TestFullDisksENOSPC(t *testing.T) {
	RequireFUSE(t)
	base := t.TempDir()
	var data [][]string
	for i := range 3 {
		dir := filepath.Join(base, fmt.Sprintf("disk%d", i))
		mountTmpfs(t, dir, "24m")
		data = append(data, []string{dir})
	}
	c := cluster.Start(t, cluster.Config{Blockds: 3, Replication: 3, BlockSize: 4 << 20, BlockdData: data,
		// Replicas a failed pipeline left behind are known to metad from the
		// next full report, and deleted then.
		BlockdArgs: []string{"--block-report-interval", "2s"}})
	mnt := c.Mount(t)
	cl := dial(t, c)
	ctx := context.Background()

	src := filepath.Join(t.TempDir(), "src")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, newStream(41), 64<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	// dd reports a failed write(2) as "error writing", a failed close(2)
	// as "closing output file".
	out, err := exec.Command("dd", "if="+src, "of="+filepath.Join(mnt, "fill"), "bs=1M").CombinedOutput()
	t.Logf("dd into full disks: %v\n%s", err, out)
	if err == nil {
		t.Fatalf("dd of 64 MiB into 24 MiB of disks succeeded")
	}
	if !strings.Contains(string(out), "error writing") || !strings.Contains(string(out), "No space left on device") {
		t.Errorf("dd did not fail at a write with ENOSPC:\n%s", out)
	}

	// The replicas a failed pipeline leaves are deleted at the next full
	// report, which may give a block's room back (and a blockd that was
	// not yet full when dd failed has room too): fill what is left, once
	// the cluster has settled, until a file gets no byte at all.
	for i := 0; ; i++ {
		settleDisks(t, c, cl)
		name := fmt.Sprintf("fill%d", i)
		out, err := exec.Command("dd", "if="+src, "of="+filepath.Join(mnt, name), "bs=1M").CombinedOutput()
		if err == nil {
			t.Fatalf("dd of 64 MiB into full disks succeeded:\n%s", out)
		}
		fi, err := cl.NS.Stat(ctx, "/"+name)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("dd into what was left: /%s holds %d bytes", name, fi.Size)
		if fi.Size == 0 {
			break
		}
		if i == 4 {
			t.Fatalf("the disks still took bytes after %d fills", i+2)
		}
	}

	// A new file while the disks are full: its first write is refused (bash
	// names the errno; dash says "I/O error" for any).
	out, err = exec.Command("bash", "-c", "echo hello > "+filepath.Join(mnt, "small")).CombinedOutput()
	t.Logf("echo hello > small: %v %s", err, out)
	if err == nil {
		t.Errorf("echo hello > small succeeded on full disks")
	} else if !strings.Contains(string(out), "No space left on device") {
		t.Errorf("echo hello > small failed, but not with ENOSPC: %s", out)
	}

	// The same from a program that checks each write(2).
	g, err := os.Create(filepath.Join(mnt, "prog"))
	if err != nil {
		t.Fatal(err)
	}
	_, werr := g.Write([]byte("hello\n"))
	cerr := g.Close()
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Errorf("write on full disks: %v (close: %v), want ENOSPC", werr, cerr)
	}

	// Nothing stays open for writing.
	deadline := time.Now().Add(30 * time.Second)
	for {
		es, err := cl.ReadDir(ctx, "/")
		if err != nil {
			t.Fatal(err)
		}
		var open []string
		for _, e := range es {
			if e.Writing {
				open = append(open, e.Name)
			}
		}
		if len(open) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("files still open for writing 30 s after their writers failed: %v", open)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// What the file holds is a prefix of what dd wrote.
	fi, err := cl.NS.Stat(ctx, "/fill")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("/fill holds %d bytes", fi.Size)
	if fi.Size > 0 {
		checkPrefix(t, cl, "/fill", 41, fi.Size)
	}

	// rm frees the space; a new file fits again.
	names, err := filepath.Glob(filepath.Join(mnt, "fill*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range append(names, filepath.Join(mnt, "small"), filepath.Join(mnt, "prog")) {
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Error(err)
		}
	}
	deadline = time.Now().Add(time.Minute)
	for {
		var used []int64
		high := false
		for _, d := range c.BlockdDataDirs() {
			var st syscall.Statfs_t
			if err := syscall.Statfs(d, &st); err != nil {
				t.Fatal(err)
			}
			u := int64(st.Blocks-st.Bfree) * st.Bsize
			used = append(used, u)
			high = high || u > 2<<20 // the metadata reserve (1 MiB) and the directories stay
		}
		if !high {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("blockds' disks still use %v bytes a minute after rm", used)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// and metad hears of it from the next heartbeats.
	for deadline = time.Now().Add(time.Minute); ; {
		rep, err := cl.NS.Report(ctx)
		if err != nil {
			t.Fatal(err)
		}
		roomy := 0
		for _, n := range rep.Nodes {
			if n.Live && n.Remaining >= 16<<20 {
				roomy++
			}
		}
		if roomy == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metad does not see the freed space a minute after rm: %+v", rep.Nodes)
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, err = exec.Command("dd", "if="+src, "of="+filepath.Join(mnt, "again"), "bs=1M", "count=8").CombinedOutput()
	if err != nil {
		t.Fatalf("dd of 8 MiB after rm: %v\n%s", err, out)
	}
	checkPrefix(t, cl, "/again", 41, 8<<20)
}

// settleDisks waits until no file is open for writing and the blockds'
// disks' use has not changed over three block report intervals (2 s each):
// what failed pipelines left behind is deleted by then.
func settleDisks(t *testing.T, c *cluster.Cluster, cl *client.Client) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	var last []int64
	stableSince := time.Now()
	for {
		es, err := cl.ReadDir(ctx, "/")
		if err != nil {
			t.Fatal(err)
		}
		open := false
		for _, e := range es {
			open = open || e.Writing
		}
		var used []int64
		for _, d := range c.BlockdDataDirs() {
			var st syscall.Statfs_t
			if err := syscall.Statfs(d, &st); err != nil {
				t.Fatal(err)
			}
			used = append(used, int64(st.Blocks-st.Bfree)*st.Bsize)
		}
		if open || fmt.Sprint(used) != fmt.Sprint(last) {
			last, stableSince = used, time.Now()
		} else if time.Since(stableSince) >= 6*time.Second {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not settle in a minute: disks use %v, a file open for writing: %v", used, open)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
