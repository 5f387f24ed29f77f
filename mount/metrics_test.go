package mount

import (
	"bytes"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

// TestMetrics mounts with metrics kept: a file written and read back
// counts its bytes exactly, every op is timed, a lookup of a missing name
// counts an ENOENT, the behaviour is the same as without metrics, and the
// names pass promlint.
func TestMetrics(t *testing.T) {
	reg := NewMetricsRegistry()
	m := mountMem(t, newMemBackend(), Options{Metrics: reg})
	data := randomBytes(300<<10 + 17)
	if err := os.WriteFile(m.path("a"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(m.path("a"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(data))
	}
	_, err = os.Stat(m.path("missing"))
	wantErrno(t, "stat of a missing name", err, syscall.ENOENT)

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	probs, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		if strings.HasPrefix(p.Metric, "cairn_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
	vals := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.Metric {
			k := mf.GetName()
			for _, l := range mt.Label {
				k += " " + l.GetName() + "=" + l.GetValue()
			}
			vals[k] = metricValue(mt)
		}
	}
	if w := vals["cairn_mount_written_bytes_total"]; w != float64(len(data)) {
		t.Errorf("written bytes %v, want %d", w, len(data))
	}
	// The kernel may read past the end; what it got back is the file.
	if r := vals["cairn_mount_read_bytes_total"]; r != float64(len(data)) {
		t.Errorf("read bytes %v, want %d", r, len(data))
	}
	for _, op := range []string{"create", "write", "flush", "release", "open", "read", "lookup"} {
		if vals["cairn_mount_fuse_op_duration_seconds op="+op] == 0 {
			t.Errorf("no %s timed", op)
		}
	}
	if vals["cairn_mount_fuse_errors_total errno=ENOENT op=lookup"] < 1 {
		t.Errorf("no ENOENT of lookup counted: %v", vals)
	}
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}
