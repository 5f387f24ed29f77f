package tests

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"cairn/tests/cluster"
	"cairn/trust"
)

// scrape is one /metrics page, parsed: "name{k=v,...}" → value (a
// histogram: its count of observations), the labels in name order.
type scrape map[string]float64

// sum adds the values of every series of name whose labels hold each of
// the "k=v" in labels.
func (s scrape) sum(name string, labels ...string) float64 {
	var total float64
	for k, v := range s {
		base, ls, _ := strings.Cut(k, "{")
		if base != name {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(","+strings.TrimSuffix(ls, "}")+",", ","+l+",")
		}
		if ok {
			total += v
		}
	}
	return total
}

// target is one process to scrape: where, and the role its certificate
// must have.
type target struct {
	name, addr string
	role       trust.Role
}

// scrapeAll fetches and parses every target's /metrics over HTTPS with the
// certificate of creds.
func scrapeAll(t *testing.T, creds *trust.Holder, targets []target) map[string]scrape {
	t.Helper()
	out := map[string]scrape{}
	for _, tg := range targets {
		hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: trust.ClientConfig(creds, tg.role)}}
		resp, err := hc.Get("https://" + tg.addr + "/metrics")
		if err != nil {
			t.Fatalf("scrape %s: %v", tg.name, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("scrape %s: %s, %v\n%s", tg.name, resp.Status, err, body)
		}
		p := textParser()
		mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("scrape %s: the Prometheus text parser refuses it: %v", tg.name, err)
		}
		out[tg.name] = flatten(mfs)
	}
	return out
}

func flatten(mfs map[string]*dto.MetricFamily) scrape {
	s := scrape{}
	for name, mf := range mfs {
		for _, m := range mf.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(ls)
			k := name
			if len(ls) > 0 {
				k += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				s[k] = m.Counter.GetValue()
			case m.Gauge != nil:
				s[k] = m.Gauge.GetValue()
			case m.Histogram != nil:
				s[k] = float64(m.Histogram.GetSampleCount())
			case m.Untyped != nil:
				s[k] = m.Untyped.GetValue()
			}
		}
	}
	return s
}

