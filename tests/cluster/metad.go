package cluster

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// MetadDataDir returns metad's data directory.
func (c *Cluster) MetadDataDir() string { return c.metadDir }

// KillMetad kills metad with SIGKILL, as a crash would, and waits for it
// to exit.
func (c *Cluster) KillMetad(t testing.TB) {
	t.Helper()
	p := c.metad
	if p == nil || p.exited() {
		t.Fatalf("KillMetad: metad is not running")
	}
	p.accounted.Store(true)
	p.kill()
	if !p.waitExit(stopGrace) {
		t.Fatalf("metad did not exit within %v of SIGKILL", stopGrace)
	}
}

// MetadPID returns the process ID of the running metad.
func (c *Cluster) MetadPID() int { return c.metad.cmd.Process.Pid }

// MetadRSS returns the resident memory of the running metad in bytes, as
// /proc/PID/status reports it (VmRSS).
func (c *Cluster) MetadRSS(t testing.TB) int64 {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(c.MetadPID()) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", c.MetadPID())
	return 0
}

// RestartMetadTimed starts a stopped metad again, as StartMetad does, and
// returns how long it took until metad wrote its address file (it opens
// its store before it listens).
func (c *Cluster) RestartMetadTimed(t testing.TB) time.Duration {
	t.Helper()
	start := time.Now()
	c.StartMetad(t)
	return time.Since(start)
}

// MetadCPU returns the CPU time (user and system) the running metad has
// used so far, from /proc/PID/stat, in clock ticks of 10 ms.
func (c *Cluster) MetadCPU(t testing.TB) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(c.MetadPID()) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		t.Fatalf("short /proc/%d/stat: %q", c.MetadPID(), s)
	}
	var ticks int64
	for _, f := range fields[11:13] { // utime, stime: fields 14 and 15
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/stat: %v", c.MetadPID(), err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
