package tests

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cairn/tests/cluster"
)

// whConcat: CONCAT through addr (curl -L) moves the sources' blocks to the
// end of the target, the mount shows the concatenated bytes, the sources
// are gone and fsck finds the target HEALTHY; a refused CONCAT is an
// IllegalArgumentException that changes nothing. On metad's endpoint,
// `cairn dfs -concat` does the same.
func whConcat(t *testing.T, c *cluster.Cluster, w whAuth, addr, mnt, dir string, dfs bool) {
	const mib = 1 << 20
	tmp := t.TempDir()
	put := func(name string, n int) []byte {
		t.Helper()
		b := bytes.Repeat([]byte(name[:1]), n)
		src := filepath.Join(tmp, name)
		if err := os.WriteFile(src, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if r := w.curlOut(t, "-X", "PUT", "-T", src, w.url(addr, dir+"/"+name, "CREATE", "blocksize=1048576")); r[1] != r[2] {
			t.Fatalf("CREATE %s: HTTP %s: %s", name, r[1], r[0])
		}
		return b
	}
	if r := w.curlOut(t, "-X", "PUT", w.url(addr, dir, "MKDIRS")); r[1] != r[2] {
		t.Fatalf("MKDIRS: HTTP %s: %s", r[1], r[0])
	}
	want := append(append(put("target", mib), put("one", mib)...), put("two", 1000)...)
	extra := put("short", 10)

	// The target's last block would be followed by another though short.
	body, code := w.curl(t, "-X", "POST", w.url(addr, dir+"/short", "CONCAT", "sources="+dir+"/one"))
	if code != "400" || !strings.Contains(body, "IllegalArgumentException") || !strings.Contains(body, "only a full block") {
		t.Fatalf("CONCAT after a short block: HTTP %s %s, want 400 IllegalArgumentException", code, body)
	}
	body, code = w.curl(t, "-X", "POST", w.url(addr, dir+"/target", "CONCAT", "sources="+dir+"/one,"+dir+"/two"))
	if code != "200" || body != "" {
		t.Fatalf("CONCAT: HTTP %s %q, want 200 and no body", code, body)
	}
	got, err := os.ReadFile(filepath.Join(mnt, dir, "target"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the mount shows %d bytes of the target (%v), want %d: the target's then the sources'", len(got), err, len(want))
	}
	for _, s := range []string{"one", "two"} {
		if _, err := os.Stat(filepath.Join(mnt, dir, s)); !os.IsNotExist(err) {
			t.Fatalf("source %s after CONCAT: %v, want it gone", s, err)
		}
	}
	if out, code := c.Run(t, "fsck", dir); code != 0 || !strings.Contains(out, "HEALTHY") {
		t.Fatalf("fsck %s after CONCAT: exit %d\n%s", dir, code, out)
	}
	if dfs {
		// Hadoop's -concat asks two sources at least.
		if _, code := c.Run(t, "dfs", "-concat", dir+"/short", dir+"/target"); code != 1 {
			t.Fatalf("dfs -concat with one source: exit %d, want 1", code)
		}
		put("three", mib)
		put("four", 5)
		if out, code := c.Run(t, "dfs", "-concat", dir+"/target", dir+"/three", dir+"/four"); code != 1 || out != "" {
			t.Fatalf("dfs -concat after the target's short block: exit %d %q, want 1", code, out)
		}
		if out, code := c.Run(t, "dfs", "-concat", dir+"/three", dir+"/four", dir+"/short"); code != 1 || out != "" {
			t.Fatalf("dfs -concat with a short inner block: exit %d %q, want 1", code, out)
		}
		put("five", mib)
		if out, code := c.Run(t, "dfs", "-concat", dir+"/five", dir+"/three", dir+"/four"); code != 0 || out != "" {
			t.Fatalf("dfs -concat: exit %d %q, want 0 and nothing printed", code, out)
		}
		got, err := os.ReadFile(filepath.Join(mnt, dir, "five"))
		if err != nil || len(got) != 2*mib+5 || got[mib] != 't' || got[2*mib] != 'f' {
			t.Fatalf("after dfs -concat the mount shows %d bytes (%v), want %d", len(got), err, 2*mib+5)
		}
	}
	if got, err := os.ReadFile(filepath.Join(mnt, dir, "short")); err != nil || !bytes.Equal(got, extra) {
		t.Fatalf("a refused concat changed its target: %d bytes (%v)", len(got), err)
	}
}
