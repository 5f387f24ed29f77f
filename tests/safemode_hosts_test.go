package tests

// Safe mode across hosts: metad, the blockds, a mount and a client each in
// a network namespace of their own (tests/netns).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
	"cairn/tests/netns"
)

// writeProbeEnv holds a write probe's configuration (JSON); set, the test
// binary runs as a client that creates a file and prints how that went
// (writeProbeResult, JSON) instead of running tests.
const writeProbeEnv = "CAIRN_WRITE_PROBE"

type writeProbeConfig struct {
	Metad string
	Path  string
}

type writeProbeResult struct {
	Err      string // "" when the file was written and closed
	SafeMode bool   // the error is of kind cairn.KindSafeMode
}

func init() {
	if cfg := os.Getenv(writeProbeEnv); cfg != "" {
		os.Exit(runWriteProbe(cfg))
	}
}

func runWriteProbe(cfgJSON string) int {
	var cfg writeProbeConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "write probe:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.Dial(cfg.Metad, client.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "write probe:", err)
		return 1
	}
	defer c.Close()
	w, err := c.Create(ctx, cfg.Path, 0o644)
	if err == nil {
		_, err = w.Write([]byte("written by a client on another host\n"))
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}
	var res writeProbeResult
	if err != nil {
		res = writeProbeResult{Err: err.Error(), SafeMode: errors.Is(err, cairn.ErrSafeMode)}
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "write probe:", err)
		return 1
	}
	return 0
}

// writeProbe creates path through a client on host h and returns how it
// went.
func writeProbe(t *testing.T, c *cluster.Cluster, h *netns.Host, path string) writeProbeResult {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(writeProbeConfig{Metad: c.MetadAddr(), Path: path})
	cmd := h.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), writeProbeEnv+"="+string(b)), c.ClientEnv()...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("write probe of %s on %s: %v\n%s", path, h.IP, err, stderr.String())
	}
	var res writeProbeResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("write probe on %s: %v: %q", h.IP, err, out)
	}
	return res
}

// TestSafeModeAcrossHosts: metad, four blockds on two racks, a mount and
// a client each on a host of its own. metad restarted while every blockd
// is down is read-only: a client on another host is refused with a
// safe-mode error that says how many blocks have reported, a mount on
// another host gets EROFS (and logs why), `admin -safemode get` from that
// host says ON. Once the blockds are back and have reported, safe mode
// lifts after the extension, writes go through from both hosts, and the
// files written before read back whole.
func TestSafeModeAcrossHosts(t *testing.T) {
	nt := netns.New(t)
	metaHost := nt.AddHost(t, "")
	mountHost := nt.AddHost(t, "")
	clientHost := nt.AddHost(t, "")
	racks := []string{"/r1", "/r1", "/r2", "/r2"}
	cfg := cluster.Config{
		MetadHost: metaHost, Blockds: len(racks), Racks: racks,
		Replication: 2, BlockSize: 256 << 10, SafeModeExtension: 2 * time.Second,
	}
	for _, r := range racks {
		cfg.BlockdHosts = append(cfg.BlockdHosts, nt.AddHost(t, r))
	}
	c := cluster.Start(t, cfg)
	mnt := c.MountOn(t, mountHost)
	data := bytes.Repeat([]byte("safe mode across hosts "), 50_000) // 1.1 MB: five blocks
	for _, name := range []string{"a", "b"} {
		must(t, os.WriteFile(filepath.Join(mnt, name), data, 0o644))
	}
	if res := writeProbe(t, c, clientHost, "/c"); res.Err != "" {
		t.Fatalf("write from the client host before the restart: %s", res.Err)
	}
	c.WaitHealthy(t, time.Minute)

	c.StopMetad(t)
	c.KillBlockds(t)
	c.StartMetadInSafeMode(t)

	out, code := c.RunOn(t, clientHost, "admin", "-safemode", "get")
	if code != 0 || !strings.HasPrefix(out, "Safe mode is ON\n") || !strings.Contains(out, "needs additional 11 blocks to reach the threshold 0.9990 of total blocks 11") {
		t.Fatalf("admin -safemode get on the client host with no blockd: exit %d:\n%s", code, out)
	}
	res := writeProbe(t, c, clientHost, "/d")
	if !res.SafeMode || !strings.Contains(res.Err, "safe mode") || !strings.Contains(res.Err, "needs additional 11 blocks") {
		t.Fatalf("write from the client host in safe mode: %+v, want a safe-mode error saying how many blocks are awaited", res)
	}
	if err := os.WriteFile(filepath.Join(mnt, "new"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("create through the mount host in safe mode: %v, want EROFS", err)
	}
	if err := os.Mkdir(filepath.Join(mnt, "dir"), 0o755); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("mkdir through the mount host in safe mode: %v, want EROFS", err)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "a")); err != nil || fi.Size() != int64(len(data)) {
		t.Fatalf("stat through the mount host in safe mode: %v, %v", fi, err)
	}
	c.WaitLog(t, "mount0", 10*time.Second, "warn", "metad is in safe mode", "needs additional")

	c.StartBlockds(t)
	c.WaitSafeModeOff(t, time.Minute)
	c.WaitLog(t, "metad", 10*time.Second, "safe mode is off")
	if out, code := c.RunOn(t, clientHost, "admin", "-safemode", "get"); code != 0 || out != "Safe mode is OFF\n" {
		t.Fatalf("admin -safemode get on the client host after the blockds reported: exit %d:\n%s", code, out)
	}
	if res := writeProbe(t, c, clientHost, "/d"); res.Err != "" {
		t.Fatalf("write from the client host after safe mode: %s", res.Err)
	}
	must(t, os.WriteFile(filepath.Join(mnt, "new"), []byte("x"), 0o644))
	for _, name := range []string{"a", "b"} {
		got, err := os.ReadFile(filepath.Join(mnt, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s through the mount host after safe mode: %d bytes, %v", name, len(got), err)
		}
	}
	c.WaitHealthy(t, time.Minute)
}
