package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cairn"
	"cairn/blockd"
	"cairn/client"
	"cairn/metad"
	"cairn/trust"
)

// cluster runs metad and blockds in this process, over real gRPC and TCP on
// 127.0.0.1, with real Pebble and real files.
type cluster struct {
	metad string
	dirs  []string
	// stop ends the daemons and removes their data; cleanup calls it too.
	stop  func()
	creds *trust.Holder // an admin certificate of the cluster's CA
	ca    *trust.CA     // the cluster's CA
	data  []string      // the blockds' data addresses
}

func startCluster(t testing.TB, blockds int, blockSize int64, blockdArgs ...string) *cluster {
	t.Helper()
	return startClusterArgs(t, blockds, blockSize, nil, blockdArgs)
}

// startClusterArgs is startCluster with metad's extra flags too.
func startClusterArgs(t testing.TB, blockds int, blockSize int64, metadArgs, blockdArgs []string) *cluster {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	dir := t.TempDir()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait(); _ = os.RemoveAll(dir) }) }
	t.Cleanup(stop)
	run := func(name string, main func(context.Context, []string, io.Writer, io.Writer) int, args ...string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			if code := main(ctx, args, &out, &out); code != 0 && ctx.Err() == nil {
				t.Errorf("%s exited %d: %s", name, code, out.String())
			}
		}()
	}
	wait := func(path string) map[string]string {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if b, err := os.ReadFile(path); err == nil {
				var m map[string]string
				if err := json.Unmarshal(b, &m); err != nil {
					t.Fatal(err)
				}
				return m
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("%s never appeared", path)
		return nil
	}
	run("metad", metad.Main, append([]string{"--data", filepath.Join(dir, "metad"), "--format", "--listen", "127.0.0.1:0", "--http", "",
		"--block-size", fmt.Sprint(blockSize), "--addr-file", filepath.Join(dir, "metad.addr")}, metadArgs...)...)
	c := &cluster{metad: wait(filepath.Join(dir, "metad.addr"))["rpc"], stop: stop}
	// The cluster runs on its CA: an admin certificate for the client, a
	// join token for each blockd.
	ca, err := trust.LoadCA(filepath.Join(dir, "metad", trust.CADir))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := trust.NewKey()
	der, err := ca.Issue(key.Public(), trust.Peer{Role: trust.RoleAdmin, Name: "root"}, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := trust.CredsOf(key, der, ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	c.creds = trust.NewHolder(creds)
	c.ca = ca
	for i := 0; i < blockds; i++ {
		bd := filepath.Join(dir, fmt.Sprintf("blockd%d", i))
		c.dirs = append(c.dirs, bd)
		af := filepath.Join(dir, fmt.Sprintf("blockd%d.addr", i))
		tok, _, err := ca.NewJoinToken(trust.RoleBlockd, "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		run("blockd", blockd.Main, append([]string{"--data", bd, "--metad", c.metad, "--listen", "127.0.0.1:0", "--http", "", "--heartbeat", "100ms", "--addr-file", af, "--join", tok}, blockdArgs...)...)
		c.data = append(c.data, wait(af)["data"])
	}
	return c
}

func TestWriteReadAcrossBlocks(t *testing.T) {
	c := startCluster(t, 3, 256<<10)
	cl, err := client.Dial(c.metad, client.Options{Creds: c.creds})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	data := make([]byte, 3<<20+12345)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	w, err := cl.Create(ctx, "/f", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	// Odd write sizes cross packet and block boundaries.
	for off := 0; off < len(data); {
		n := min(len(data)-off, 1+rand.IntN(200<<10))
		if _, err := w.Write(data[off : off+n]); err != nil {
			t.Fatal(err)
		}
		off += n
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := cl.NS.Stat(ctx, "/f")
	if err != nil || fi.Size != int64(len(data)) || fi.Writing {
		t.Fatalf("stat = %+v, %v; want size %d, closed", fi, err, len(data))
	}
	r, err := cl.Open(ctx, "/f")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, err %v; equal=%v", len(got), err, bytes.Equal(got, data))
	}
	for i := 0; i < 200; i++ {
		off := rand.Int64N(int64(len(data)))
		n := rand.IntN(300 << 10)
		buf := make([]byte, n)
		k, err := r.ReadAt(buf, off)
		end := min(off+int64(n), int64(len(data)))
		if int64(k) != end-off || (err != nil && err != io.EOF) || !bytes.Equal(buf[:k], data[off:end]) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", off, n, k, err)
		}
	}
	fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/f"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (len(data) + 256<<10 - 1) / (256 << 10); len(fb.Blocks) != want {
		t.Fatalf("%d blocks, want %d", len(fb.Blocks), want)
	}
	for _, b := range fb.Blocks {
		if len(b.Locations) != 3 {
			t.Errorf("%s has %d live replicas, want 3", b.Block, len(b.Locations))
		}
	}
}

func TestEmptyFile(t *testing.T) {
	c := startCluster(t, 1, 256<<10)
	cl, err := client.Dial(c.metad, client.Options{Creds: c.creds})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	w, err := cl.Create(context.Background(), "/empty", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := cl.NS.Stat(context.Background(), "/empty")
	if err != nil || fi.Size != 0 || fi.Writing {
		t.Fatalf("stat = %+v, %v", fi, err)
	}
}

// TestConcurrentWritersReaders runs eight writers and eight readers on
// different files at once (run it with -race).
func TestConcurrentWritersReaders(t *testing.T) {
	c := startCluster(t, 3, 256<<10)
	cl, err := client.Dial(c.metad, client.Options{Creds: c.creds})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	content := func(i int) []byte {
		b := make([]byte, 700<<10+i*1000)
		r := rand.New(rand.NewPCG(uint64(i), 99))
		for j := range b {
			b[j] = byte(r.IntN(256))
		}
		return b
	}
	for i := 0; i < 8; i++ { // files the readers read
		w, err := cl.Create(ctx, fmt.Sprintf("/r%d", i), 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(content(100 + i)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func(i int) {
			defer wg.Done()
			w, err := cl.Create(ctx, fmt.Sprintf("/w%d", i), 0o644)
			if err != nil {
				errs <- err
				return
			}
			data := content(i)
			for off := 0; off < len(data); off += 10000 {
				if _, err := w.Write(data[off:min(off+10000, len(data))]); err != nil {
					errs <- err
					return
				}
			}
			errs <- w.Close()
		}(i)
		go func(i int) {
			defer wg.Done()
			for round := 0; round < 3; round++ {
				r, err := cl.Open(ctx, fmt.Sprintf("/r%d", i))
				if err != nil {
					errs <- err
					return
				}
				got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
				_ = r.Close()
				if err != nil || !bytes.Equal(got, content(100+i)) {
					errs <- fmt.Errorf("reader %d: %d bytes, %v", i, len(got), err)
					return
				}
			}
			errs <- nil
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for i := 0; i < 8; i++ {
		r, err := cl.Open(ctx, fmt.Sprintf("/w%d", i))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
		_ = r.Close()
		if err != nil || !bytes.Equal(got, content(i)) {
			t.Errorf("writer %d's file reads back %d bytes (%v), not what was written", i, len(got), err)
		}
	}
}

// TestNoSpace: when no blockd has room for a block, the writer gets an
// error that says so.
func TestNoSpace(t *testing.T) {
	c := startCluster(t, 2, 256<<10)
	cl, err := client.Dial(c.metad, client.Options{Creds: c.creds, BlockSize: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	w, err := cl.Create(context.Background(), "/huge", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	_, werr := w.Write(make([]byte, 1<<20))
	cerr := w.Close()
	err = errors.Join(werr, cerr)
	if !errors.Is(err, cairn.ErrNoSpace) || !strings.Contains(err.Error(), "2 without room") {
		t.Fatalf("write with no room anywhere: %v, want a no-space error saying so", err)
	}
}

// TestReadAtLostBlock: a read that starts in a good block and goes on into
// one whose every replica is gone returns the good bytes with an I/O
// error, never with nil or io.EOF: a short count before the end of the
// file is a failure the caller must see as one.
func TestReadAtLostBlock(t *testing.T) {
	const blockSize = 256 << 10
	c := startCluster(t, 1, blockSize)
	cl, err := client.Dial(c.metad, client.Options{Creds: c.creds})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	data := make([]byte, 2*blockSize)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	w, err := cl.Create(ctx, "/f", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := cl.Open(ctx, "/f")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	lost := r.Blocks()[1]
	removed := 0
	_ = filepath.WalkDir(c.dirs[0], func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), fmt.Sprintf("blk_%d", lost.ID)) {
			if rerr := os.Remove(p); rerr != nil {
				t.Error(rerr)
			}
			removed++
		}
		return nil
	})
	if removed == 0 {
		t.Fatalf("no file of %s found to remove", lost.Block)
	}
	buf := make([]byte, 64<<10)
	const off = blockSize - 4096
	n, err := r.ReadAt(buf, off)
	if err == nil || errors.Is(err, io.EOF) || !errors.Is(err, cairn.ErrIO) {
		t.Fatalf("ReadAt(%d bytes at %d) into a lost block = %d, %v; want an I/O error", len(buf), off, n, err)
	}
	if n > len(buf) || !bytes.Equal(buf[:n], data[off:off+n]) {
		t.Errorf("the %d bytes before the error differ from those written", n)
	}
	t.Logf("ReadAt across the boundary: %d bytes, %v", n, err)
}
