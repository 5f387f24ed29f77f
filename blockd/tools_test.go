package blockd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"cairn/checksum"
)

func runTool(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

// dataDir makes a blockd data directory holding the given replicas, as a
// stopped blockd leaves it.
func dataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	vs := openVolumes(t, []string{dir}, VolumeOptions{})
	vs.Close()
	return dir
}

func TestVerifyGoodAndBad(t *testing.T) {
	a, b := dataDir(t), dataDir(t)
	good := putReplica(t, a, 1<<30+1, 1001, pattern(40000, 1), 16<<10)
	putReplica(t, a, 1<<30+2, 1002, nil, 16<<10) // empty block
	bad := putReplica(t, b, 1<<30+3, 1003, pattern(40000, 3), 16<<10)
	data := a + "," + b

	out, errs, code := runTool(t, "verify", "--data", data)
	if code != 0 || !strings.Contains(out, "Verified 3 replicas (80000 bytes)") || !strings.Contains(out, "all good") {
		t.Fatalf("verify of good replicas: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}

	blk := filepath.Join(b, "current", "finalized", checksum.FinalizedSubdir(uint64(bad.ID)), checksum.BlockFileName(uint64(bad.ID)))
	before, _ := os.ReadFile(blk)
	flip(t, blk, 2*(16<<10)+5)
	after, _ := os.ReadFile(blk)
	out, errs, code = runTool(t, "verify", "--data", data)
	want := "blk_1073741827_1003 " + blk + ": checksum mismatch at chunk 2 (offset 32768)"
	if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "1 bad") {
		t.Errorf("verify with a flipped byte: exit %d, want 1 and the line\n%s\nstdout:\n%s\nstderr:\n%s", code, want, out, errs)
	}
	if strings.Contains(out, "blk_1073741825") {
		t.Errorf("a good replica was reported:\n%s", out)
	}
	if now, _ := os.ReadFile(blk); !bytes.Equal(now, after) || bytes.Equal(now, before) {
		t.Errorf("verify changed the block file")
	}

	// Only one block.
	if out, _, code := runTool(t, "verify", "--data", data, "--block", strconv.FormatUint(uint64(good.ID), 10)); code != 0 || !strings.Contains(out, "Verified 1 replicas") {
		t.Errorf("verify --block of a good replica: exit %d\n%s", code, out)
	}
	if out, _, code := runTool(t, "verify", "--data", data, "--block", strconv.FormatUint(uint64(bad.ID), 10)); code != 1 || !strings.Contains(out, "chunk 2") {
		t.Errorf("verify --block of the bad replica: exit %d\n%s", code, out)
	}
	if _, errs, code := runTool(t, "verify", "--data", data, "--block", "99"); code != 1 || !strings.Contains(errs, "no finalized replica of block 99") {
		t.Errorf("verify --block of an absent block: exit %d\n%s", code, errs)
	}

	// A block without .meta, and a leftover older .meta.
	leaf := filepath.Dir(blk)
	if err := os.WriteFile(filepath.Join(leaf, "blk_1073741828"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	putReplica(t, b, 1<<30+3, 900, pattern(10, 3), 512) // also rewrites the block file
	if err := os.WriteFile(blk, after, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, code = runTool(t, "verify", "--data", b)
	for _, w := range []string{
		"blk_1073741828 " + filepath.Join(leaf, "blk_1073741828") + ": missing or unreadable meta",
		"blk_1073741827_900 " + blk + ": stale generation stamp: blk_1073741827_900.meta beside the newer blk_1073741827_1003.meta",
		"3 bad",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("verify output lacks %q:\n%s", w, out)
		}
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
}

func TestVerifyRefusesALiveOrForeignDirectory(t *testing.T) {
	dir := dataDir(t)
	vs := openVolumes(t, []string{dir}, VolumeOptions{})
	_, errs, code := runTool(t, "verify", "--data", dir)
	if code != 2 || !strings.Contains(errs, "in use by a running blockd (pid "+strconv.Itoa(os.Getpid())+",") {
		t.Errorf("verify of a directory in use: exit %d\n%s", code, errs)
	}
	vs.Close()
	if _, errs, code := runTool(t, "verify", "--data", dir); code != 0 {
		t.Errorf("verify after the blockd stopped: exit %d\n%s", code, errs)
	}

	empty := t.TempDir()
	if _, errs, code := runTool(t, "verify", "--data", empty); code != 2 || !strings.Contains(errs, "is not a blockd data directory") {
		t.Errorf("verify of a directory that is not a blockd's: exit %d\n%s", code, errs)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("verify wrote into a foreign directory: %v", ents)
	}
	for _, args := range [][]string{{"verify"}, {"verify", "--data", dir, "--block", "x"}, {"verify", "--data", dir, "extra"}, {"verify", "--data", dir + ",,"}} {
		if _, _, code := runTool(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestComputeMeta(t *testing.T) {
	dir := dataDir(t)
	const chunk = 4096
	b := putReplica(t, dir, 1<<30+9, 1234, pattern(50000, 7), chunk)
	leaf := filepath.Join(dir, "current", "finalized", checksum.FinalizedSubdir(uint64(b.ID)))
	blk := filepath.Join(leaf, checksum.BlockFileName(uint64(b.ID)))
	orig := filepath.Join(leaf, checksum.MetaFileName(uint64(b.ID), uint64(b.GenStamp)))
	want, _ := os.ReadFile(orig)

	// Everything from the names and the .meta beside the block.
	out := filepath.Join(t.TempDir(), "rebuilt.meta")
	stdout, stderr, code := runTool(t, "compute-meta", "--block", blk, "--out", out)
	if code != 0 || !strings.Contains(stdout, "block 1073741833, generation stamp 1234, chunk size 4096, 50000 bytes, 13 checksums") {
		t.Fatalf("compute-meta: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Errorf("rebuilt .meta differs from the original (%d vs %d bytes)", len(got), len(want))
	}
	if !strings.Contains(stderr, "only under the name blk_1073741833_1234.meta") {
		t.Errorf("no note about the .meta's name: %q", stderr)
	}

	// --out exists: refused, unchanged.
	if _, stderr, code := runTool(t, "compute-meta", "--block", blk, "--out", orig, "--chunk-size", "512"); code != 2 || !strings.Contains(stderr, "exists") {
		t.Errorf("compute-meta over an existing file: exit %d\n%s", code, stderr)
	}
	if got, _ := os.ReadFile(orig); !bytes.Equal(got, want) {
		t.Errorf("refused compute-meta changed %s", orig)
	}

	// The .meta lost: the stamp must be given; the chunk size is the
	// default unless given.
	if err := os.Remove(orig); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runTool(t, "compute-meta", "--block", blk, "--out", orig); code != 2 || !strings.Contains(stderr, "give --genstamp") {
		t.Errorf("compute-meta without a stamp to find: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := runTool(t, "compute-meta", "--block", blk, "--out", orig, "--genstamp", "1234", "--chunk-size", "4096"); code != 0 {
		t.Fatalf("compute-meta --genstamp: exit %d\n%s", code, stderr)
	}
	if got, _ := os.ReadFile(orig); !bytes.Equal(got, want) {
		t.Errorf("rebuilt .meta differs from the original")
	}
	if out, _, code := runTool(t, "verify", "--data", dir); code != 0 {
		t.Errorf("verify after compute-meta: exit %d\n%s", code, out)
	}

	// A block file by another name needs --id; bad values are refused.
	other := filepath.Join(t.TempDir(), "saved-block")
	if err := os.WriteFile(other, pattern(100, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--block", other, "--out", other + ".meta", "--genstamp", "5"}, "give --id"},
		{[]string{"--block", other, "--out", other + ".meta", "--id", "x", "--genstamp", "5"}, "not a block ID"},
		{[]string{"--block", other, "--out", other + ".meta", "--id", "7", "--genstamp", "-5"}, "not a generation stamp"},
		{[]string{"--block", other, "--out", other + ".meta", "--id", "7", "--genstamp", "5", "--chunk-size", "-1"}, "outside 1..16777216"},
		{[]string{"--block", other, "--out", other + ".meta", "--id", "7", "--genstamp", "5", "--chunk-size", "16777217"}, "outside"},
		{[]string{"--block", other}, "required"},
	} {
		_, stderr, code := runTool(t, append([]string{"compute-meta"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("compute-meta %v: exit %d, want 2 with %q\n%s", tc.args, code, tc.want, stderr)
		}
	}
	if _, err := os.Stat(other + ".meta"); err == nil {
		t.Errorf("a refused compute-meta wrote %s.meta", other)
	}
	if _, stderr, code := runTool(t, "compute-meta", "--block", other, "--out", other+".meta", "--id", "7", "--genstamp", "5", "--chunk-size", "64"); code != 0 {
		t.Fatalf("compute-meta --id: exit %d\n%s", code, stderr)
	}
	m, _ := os.Open(other + ".meta")
	defer m.Close()
	h, sums, err := checksum.ReadMeta(m)
	if err != nil || h.BlockID != 7 || h.GenStamp != 5 || h.ChunkSize != 64 || len(sums) != 2 {
		t.Errorf("written .meta: header %+v, %d sums, %v", h, len(sums), err)
	}

	// Several .meta files beside the block: ambiguous.
	putReplica(t, dir, 1<<30+9, 1200, pattern(50000, 7), chunk)
	if _, stderr, code := runTool(t, "compute-meta", "--block", blk, "--out", filepath.Join(t.TempDir(), "x")); code != 2 || !strings.Contains(stderr, "several .meta files") {
		t.Errorf("compute-meta with two .meta beside: exit %d\n%s", code, stderr)
	}
}
