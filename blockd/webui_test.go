package blockd

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestVolumeStatus: the status page lists each data directory with its
// replicas, and a failed one, at start or later, with why.
func TestVolumeStatus(t *testing.T) {
	base := t.TempDir()
	d1, d2, bad := filepath.Join(base, "d1"), filepath.Join(base, "d2"), filepath.Join(base, "bad")
	// A file where a directory should be: opening it fails as a disk would.
	if err := os.WriteFile(bad, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	vs, err := OpenVolumes([]string{d1, d2, bad}, VolumeOptions{FailedTolerated: 2})
	if err != nil {
		t.Fatalf("a file as a data directory: %v, want a failed volume", err)
	}
	defer vs.Close()
	vs.fail(vs.vols[1], context.DeadlineExceeded)
	got := vs.volumeStatus()
	if len(got) != 3 {
		t.Fatalf("volumeStatus: %+v, want 3 volumes", got)
	}
	if got[0].Dir != d1 || got[0].Failed != "" || got[0].Capacity <= 0 {
		t.Errorf("in service: %+v", got[0])
	}
	if got[1].Dir != d2 || got[1].Failed != context.DeadlineExceeded.Error() {
		t.Errorf("failed later: %+v", got[1])
	}
	if got[2].Dir != bad || got[2].Failed == "" {
		t.Errorf("failed at start: %+v", got[2])
	}
}
