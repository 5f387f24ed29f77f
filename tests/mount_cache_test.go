package tests

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"cairn/tests/cluster"
)

// A file read twice through one mount (the second time from the kernel's
// page cache) and then appended to through another mount is read whole,
// with the new bytes, through the first at once: its next open sees the
// new version and drops the cached pages and size.
func TestMountReReadAfterRemoteAppend(t *testing.T) {
	RequireFUSE(t)
	c := cluster.Start(t, cluster.Config{Blockds: 1, Replication: 1})
	a, b := c.Mount(t), c.Mount(t)
	want := bytes.Repeat([]byte("cairn "), 50000)
	if err := os.WriteFile(filepath.Join(a, "f"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if got, err := os.ReadFile(filepath.Join(a, "f")); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read %d through the first mount: %d bytes, %v", i, len(got), err)
		}
	}
	f, err := os.OpenFile(filepath.Join(b, "f"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	more := []byte("appended elsewhere\n")
	if _, err := f.Write(more); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want = append(want, more...)
	got, err := os.ReadFile(filepath.Join(a, "f"))
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("re-read through the first mount after the append: %d bytes of %d, %v; tail %q", len(got), len(want), err, got[max(0, len(got)-30):])
	}
}
