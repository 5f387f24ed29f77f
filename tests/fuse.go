// Package tests holds cairn's end-to-end tests. They start the real binary
// as separate processes on 127.0.0.1 (see package tests/cluster), mount the
// cluster with FUSE, and drive the mount with ordinary programs: cp, ls,
// find, diff, cmp.
package tests

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireFUSE stops a test that needs FUSE on a machine without it (no
// /dev/fuse or no fusermount3): it skips the test with the reason, except
// in CI (CI=true), where a test that needs FUSE may not skip, so it fails.
func RequireFUSE(t testing.TB) {
	t.Helper()
	var missing []string
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing = append(missing, err.Error())
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		missing = append(missing, "fusermount3 is not on PATH (package fuse3)")
	}
	if len(missing) == 0 {
		return
	}
	reason := "needs FUSE: " + strings.Join(missing, "; ")
	if os.Getenv("CI") == "true" {
		t.Fatal(reason + " (CI=true: FUSE tests may not skip)")
	}
	t.Skip(reason)
}
