package tests

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cairn"
	"cairn/checksum"
	"cairn/client"
	"cairn/tests/cluster"
)

// blockdWait bounds how long these tests wait for a blockd or metad to act:
// a generous deadline, not a measure of speed.
const blockdWait = time.Minute

// TestScannerAndVerifyFindAFlippedByte flips one byte in a finalized
// replica of a real cluster: `cairn blockd verify` refuses the directory
// while its blockd runs, and once it is stopped exits 1 naming the block
// and the chunk; restarted, the blockd's scanner reports the replica to
// metad with that reason, metad copies the block to the fourth blockd and
// only then has the bad replica deleted, and the file still reads back
// whole from the other replicas.
func TestScannerAndVerifyFindAFlippedByte(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 4, BlockSize: 1 << 20, Replication: 3,
		BlockdArgs: []string{"--scan-period", "2s", "--scan-rate", "64M"}})
	cl := volClient(t, c)
	ctx := asMe()
	data := randomBytes(3<<20+777, 11)
	putFile(t, cl, "/scanned", data)
	c.WaitHealthy(t, blockdWait)

	fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/scanned"})
	if err != nil {
		t.Fatal(err)
	}
	blk := fb.Blocks[1]
	victim := blk.Locations[0]
	i := c.BlockdIndex(victim.StorageID)
	if i < 0 {
		t.Fatalf("no blockd with storage ID %s", victim.StorageID)
	}
	dir := c.BlockdDataDirs()[i]
	path := filepath.Join(cluster.FinalizedDir(dir, uint64(blk.ID)), checksum.BlockFileName(uint64(blk.ID)))
	metaPath := filepath.Join(filepath.Dir(path), checksum.MetaFileName(uint64(blk.ID), uint64(blk.GenStamp)))
	chunk := chunkSizeOf(t, metaPath)
	off := int64(2*chunk + 100)
	bad := off / int64(chunk)

	bin := cluster.Binary(t)
	if out := cluster.Exec(t, bin, "blockd", "verify", "--data", dir); out.Code != 2 || !strings.Contains(out.Stderr, "in use by a running blockd") {
		t.Errorf("verify of a live blockd's directory: exit %d, want 2 and a refusal\nstdout:\n%s\nstderr:\n%s", out.Code, out.Stdout, out.Stderr)
	}

	c.KillBlockd(t, i)
	flipAt(t, path, off)
	out := cluster.Exec(t, bin, "blockd", "verify", "--data", dir)
	want := fmt.Sprintf("%s %s: checksum mismatch at chunk %d (offset %d)", blk.Block, path, bad, bad*int64(chunk))
	if out.Code != 1 || !strings.Contains(out.Stdout, want) {
		t.Errorf("cairn blockd verify --data %s: exit %d, want 1 and the line\n%s\nstdout:\n%s\nstderr:\n%s", dir, out.Code, want, out.Stdout, out.Stderr)
	}
	if n := strings.Count(out.Stdout, ": checksum mismatch"); n != 1 {
		t.Errorf("verify reports %d bad replicas, want 1:\n%s", n, out.Stdout)
	}
	// Another block the victim holds (with four blockds it holds three
	// replicas of every four).
	for _, other := range fb.Blocks {
		if other.ID == blk.ID || !slices.ContainsFunc(other.Locations, func(n cairn.Node) bool { return n.StorageID == victim.StorageID }) {
			continue
		}
		if out := cluster.Exec(t, bin, "blockd", "verify", "--data", dir, "--block", fmt.Sprint(other.ID)); out.Code != 0 {
			t.Errorf("verify --block of a good replica: exit %d\n%s%s", out.Code, out.Stdout, out.Stderr)
		}
		break
	}

	// Nothing has read the replica since: only the scanner can find it.
	c.StartBlockd(t, i)
	reason := fmt.Sprintf("checksum mismatch at chunk %d (offset %d)", bad, bad*int64(chunk))
	c.WaitLog(t, fmt.Sprintf("blockd%d", i), blockdWait, "block scanner found a bad replica", blk.Block.String(), reason)
	c.WaitLog(t, "metad", blockdWait, "replica reported corrupt", blk.Block.String(), victim.StorageID, reason)

	readBack(t, cl, "/scanned", data)

	// metad copies the block from a good replica to the blockd that has
	// none, and once the block has its 3 good replicas again it has the
	// bad one deleted (the monitor may later copy a good one back to that
	// blockd). Either way the corrupt bytes are gone.
	good := data[blk.Offset : blk.Offset+blk.Len]
	deadline := time.Now().Add(blockdWait)
	for {
		got, err := os.ReadFile(path)
		if os.IsNotExist(err) || (err == nil && bytes.Equal(got, good)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the corrupt replica %s is still there %v after the scanner reported it (read: %v)", path, blockdWait, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	readBack(t, cl, "/scanned", data)
}

// TestOneOfTwoDisksFails runs a blockd on two small tmpfs disks and
// unmounts one under it: the blockd takes that disk out of service,
// reports its replicas lost (fsck shows them missing), goes on serving the
// replicas of the other disk, and puts new files on the good disk.
func TestOneOfTwoDisksFails(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	good, failing := filepath.Join(base, "disk0"), filepath.Join(base, "disk1")
	mountTmpfs(t, good, "8m")
	mountTmpfs(t, failing, "8m")
	c := cluster.Start(t, cluster.Config{Blockds: 1, BlockSize: 1 << 20, Replication: 1,
		BlockdData: [][]string{{good, failing}},
		BlockdArgs: []string{"--failed-volumes-tolerated", "1", "--disk-check", "200ms"}})
	cl := volClient(t, c)

	const files = 6
	contents := map[string][]byte{}
	where := map[string]string{} // file -> disk
	for k := range files {
		name := fmt.Sprintf("/before%d", k)
		contents[name] = randomBytes(1<<20-1000+k, uint64(100+k))
		putFile(t, cl, name, contents[name])
		where[name] = diskOf(t, cl, name, good, failing)
	}
	var onGood, onFailing []string
	for name, disk := range where {
		if disk == good {
			onGood = append(onGood, name)
		} else {
			onFailing = append(onFailing, name)
		}
	}
	if len(onGood) == 0 || len(onFailing) == 0 {
		t.Fatalf("new replicas did not spread over both disks: %v", where)
	}
	c.WaitHealthy(t, blockdWait)

	// The disk vanishes: its mount goes, the empty directory under it stays.
	if out := cluster.Exec(t, "umount", "-l", failing); out.Code != 0 {
		t.Fatalf("umount -l %s: exit %d: %s", failing, out.Code, out.Stderr)
	}
	c.WaitLog(t, "blockd0", blockdWait, "data directory failed; taken out of service", failing, "VERSION vanished")
	c.WaitLog(t, "blockd0", blockdWait, "replicas lost with a failed volume reported", fmt.Sprintf(`"replicas": %d`, len(onFailing)))

	out, code := c.Run(t, "fsck", "/")
	if code != 1 {
		t.Errorf("fsck / after a disk failed with replication 1: exit %d, want 1 (missing blocks)", code)
	}
	for _, name := range onFailing {
		if !strings.Contains(out, name+": MISSING block") {
			t.Errorf("fsck does not show %s (on the failed disk) missing:\n%s", name, out)
		}
	}
	for _, name := range onGood {
		if strings.Contains(out, name+":") {
			t.Errorf("fsck reports %s, on the good disk:\n%s", name, out)
		}
		readBack(t, cl, name, contents[name])
	}

	for k := range 3 {
		name := fmt.Sprintf("/after%d", k)
		data := randomBytes(1<<20-3000+k, uint64(200+k))
		putFile(t, cl, name, data)
		if disk := diskOf(t, cl, name, good, failing); disk != good {
			t.Errorf("%s written after the failure landed on %s", name, disk)
		}
		readBack(t, cl, name, data)
	}
	if ents, _ := os.ReadDir(failing); len(ents) != 0 {
		t.Errorf("the blockd wrote into the failed disk's directory: %v", ents)
	}
}

// TestTooManyFailedDisksStopTheBlockd fails one of two disks of a blockd
// that tolerates none: it stops, with an error naming the disk and why.
func TestTooManyFailedDisksStopTheBlockd(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	disk0, disk1 := filepath.Join(base, "disk0"), filepath.Join(base, "disk1")
	mountTmpfs(t, disk0, "8m")
	mountTmpfs(t, disk1, "8m")
	c := cluster.Start(t, cluster.Config{Blockds: 1, Replication: 1,
		BlockdData: [][]string{{disk0, disk1}}, BlockdArgs: []string{"--disk-check", "200ms"}})
	if out := cluster.Exec(t, "umount", "-l", disk1); out.Code != 0 {
		t.Fatalf("umount -l %s: exit %d: %s", disk1, out.Code, out.Stderr)
	}
	status := c.WaitBlockdExit(t, 0, blockdWait)
	if status != "exit status 1" {
		t.Errorf("blockd ended with %s, want exit status 1", status)
	}
	c.WaitLog(t, "blockd0", 0, "cairn blockd: 1 of 2 data directories failed, more than --failed-volumes-tolerated 0", disk1, "VERSION vanished")
}

// requireRoot stops a test that needs root (to mount) when not root: it
// skips, except in CI (CI=true), where such a test may not skip.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	reason := fmt.Sprintf("needs root to mount tmpfs (euid %d)", os.Geteuid())
	if os.Getenv("CI") == "true" {
		t.Fatal(reason + " (CI=true: tests that need root may not skip)")
	}
	t.Skip(reason)
}

