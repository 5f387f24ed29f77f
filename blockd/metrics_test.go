package blockd

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"cairn/rpc/pb"
)

// TestMetricsNamesAndScanner: a blockd's /metrics registry passes
// promlint, and shows its volumes and its scanner's pass as they are.
func TestMetricsNamesAndScanner(t *testing.T) {
	dir := t.TempDir()
	for i := range 2 {
		putReplica(t, dir, uint64(1<<30+i), 1000, pattern(700, byte(i)), 512)
	}
	clock := newFakeClock()
	h := newScanHarness(t, []string{dir}, clock, 1<<30)
	vs := h.scanner()
	d := &Blockd{scan: h.s, store: h.vols}
	d.met = newMetrics(d)
	d.met.observeOp(pb.OpHeader_READ_BLOCK, clock.Now())
	if got := gatherBlockd(t, d)["cairn_blockd_scanner_last_full_scan_timestamp_seconds"]; got != 0 {
		t.Errorf("before a pass: last full scan %v, want 0", got)
	}
	for range 4 {
		vs.step(context.Background())
	}
	got := gatherBlockd(t, d)
	for k, v := range map[string]float64{
		"cairn_blockd_scanner_verified_blocks_total":            2,
		"cairn_blockd_scanner_verified_bytes_total":             1400,
		"cairn_blockd_scanner_bad_blocks_total":                 0,
		"cairn_blockd_scanner_last_full_scan_timestamp_seconds": float64(clock.Now().Unix()),
		"cairn_blockd_volumes{state=in_service}":                1,
		"cairn_blockd_volumes{state=failed}":                    0,
		"cairn_blockd_op_duration_seconds{op=read_block}":       1,
		"cairn_blockd_checksum_failures_total{where=read}":      0,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func gatherBlockd(t *testing.T, d *Blockd) map[string]float64 {
	t.Helper()
	mfs, err := d.met.reg.Gather()
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
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			k := mf.GetName()
			for i, l := range m.Label {
				sep := ","
				if i == 0 {
					sep = "{"
				}
				k += sep + l.GetName() + "=" + l.GetValue()
			}
			if len(m.Label) > 0 {
				k += "}"
			}
			out[k] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
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
