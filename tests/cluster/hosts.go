package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Host is a host of a test network (tests/netns) that runs a process of
// the cluster: Wrap gives the command line that runs bin with args there,
// keeping the process's ID, group and parent-death signal; Address is the
// host's IP.
type Host interface {
	Wrap(bin string, args []string) (string, []string)
	Address() string
}

func (c *Cluster) blockdHost(i int) Host {
	if i < len(c.cfg.BlockdHosts) {
		return c.cfg.BlockdHosts[i]
	}
	return nil
}

// BlockdAddr returns blockd i's data address as it advertises it.
func (c *Cluster) BlockdAddr(i int) string { return c.blockds[i].addrs.Data }

// BlockdHTTPAddr returns blockd i's HTTP address (status, /metrics) as it
// advertises it.
func (c *Cluster) BlockdHTTPAddr(i int) string { return c.blockds[i].addrs.HTTP }

// RunOn is Run with the command on host h.
func (c *Cluster) RunOn(t testing.TB, h Host, args ...string) (stdout string, code int) {
	t.Helper()
	if len(args) == 0 {
		t.Fatal("RunOn: no subcommand")
	}
	bin, full := h.Wrap(c.bin, append([]string{args[0], "--metad", c.MetadAddr()}, args[1:]...))
	env := append(append(os.Environ(), "CAIRN_METAD="+c.MetadAddr(), "GOTRACEBACK=all"), c.ClientEnv()...)
	out, err := runCommand(runTimeout, env, bin, full...)
	if err != nil {
		t.Fatalf("cairn %v on %s: %v\nstderr:\n%s", args, h.Address(), err, out.Stderr)
	}
	if out.Code != 0 {
		t.Logf("cairn %v on %s: exit %d; stderr:\n%s", args, h.Address(), out.Code, out.Stderr)
	}
	return out.Stdout, out.Code
}

// AddBlockd starts one more blockd, empty, on host h (nil: here, on
// 127.0.0.1) with --rack rack ("" leaves the default), waits until it has
// registered, and returns its index.
func (c *Cluster) AddBlockd(t testing.TB, h Host, rack string) int {
	t.Helper()
	i := len(c.blockds)
	b := &blockd{
		dir:      filepath.Join(filepath.Dir(c.logDir), fmt.Sprintf("blockd%d", i)),
		addrFile: filepath.Join(filepath.Dir(c.logDir), fmt.Sprintf("blockd%d.addr", i)),
	}
	b.dirs = []string{b.dir}
	mkdirs(t, b.dir)
	for len(c.cfg.BlockdHosts) < i {
		c.cfg.BlockdHosts = append(c.cfg.BlockdHosts, nil)
	}
	c.cfg.BlockdHosts = append(c.cfg.BlockdHosts[:i], h)
	for len(c.cfg.Racks) < i {
		c.cfg.Racks = append(c.cfg.Racks, "/default-rack")
	}
	c.cfg.Racks = append(c.cfg.Racks[:i], rack)
	if rack == "" {
		c.cfg.Racks[i] = "/default-rack"
	}
	c.blockds = append(c.blockds, b)
	if h != nil {
		c.launchBlockd(t, i, ":0", ":0")
	} else {
		c.launchBlockd(t, i, "127.0.0.1:0", "127.0.0.1:0")
	}
	c.waitBlockd(t, i)
	return i
}
