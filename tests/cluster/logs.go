package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Log returns what the process name ("metad", "blockd0", "mount0") has
// logged so far, over all its runs.
func (c *Cluster) Log(name string) string {
	b, err := os.ReadFile(filepath.Join(c.logDir, name+".log"))
	if err != nil {
		return ""
	}
	return string(b)
}

// WaitLog polls the log of process name every 50 ms until one line holds
// every one of parts, and returns that line. It fails the test if no line
// does within timeout.
func (c *Cluster) WaitLog(t testing.TB, name string, timeout time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(c.Log(name), "\n") {
			if containsAll(line, parts) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s logged no line with all of %q within %v; end of its log:\n%s",
				name, parts, timeout, fileTail(filepath.Join(c.logDir, name+".log"), logTailBytes))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