// mountTmpfs mounts a tmpfs of size on dir (made if missing) and unmounts
// it when the test ends.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		reason := fmt.Sprintf("mount -t tmpfs on %s: %v: %s", dir, err, out)
		if os.Getenv("CI") == "true" {
			t.Fatal(reason)
		}
		t.Skip(reason)
	}
	t.Cleanup(func() {
		// Already gone if the test unmounted it.
		if mounted(dir) {
			if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
				t.Errorf("umount -l %s: %v: %s", dir, err, out)
			}
		}
	})
}

// mounted reports whether dir is a mount point, from /proc/self/mountinfo.
func mounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// asMe is a context carrying the identity of the user running the test,
// who also runs metad and is its superuser.
func asMe() context.Context {
	name := strconv.Itoa(os.Getuid())
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return cairn.WithIdentity(context.Background(), cairn.Identity{User: name})
}

func volClient(t *testing.T, c *cluster.Cluster) *client.Client {
	t.Helper()
	cl, err := client.Dial(c.MetadAddr(), client.Options{Creds: c.ClientCreds()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func putFile(t *testing.T, cl *client.Client, path string, data []byte) {
	t.Helper()
	w, err := cl.Create(asMe(), path, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close %s: %v", path, err)
	}
}

func readBack(t *testing.T, cl *client.Client, path string, want []byte) {
	t.Helper()
	r, err := cl.Open(asMe(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s: read %d bytes (%v), want %d equal bytes", path, len(got), err, len(want))
	}
}

// diskOf returns which of the data directories holds the finalized replica
// of the one block of path.
func diskOf(t *testing.T, cl *client.Client, path string, dirs ...string) string {
	t.Helper()
	fb, err := cl.NS.BlockLocations(asMe(), cairn.FileRef{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if len(fb.Blocks) != 1 {
		t.Fatalf("%s has %d blocks, want 1", path, len(fb.Blocks))
	}
	id := uint64(fb.Blocks[0].ID)
	var found []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(cluster.FinalizedDir(d, id), checksum.BlockFileName(id))); err == nil {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Fatalf("the replica of %s (block %d) is in %d of the data directories %v, want 1", path, id, len(found), dirs)
	}
	return found[0]
}

// chunkSizeOf reads the chunk size from a .meta's header.
func chunkSizeOf(t *testing.T, metaPath string) int {
	t.Helper()
	f, err := os.Open(metaPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hb := make([]byte, checksum.HeaderSize)
	if _, err := io.ReadFull(f, hb); err != nil {
		t.Fatal(err)
	}
	h, err := checksum.ParseHeader(hb)
	if err != nil {
		t.Fatal(err)
	}
	return int(h.ChunkSize)
}

func flipAt(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x08
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
