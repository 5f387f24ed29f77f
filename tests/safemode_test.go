package tests

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cairn/tests/cluster"
)

// TestSafeMode: a metad restarted over a namespace with blocks is
// read-only until the blockds report (the mount answers EROFS and logs
// why, `cairn admin -safemode get` says how far the reports are), then
// writable again after the extension; an administrator enters and leaves
// safe mode by hand.
func TestSafeMode(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 3, Replication: 2, BlockSize: 256 << 10, SafeModeExtension: 2 * time.Second})
	mnt := c.Mount(t)
	data := bytes.Repeat([]byte("safe mode "), 100_000) // 1 MB: four blocks
	for _, name := range []string{"a", "b"} {
		must(t, os.WriteFile(filepath.Join(mnt, name), data, 0o644))
	}
	c.WaitHealthy(t, time.Minute)

	c.StopMetad(t)
	c.KillBlockds(t)
	c.StartMetadInSafeMode(t)
	out, code := c.Run(t, "admin", "-safemode", "get")
	if code != 0 || !strings.HasPrefix(out, "Safe mode is ON\n") || !strings.Contains(out, "needs additional 8 blocks to reach the threshold 0.9990 of total blocks 8") {
		t.Fatalf("admin -safemode get with no blockd: exit %d:\n%s", code, out)
	}
	// Writes are refused, reads of the namespace still served.
	err := os.WriteFile(filepath.Join(mnt, "new"), []byte("x"), 0o644)
	if !errors.Is(err, syscall.EROFS) {
		t.Fatalf("create in safe mode: %v, want EROFS", err)
	}
	if err := os.Mkdir(filepath.Join(mnt, "dir"), 0o755); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("mkdir in safe mode: %v, want EROFS", err)
	}
	if err := os.Rename(filepath.Join(mnt, "a"), filepath.Join(mnt, "c")); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("rename in safe mode: %v, want EROFS", err)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "a")); err != nil || fi.Size() != int64(len(data)) {
		t.Fatalf("stat in safe mode: %v, %v", fi, err)
	}
	c.WaitLog(t, "mount0", 10*time.Second, "warn", "metad is in safe mode", "needs additional")

	c.StartBlockds(t)
	c.WaitSafeModeOff(t, time.Minute)
	c.WaitLog(t, "metad", 10*time.Second, "safe mode is off")
	must(t, os.WriteFile(filepath.Join(mnt, "new"), []byte("x"), 0o644))
	for _, name := range []string{"a", "b"} {
		got, err := os.ReadFile(filepath.Join(mnt, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s after safe mode: %d bytes, %v", name, len(got), err)
		}
	}

	// By hand.
	if out, code := c.Run(t, "admin", "-safemode", "enter"); code != 0 || !strings.Contains(out, "turned on manually") {
		t.Fatalf("admin -safemode enter: exit %d:\n%s", code, out)
	}
	if err := os.WriteFile(filepath.Join(mnt, "new2"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("create in safe mode entered by hand: %v, want EROFS", err)
	}
	if out, code := c.Run(t, "admin", "-safemode", "leave"); code != 0 || out != "Safe mode is OFF\n" {
		t.Fatalf("admin -safemode leave: exit %d:\n%s", code, out)
	}
	must(t, os.WriteFile(filepath.Join(mnt, "new2"), []byte("x"), 0o644))
	if out, code := c.Run(t, "admin", "-safemode", "bogus"); code == 0 {
		t.Fatalf("admin -safemode bogus: exit 0:\n%s", out)
	}
	c.WaitHealthy(t, time.Minute)
}
