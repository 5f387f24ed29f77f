package client_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"cairn/client"
)

// benchBytes is how much BenchmarkDataPath moves each way: 1 GiB, or
// $CAIRN_BENCH_BYTES.
func benchBytes() int64 {
	if v, err := strconv.ParseInt(os.Getenv("CAIRN_BENCH_BYTES"), 10, 64); err == nil && v > 0 {
		return v
	}
	return 1 << 30
}

// BenchmarkDataPath writes and reads the same bytes through the client
// library, with replication 1 and 3 and every blockd on this machine, and to
// a plain file on the same disk with and without fsync, in one run, and
// reports each as MB/s and as a ratio to the plain file. With replication
// 3 it also runs blockds that do not check block access tokens
// (--block-tokens=false), for the cost of the check as a ratio; and with
// replication 1 and 3 a cluster that encrypts block data (metad
// --encrypt-data: mutual TLS 1.3, tokens checked too), for the cost of
// TLS as a ratio to plain text with tokens.
func BenchmarkDataPath(b *testing.B) {
	size := benchBytes()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + i>>9)
	}
	mbps := func(d time.Duration) float64 { return float64(size) / d.Seconds() / 1e6 }
	var runs []map[string]float64
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		results := map[string]float64{}
		// Interleaved, so drift in the disk's speed touches every variant.
		results["plain-write"] = mbps(timePlainWrite(b, filepath.Join(dir, "plain"), buf, size, false))
		results["plain-write-fsync"] = mbps(timePlainWrite(b, filepath.Join(dir, "plainsync"), buf, size, true))
		results["plain-read"] = mbps(timePlainRead(b, filepath.Join(dir, "plain"), buf))
		_ = os.Remove(filepath.Join(dir, "plain"))
		_ = os.Remove(filepath.Join(dir, "plainsync"))
		for _, repl := range []int{1, 3} {
			w, r := timeCairn(b, repl, buf, size, nil)
			results[fmt.Sprintf("r%d-write", repl)] = mbps(w)
			results[fmt.Sprintf("r%d-read", repl)] = mbps(r)
			w, r = timeCairn(b, repl, buf, size, []string{"--encrypt-data"})
			results[fmt.Sprintf("r%d-write-tls", repl)] = mbps(w)
			results[fmt.Sprintf("r%d-read-tls", repl)] = mbps(r)
		}
		w, r := timeCairn(b, 3, buf, size, nil, "--block-tokens=false")
		results["r3-write-notokens"], results["r3-read-notokens"] = mbps(w), mbps(r)
		b.Logf("run %d, %d MiB each way (MB/s): %v", i+1, size>>20, results)
		runs = append(runs, results)
	}
	median := func(key string, f func(map[string]float64) float64) float64 {
		var v []float64
		for _, r := range runs {
			v = append(v, f(r))
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	val := func(k string) func(map[string]float64) float64 {
		return func(r map[string]float64) float64 { return r[k] }
	}
	ratio := func(a, base string) func(map[string]float64) float64 {
		return func(r map[string]float64) float64 { return r[a] / r[base] }
	}
	for _, k := range []string{"plain-write", "plain-write-fsync", "plain-read", "r1-write", "r1-read", "r3-write", "r3-read", "r3-write-notokens", "r3-read-notokens",
		"r1-write-tls", "r1-read-tls", "r3-write-tls", "r3-read-tls"} {
		b.ReportMetric(median(k, val(k)), k+"-MB/s")
	}
	b.ReportMetric(median("", ratio("r1-write", "plain-write-fsync")), "r1-write/plain-fsync")
	b.ReportMetric(median("", ratio("r1-write", "plain-write")), "r1-write/plain")
	b.ReportMetric(median("", ratio("r3-write", "plain-write-fsync")), "r3-write/plain-fsync")
	b.ReportMetric(median("", ratio("r1-read", "plain-read")), "r1-read/plain")
	b.ReportMetric(median("", ratio("r3-read", "plain-read")), "r3-read/plain")
	b.ReportMetric(median("", ratio("r3-write", "r3-write-notokens")), "r3-write/notokens")
	b.ReportMetric(median("", ratio("r3-read", "r3-read-notokens")), "r3-read/notokens")
	for _, k := range []string{"r1-write", "r1-read", "r3-write", "r3-read"} {
		b.ReportMetric(median("", ratio(k+"-tls", k)), k+"-tls/plain")
	}
}

// timeCairn writes size bytes through a fresh cluster with the given
// replication (its metad runs with metadArgs, its blockds with
// blockdArgs), then reads them back.
func timeCairn(b *testing.B, repl int, buf []byte, size int64, metadArgs []string, blockdArgs ...string) (write, read time.Duration) {
	c := startClusterArgs(b, 3, 64<<20, metadArgs, blockdArgs)
	defer c.stop()
	cl, err := client.Dial(c.metad, client.Options{Creds: c.creds, Replication: repl})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	start := time.Now()
	w, err := cl.Create(context.Background(), "/bench", 0o644)
	if err != nil {
		b.Fatal(err)
	}
	for n := int64(0); n < size; n += int64(len(buf)) {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	write = time.Since(start)
	start = time.Now()
	r, err := cl.Open(context.Background(), "/bench")
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	if _, err := io.CopyBuffer(io.Discard, io.NewSectionReader(r, 0, r.Size()), buf); err != nil {
		b.Fatal(err)
	}
	return write, time.Since(start)
}

func timePlainWrite(b *testing.B, path string, buf []byte, size int64, sync bool) time.Duration {
	start := time.Now()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	for n := int64(0); n < size; n += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if sync {
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

func timePlainRead(b *testing.B, path string, buf []byte) time.Duration {
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyBuffer(io.Discard, f, buf); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}