// TestMetrics scrapes metad, every blockd and a mount (-o metrics) over
// HTTPS with a client certificate, copies a file of three blocks through
// the mount and reads it back, and checks the counters moved by exactly
// what the copy wrote where that is known: the mount's bytes written are
// the file's size, and the blockds' blocks and bytes written are the
// file's times the replication. Without a certificate each refuses.
func TestMetrics(t *testing.T) {
	RequireFUSE(t)
	const blockSize, repl = 1 << 20, 3
	c := cluster.Start(t, cluster.Config{Blockds: 3, Replication: repl, BlockSize: blockSize})
	mnt := c.Mount(t, "-o", "metrics=127.0.0.1:0")
	line := c.WaitLog(t, "mount0", 30*time.Second, "metrics serving")
	m := regexp.MustCompile(`"addr": "([^"]+)"`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no address in the mount's line %q", line)
	}
	targets := []target{{"metad", c.MetadHTTPAddr(), trust.RoleMetad}, {"mount", m[1], trust.RoleMount}}
	for i := range c.Blockds() {
		targets = append(targets, target{fmt.Sprintf("blockd%d", i), c.BlockdHTTPAddr(i), trust.RoleBlockd})
	}
	// Prometheus's certificate, as docs/METRICS.md advises: a user's of
	// its own, no admin.
	prom := trust.NewHolder(c.IssueCert(t, trust.Peer{Role: trust.RoleUser, Name: "prometheus"}, filepath.Join(t.TempDir(), "prometheus")))

	for _, tg := range targets {
		hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := hc.Get("https://" + tg.addr + "/metrics")
		if err != nil {
			t.Fatalf("%s without a certificate: %v", tg.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s's /metrics without a certificate: %s, want 401", tg.name, resp.Status)
		}
	}

	before := scrapeAll(t, prom, targets)
	for _, name := range []string{"cairn_metad_blockds", "cairn_metad_rpc_duration_seconds", "cairn_metad_replication_queue_blocks", "cairn_metad_safe_mode"} {
		if _, ok := firstSeries(before["metad"], name); !ok {
			t.Errorf("metad shows no %s", name)
		}
	}
	if v := before["metad"].sum("cairn_metad_blockds", "state=live"); v != 3 {
		t.Errorf("metad: %v live blockds, want 3", v)
	}

	size := 2*blockSize + 12345 // three blocks
	data := bytes.Repeat([]byte("cairn metrics "), size/14+1)[:size]
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(mnt, "copied")
	if out := cluster.Exec(t, "cp", src, dst); out.Code != 0 {
		t.Fatalf("cp: %s", out.Stderr)
	}
	afterWrite := scrapeAll(t, prom, targets)
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v), want the %d copied", len(got), err, len(data))
	}
	after := scrapeAll(t, prom, targets)

	delta := func(s map[string]scrape, who, name string, labels ...string) float64 {
		var d float64
		for k := range s {
			if strings.HasPrefix(k, who) {
				d += s[k].sum(name, labels...) - before[k].sum(name, labels...)
			}
		}
		return d
	}
	exact := []struct {
		who, name string
		want      float64
	}{
		{"mount", "cairn_mount_written_bytes_total", float64(size)},
		{"mount", "cairn_mount_read_bytes_total", 0},
		{"blockd", "cairn_blockd_written_blocks_total", 3 * repl},
		{"blockd", "cairn_blockd_written_bytes_total", float64(size * repl)},
		{"blockd", "cairn_blockd_checksum_failures_total", 0},
	}
	for _, e := range exact {
		if d := delta(afterWrite, e.who, e.name); d != e.want {
			t.Errorf("after the copy: %s %s moved by %v, want %v", e.who, e.name, d, e.want)
		}
	}
	if d := delta(after, "mount", "cairn_mount_read_bytes_total"); d != float64(size) {
		t.Errorf("after reading it back: mount read bytes moved by %v, want %d", d, size)
	}
	moved := []struct{ who, name, label string }{
		{"mount", "cairn_mount_fuse_op_duration_seconds", "op=write"},
		{"mount", "cairn_mount_fuse_op_duration_seconds", "op=create"},
		{"mount", "cairn_mount_fuse_op_duration_seconds", "op=read"},
		{"mount", "cairn_client_rpc_duration_seconds", "method=AddBlock"},
		{"mount", "cairn_client_rpc_duration_seconds", "method=Complete"},
		{"metad", "cairn_metad_rpc_duration_seconds", "method=Create"},
		{"metad", "cairn_metad_rpc_duration_seconds", "method=AddBlock"},
		{"metad", "cairn_metad_files", ""},
		{"blockd", "cairn_blockd_op_duration_seconds", "op=write_block"},
		{"blockd", "cairn_blockd_op_duration_seconds", "op=read_block"},
		{"blockd", "cairn_blockd_read_bytes_total", ""},
		{"blockd", "cairn_blockd_read_blocks_total", ""},
	}
	for _, mv := range moved {
		var labels []string
		if mv.label != "" {
			labels = []string{mv.label}
		}
		if d := delta(after, mv.who, mv.name, labels...); d <= 0 {
			t.Errorf("%s %s{%s} did not move (by %v)", mv.who, mv.name, mv.label, d)
		}
	}
	if d := delta(after, "blockd", "cairn_blockd_read_bytes_total"); d < float64(size) {
		t.Errorf("blockds sent %v bytes to readers, fewer than the file's %d", d, size)
	}
	for _, tg := range targets[2:] {
		if v := after[tg.name].sum("cairn_blockd_capacity_bytes"); v <= 0 {
			t.Errorf("%s: capacity %v", tg.name, v)
		}
		// Heartbeats keep their own time, not the copy's: one at least
		// since the blockd registered, not one within the copy.
		if v := after[tg.name].sum("cairn_blockd_heartbeat_duration_seconds"); v <= 0 {
			t.Errorf("%s: %v heartbeats timed", tg.name, v)
		}
	}
}

// firstSeries is some series of name in s.
func firstSeries(s scrape, name string) (float64, bool) {
	for k, v := range s {
		if base, _, _ := strings.Cut(k, "{"); base == name {
			return v, true
		}
	}
	return 0, false
}

// textParser is Prometheus's text format parser, with the metric name
// rules of the format (a zero TextParser has none and panics).
func textParser() *expfmt.TextParser {
	p := expfmt.NewTextParser(model.LegacyValidation)
	return &p
}
