package dev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"cairn/internal/versionfile"
	"cairn/mount"
)

// devCluster is what the daemons of one cairn dev share: its directory,
// flags and credentials, and the addresses each daemon bound at its first
// start, on which a restart listens again (so the others find it where it
// was).
type devCluster struct {
	dir string
	mnt string // absolute; "" for no mount
	o   options
	dc  *devCerts // set once metad has made the CA

	mu          sync.Mutex
	metadAddrs  map[string]string            // metad's address file: rpc, http
	blockdAddrs map[string]map[string]string // each blockd's: data, http
}

func (c *devCluster) metadDir() string { return filepath.Join(c.dir, "metad") }

// rack is blockd i's (1-based) rack: /rack1.../rackR in turn, "" when the
// cluster has no racks.
func (c *devCluster) rack(i int) string {
	if c.o.racks == 0 {
		return ""
	}
	return fmt.Sprintf("/rack%d", (i-1)%c.o.racks+1)
}

// members are the daemons in the order they start: metad, the blockds,
// the mount.
func (c *devCluster) members(s *supervisor) []*member {
	c.blockdAddrs = map[string]map[string]string{}
	logPath := func(name string) string { return filepath.Join(c.dir, "logs", name+".log") }
	ms := []*member{{name: "metad", logPath: logPath("metad"), args: c.metadArgs, ready: c.metadReady}}
	for i := 1; i <= c.o.blockds; i++ {
		name := fmt.Sprintf("blockd%d", i)
		ms = append(ms, &member{
			name: name, logPath: logPath(name),
			args:  func() ([]string, []string, error) { return c.blockdArgs(i, name) },
			ready: func(ctx context.Context, r *proc) (string, error) { return c.blockdReady(ctx, i, name, r) },
		})
	}
	if c.mnt != "" {
		ms = append(ms, &member{name: "mount", logPath: logPath("mount"), args: c.mountArgs, ready: c.mountReady, afterExit: c.unmountStale})
	}
	return ms
}

func (c *devCluster) metadArgs() ([]string, []string, error) {
	c.mu.Lock()
	listen, httpAddr := c.o.listen, c.o.httpAddr
	if c.metadAddrs != nil {
		listen, httpAddr = c.metadAddrs["rpc"], c.metadAddrs["http"]
	}
	c.mu.Unlock()
	addrFile := filepath.Join(c.dir, "metad.addr")
	if err := os.Remove(addrFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	// Every blockd of a dev cluster runs beside metad: once they have
	// reported, safe mode need not wait the 30 s extension a cluster of
	// many machines does.
	args := []string{"metad", "--data", c.metadDir(), "--listen", listen, "--http", httpAddr, "--addr-file", addrFile,
		"--safemode-extension", "0s"}
	if _, err := versionfile.Read(c.metadDir()); errors.Is(err, os.ErrNotExist) {
		args = append(args, "--format")
	}
	if c.o.blockSize != "" {
		args = append(args, "--block-size", c.o.blockSize)
	}
	return args, []string{listen, httpAddr}, nil
}

func (c *devCluster) metadReady(ctx context.Context, r *proc) (string, error) {
	var a map[string]string
	if err := waitFile(ctx, filepath.Join(c.dir, "metad.addr"), r, &a); err != nil {
		return "", err
	}
	c.mu.Lock()
	c.metadAddrs = a
	c.mu.Unlock()
	return fmt.Sprintf("rpc %s  http https://%s  data %s", a["rpc"], a["http"], c.metadDir()), nil
}

func (c *devCluster) blockdArgs(i int, name string) ([]string, []string, error) {
	c.mu.Lock()
	listen, httpAddr := "127.0.0.1:0", "127.0.0.1:0"
	if a := c.blockdAddrs[name]; a != nil {
		listen, httpAddr = a["data"], a["http"]
	}
	rpc := c.metadAddrs["rpc"]
	c.mu.Unlock()
	addrFile := filepath.Join(c.dir, name+".addr")
	if err := os.Remove(addrFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	// A fresh token each start: a blockd that has its certificate ignores
	// it; one whose directory was wiped joins again.
	tok, err := c.dc.joinToken()
	if err != nil {
		return nil, nil, err
	}
	args := []string{"blockd", "--data", filepath.Join(c.dir, name), "--metad", rpc,
		"--listen", listen, "--http", httpAddr, "--addr-file", addrFile, "--join", tok}
	if rack := c.rack(i); rack != "" {
		args = append(args, "--rack", rack)
	}
	return args, []string{listen, httpAddr}, nil
}

func (c *devCluster) blockdReady(ctx context.Context, i int, name string, r *proc) (string, error) {
	var a map[string]string
	if err := waitFile(ctx, filepath.Join(c.dir, name+".addr"), r, &a); err != nil {
		return "", err
	}
	c.mu.Lock()
	c.blockdAddrs[name] = a
	c.mu.Unlock()
	info := fmt.Sprintf("data %s  http https://%s  dir %s", a["data"], a["http"], filepath.Join(c.dir, name))
	if rack := c.rack(i); rack != "" {
		info += "  rack " + rack
	}
	return info, nil
}

func (c *devCluster) mountArgs() ([]string, []string, error) {
	c.mu.Lock()
	rpc := c.metadAddrs["rpc"]
	c.mu.Unlock()
	return []string{"mount", rpc, c.mnt, "--foreground", "-o", "certs=" + c.dc.mount}, nil, nil
}

func (c *devCluster) mountReady(ctx context.Context, r *proc) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for mount.FUSEMounts(c.mnt) == 0 {
		select {
		case <-r.done:
			return "", errExited
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return "", errors.New("not mounted after 30 s")
		}
	}
	return c.mnt, nil
}

// unmountStale lazily unmounts the mount point a mount process that died
// left behind ("Transport endpoint is not connected"), so the next mount
// can take its place.
func (c *devCluster) unmountStale() {
	if mount.FUSEMounts(c.mnt) > 0 {
		_ = exec.Command("fusermount3", "-u", "-z", c.mnt).Run()
	}
}
