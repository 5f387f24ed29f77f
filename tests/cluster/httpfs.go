package cluster

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// StartHTTPFS starts `cairn httpfs` on 127.0.0.1 in front of the
// cluster, with the admin credentials (which speak for the users whose
// certificates call it) and more flags, and returns its address. It is
// stopped with the cluster.
func (c *Cluster) StartHTTPFS(t testing.TB, more ...string) string {
	t.Helper()
	c.mu.Lock()
	n := len(c.procs)
	c.mu.Unlock()
	file := filepath.Join(t.TempDir(), "httpfs.addr")
	os.Remove(file)
	args := []string{"httpfs", "--listen", "127.0.0.1:0", "--metad", c.MetadAddr(), "--addr-file", file}
	if c.cfg.Insecure {
		args = append(args, "--insecure")
	}
	args = append(args, more...)
	p := c.start(t, "httpfs-"+strconv.Itoa(n), args)
	var a struct{ HTTP string }
	waitUntil(t, p, startTimeout, "listening (address file "+file+")", func() bool {
		return readJSON(file, &a) && a.HTTP != ""
	})
	return a.HTTP
}
