package cluster

import (
	"syscall"
	"testing"
)

// StopBlockd stops blockd i cleanly with SIGTERM and waits for it to exit;
// StartBlockd starts it again. A blockd that does not exit within 10 s
// fails the test and is killed.
func (c *Cluster) StopBlockd(t testing.TB, i int) {
	t.Helper()
	p := c.blockds[i].proc
	if p.exited() {
		t.Fatalf("StopBlockd: blockd%d is not running", i)
	}
	if !p.stop(syscall.SIGTERM, stopGrace) {
		t.Errorf("blockd%d did not exit within %v of SIGTERM; it was killed", i, stopGrace)
	}
}

// BlockdStorageID returns the storage ID blockd i registered with.
func (c *Cluster) BlockdStorageID(i int) string { return c.blockds[i].addrs.StorageID }
