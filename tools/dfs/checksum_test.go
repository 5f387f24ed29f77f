package dfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cairn/tests/cluster"
)

// TestChecksumDamagedMeta: a .meta whose chunk checksums no longer match
// the block's bytes gives no file checksum (the blockd re-reads the bytes
// against them), rather than a wrong one.
func TestChecksumDamagedMeta(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 1, Replication: 1})
	local := filepath.Join(t.TempDir(), "f")
	writeFile(t, local, strings.Repeat("cairn ", 10000))
	if _, code := c.Run(t, "dfs", "-put", local, "/f"); code != 0 {
		t.Fatal("put failed")
	}
	good, code := c.Run(t, "dfs", "-checksum", "/f")
	if code != 0 || !strings.HasPrefix(good, "/f\tHH64-COMPOSITE-") {
		t.Fatalf("checksum of a sound file: %q, exit %d", good, code)
	}
	var metas []string
	for _, files := range c.BlockFiles(t) {
		for _, f := range files {
			metas = append(metas, cluster.MetaFiles(f)...)
		}
	}
	if len(metas) != 1 {
		t.Fatalf("want one .meta, found %v", metas)
	}
	b, err := os.ReadFile(metas[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff // the last chunk's checksum
	if err := os.WriteFile(metas[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := c.RunOutput("dfs", "-checksum", "/f")
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 1 || res.Stdout != "" || !strings.Contains(res.Stderr, "checksum: `/f': ") || !strings.Contains(res.Stderr, "mismatch") {
		t.Errorf("checksum of a file with a damaged .meta: stdout %q, stderr %q, exit %d", res.Stdout, res.Stderr, res.Code)
	}
}
