package blockd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cairn"
	"cairn/checksum"
)

// fakeClock is a clock that never sleeps: After moves it forward by d at
// once and counts the time waited.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	waited time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.waited += d
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) totalWaited() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waited
}

// scanHarness is a scanner of the volumes in dirs that records what it
// verifies and reports.
type scanHarness struct {
	t        *testing.T
	vols     *Volumes
	s        *Scanner
	clock    *fakeClock
	mu       sync.Mutex
	reported []cairn.BadReplica
	failNext int // reports to refuse
}

func newScanHarness(t *testing.T, dirs []string, clock *fakeClock, rate int64) *scanHarness {
	h := &scanHarness{t: t, clock: clock}
	h.vols = openVolumes(t, dirs, VolumeOptions{})
	h.s = NewScanner(h.vols, ScanConfig{Period: 24 * time.Hour, Rate: rate, Clock: clock, StorageID: h.vols.StorageID(),
		Report: func(_ context.Context, bad []cairn.BadReplica) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.failNext > 0 {
				h.failNext--
				return errors.New("metad unreachable")
			}
			h.reported = append(h.reported, bad...)
			return nil
		}})
	return h
}

// scanner returns the scanner of the only (or first) volume.
func (h *scanHarness) scanner() *volumeScanner {
	return h.s.per[h.vols.vols[0]]
}

// pass steps the volume's scanner until its pass is complete, at most
// limit steps, and returns the IDs it verified in order.
func (h *scanHarness) pass(vs *volumeScanner, limit int) []cairn.BlockID {
	h.t.Helper()
	var got []cairn.BlockID
	h.s.observe = func(b cairn.Block, _ string) { got = append(got, b.ID) }
	defer func() { h.s.observe = nil }()
	for range limit {
		if wait := vs.step(context.Background()); wait > 0 {
			return got
		}
	}
	h.t.Fatalf("pass not complete after %d steps", limit)
	return nil
}

func TestScannerReportsEachKindOfBadReplica(t *testing.T) {
	dir := t.TempDir()
	const chunk = 512
	good := putReplica(t, dir, 1<<30+1, 1001, pattern(5000, 1), chunk)
	flipped := putReplica(t, dir, 1<<30+2, 1002, pattern(5000, 2), chunk)
	short := putReplica(t, dir, 1<<30+3, 1003, pattern(5000, 3), chunk)
	noMeta := putReplica(t, dir, 1<<30+4, 1004, pattern(700, 4), chunk)
	stale := putReplica(t, dir, 1<<30+5, 1005, pattern(700, 5), chunk)
	staleName := putReplica(t, dir, 1<<30+6, 1006, pattern(700, 6), chunk)
	badHeader := putReplica(t, dir, 1<<30+7, 1007, pattern(700, 7), chunk)
	h := newScanHarness(t, []string{dir}, newFakeClock(), 1<<30)
	vols := h.vols

	// Damage them after the store has their lengths, as a disk would.
	flip(t, vols.BlockPath(flipped), 3*chunk+17)
	if err := os.Truncate(vols.BlockPath(short), 4000); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(vols.MetaPath(noMeta)); err != nil {
		t.Fatal(err)
	}
	// stale: the .meta's header carries an older stamp than its name.
	writeMetaFor(t, vols.BlockPath(stale), vols.MetaPath(stale), 1<<30+5, 999, chunk)
	// staleName: only an older .meta is beside the block file.
	old := staleName
	old.GenStamp = 990
	if err := os.Rename(vols.MetaPath(staleName), vols.MetaPath(old)); err != nil {
		t.Fatal(err)
	}
	flip(t, vols.MetaPath(badHeader), 0)

	verified := h.pass(h.scanner(), 100)
	if len(verified) != 7 {
		t.Errorf("verified %v, want all 7 replicas", verified)
	}
	want := map[cairn.BlockID]string{
		flipped.ID:   "checksum mismatch at chunk 3 (offset 1536)",
		short.ID:     "length mismatch: block file has 4000 bytes, the replica was finalized with 5000",
		noMeta.ID:    "missing or unreadable meta: open ",
		stale.ID:     "stale generation stamp: meta header has 999, the replica is at 1005",
		staleName.ID: "stale generation stamp: the replica is at 1006, beside it is only blk_1073741830_990.meta",
		badHeader.ID: "missing or unreadable meta: bad header magic",
	}
	got := map[cairn.BlockID]string{}
	for _, r := range h.reported {
		got[r.ID] = r.Reason
		if r.StorageID != vols.StorageID() {
			t.Errorf("report of %v names storage %q, want %q", r.Block, r.StorageID, vols.StorageID())
		}
	}
	for id, w := range want {
		if !strings.HasPrefix(got[id], w) {
			t.Errorf("block %d reported with %q, want %q", id, got[id], w)
		}
	}
	if r, bad := got[good.ID]; bad {
		t.Errorf("good replica reported bad: %s", r)
	}
	if len(got) != len(want) {
		t.Errorf("reported %d replicas, want %d: %v", len(got), len(want), h.reported)
	}
	if n := h.s.bad.Load(); n != int64(len(want)) {
		t.Errorf("bad counter %d, want %d", n, len(want))
	}
}

func flip(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func writeMetaFor(t testing.TB, blockPath, metaPath string, id, gs uint64, chunk int) {
	t.Helper()
	os.Remove(metaPath)
	if _, _, err := writeMeta(blockPath, metaPath, checksum.NewHeader(id, gs, chunk)); err != nil {
		t.Fatal(err)
	}
}

func TestScannerKeepsToItsRate(t *testing.T) {
	dir := t.TempDir()
	var total int64
	for i := range 8 {
		b := putReplica(t, dir, uint64(1<<30+i), 1000, pattern(300<<10+i*1000, byte(i)), 16<<10)
		total += b.Len
	}
	const rate = 256 << 10
	clock := newFakeClock()
	h := newScanHarness(t, []string{dir}, clock, rate)
	if got := h.pass(h.scanner(), 100); len(got) != 8 {
		t.Fatalf("verified %d replicas, want 8", len(got))
	}
	if h.s.bytes.Load() != total {
		t.Errorf("read %d bytes, want %d", h.s.bytes.Load(), total)
	}
	// The bucket starts full (scanPiece) and refills at rate: the pass waits
	// for everything else.
	lo := time.Duration(float64(total-scanPiece) / rate * float64(time.Second))
	hi := time.Duration(float64(total) / rate * float64(time.Second))
	if w := clock.totalWaited(); w < lo-time.Millisecond || w > hi {
		t.Errorf("scanning %d bytes at %d B/s waited %v, want between %v and %v", total, rate, w, lo, hi)
	}
	t.Logf("%d bytes at %d B/s: waited %v (%.0f B/s)", total, rate, clock.totalWaited(), float64(total)/clock.totalWaited().Seconds())
}

func TestBucket(t *testing.T) {
	now := time.Unix(0, 0)
	b := newBucket(1000, now)
	if d := b.take(now, scanPiece); d != 0 {
		t.Errorf("a full bucket makes %d bytes wait %v", scanPiece, d)
	}
	if d := b.take(now, 500); d != 500*time.Millisecond {
		t.Errorf("500 bytes from an empty bucket at 1000 B/s: wait %v, want 500ms", d)
	}
	now = now.Add(500 * time.Millisecond) // the debt is paid
	if d := b.take(now, 250); d != 250*time.Millisecond {
		t.Errorf("250 bytes after paying the debt: wait %v, want 250ms", d)
	}
	now = now.Add(time.Hour) // refills only up to its depth
	if d := b.take(now, scanPiece+1000); d != time.Second {
		t.Errorf("depth+1000 bytes after an hour: wait %v, want 1s", d)
	}
}

func TestScannerCursorSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	var ids []cairn.BlockID
	for i := range 10 {
		ids = append(ids, putReplica(t, dir, uint64(1<<30+i*300), 1000, pattern(1000, byte(i)), 512).ID)
	}
	clock := newFakeClock()
	h := newScanHarness(t, []string{dir}, clock, 1<<30)
	vs := h.scanner()
	var got []cairn.BlockID
	h.s.observe = func(b cairn.Block, _ string) { got = append(got, b.ID) }
	for range 4 {
		clock.advance(time.Minute) // past cursorSaveEvery: each step saves
		vs.step(context.Background())
	}
	if !slices.Equal(got, ids[:4]) {
		t.Fatalf("first steps verified %v, want %v", got, ids[:4])
	}
	c, err := os.ReadFile(filepath.Join(dir, "current", cursorName))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(c), fmt.Sprintf("last=%d\n", ids[3])) || !strings.Contains(string(c), "format=1\n") {
		t.Errorf("cursor file:\n%s\nwant format=1 and last=%d", c, ids[3])
	}
	h.vols.Close()

	// A new blockd on the same directory goes on after the fourth.
	h2 := newScanHarness(t, []string{dir}, clock, 1<<30)
	rest := h2.pass(h2.scanner(), 100)
	if !slices.Equal(rest, ids[4:]) {
		t.Errorf("after a restart the pass verified %v, want %v", rest, ids[4:])
	}
	// The pass is complete: nothing more until the period has passed.
	clock.advance(time.Hour)
	if wait := h2.scanner().step(context.Background()); wait <= 0 || wait > 24*time.Hour-time.Hour {
		t.Errorf("step after a complete pass: wait %v, want the rest of the 24h period", wait)
	}
	h2.vols.Close()
	h3 := newScanHarness(t, []string{dir}, clock, 1<<30)
	if got := h3.pass(h3.scanner(), 100); len(got) != 0 {
		t.Errorf("a restart within the period verified %v again", got)
	}
	clock.advance(24 * time.Hour)
	if got := h3.pass(h3.scanner(), 100); !slices.Equal(got, ids) {
		t.Errorf("the next period verified %v, want all %v", got, ids)
	}
	h3.vols.Close()

	// A damaged cursor starts a new pass.
	if err := os.WriteFile(filepath.Join(dir, "current", cursorName), []byte("format=1\npassStart=yesterday\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h4 := newScanHarness(t, []string{dir}, clock, 1<<30)
	if got := h4.pass(h4.scanner(), 100); !slices.Equal(got, ids) {
		t.Errorf("with a damaged cursor the pass verified %v, want all %v", got, ids)
	}
}

func TestParseCursor(t *testing.T) {
	at := time.Date(2030, 5, 6, 7, 8, 9, 123456789, time.UTC)
	for _, c := range []cursor{
		{passStart: at},
		{passStart: at, last: 1 << 30, hasLast: true},
		{passStart: at, last: 1<<30 + 5, hasLast: true, done: true, passEnd: at.Add(time.Hour)},
	} {
		got, err := parseCursor(c.marshal())
		if err != nil || got != c {
			t.Errorf("parseCursor(marshal(%+v)) = %+v, %v", c, got, err)
		}
	}
	for _, bad := range []string{"", "format=2\npassStart=2030-01-01T00:00:00Z\n", "format=1\n", "format=1\npassStart=2030-01-01T00:00:00Z\nlast=-3\n", "format=1\npassStart=2030-01-01T00:00:00Z\npassEnd=x\n", "garbage"} {
		if c, err := parseCursor([]byte(bad)); err == nil {
			t.Errorf("parseCursor(%q) = %+v, want an error", bad, c)
		}
	}
}

func TestScannerVerifiesSuspectsFirst(t *testing.T) {
	dir := t.TempDir()
	var ids []cairn.BlockID
	for i := range 6 {
		ids = append(ids, putReplica(t, dir, uint64(1<<30+i), 1000, pattern(700, byte(i)), 512).ID)
	}
	clock := newFakeClock()
	h := newScanHarness(t, []string{dir}, clock, 1<<30)
	vs := h.scanner()
	var got []cairn.BlockID
	h.s.observe = func(b cairn.Block, _ string) { got = append(got, b.ID) }
	vs.step(context.Background())
	d := &Blockd{scan: h.s, store: h.vols}
	d.suspect(cairn.Block{ID: ids[5]})
	d.suspect(cairn.Block{ID: ids[4]})
	d.suspect(cairn.Block{ID: 12345}) // not here: ignored
	vs.step(context.Background())
	vs.step(context.Background())
	vs.step(context.Background())
	if want := []cairn.BlockID{ids[0], ids[5], ids[4], ids[1]}; !slices.Equal(got, want) {
		t.Errorf("verified %v, want %v: suspects first, then the pass", got, want)
	}
	// Suspected again soon after: not verified twice.
	d.suspect(cairn.Block{ID: ids[5]})
	vs.step(context.Background())
	if got[len(got)-1] != ids[2] {
		t.Errorf("a suspect verified a moment ago was verified again: %v", got)
	}
	clock.advance(suspectMemory)
	d.suspect(cairn.Block{ID: ids[5]})
	vs.step(context.Background())
	if got[len(got)-1] != ids[5] {
		t.Errorf("a suspect verified %v ago was not verified: %v", suspectMemory, got)
	}
}

func TestScannerRetriesReportsMetadRefused(t *testing.T) {
	dir := t.TempDir()
	b := putReplica(t, dir, 1<<30, 1000, pattern(2000, 9), 512)
	putReplica(t, dir, 1<<30+1, 1000, pattern(2000, 8), 512)
	h := newScanHarness(t, []string{dir}, newFakeClock(), 1<<30)
	flip(t, h.vols.BlockPath(b), 1999)
	h.failNext = 1
	vs := h.scanner()
	vs.step(context.Background())
	if len(h.reported) != 0 {
		t.Fatalf("reported %v while metad refused", h.reported)
	}
	vs.step(context.Background())
	if len(h.reported) != 1 || h.reported[0].ID != b.ID || h.reported[0].Reason != "checksum mismatch at chunk 3 (offset 1536)" {
		t.Errorf("after metad came back: reported %v, want %v with chunk 3", h.reported, b)
	}
}

func TestScannerRunStopsWithItsContext(t *testing.T) {
	dir := t.TempDir()
	putReplica(t, dir, 1<<30, 1000, pattern(2000, 9), 512)
	h := newScanHarness(t, []string{dir}, newFakeClock(), 1<<30)
	ctx, cancel := context.WithCancel(context.Background())
	passes := 0
	h.s.observe = func(cairn.Block, string) {
		if passes++; passes == 3 {
			cancel()
		}
	}
	h.s.Run(ctx) // the fake clock runs periods by at once
	if passes < 3 {
		t.Errorf("Run returned after %d verifications", passes)
	}
	if _, err := os.Stat(filepath.Join(dir, "current", cursorName)); err != nil {
		t.Errorf("no cursor after Run: %v", err)
	}
}

// BenchmarkScannerPass times a pass of the scanner over 32 MiB of replicas
// (16 KiB chunks) on the wall clock: at 16 MiB/s, to show it keeps to its
// rate, and unlimited, to show what verification costs. It reports the
// bytes per second read and, for the limited run, the ratio to the rate.
func BenchmarkScannerPass(b *testing.B) {
	dir := b.TempDir()
	const replicas, size = 8, 4 << 20
	for i := range replicas {
		putReplica(b, dir, uint64(1<<30+i), 1000, pattern(size, byte(i)), 16<<10)
	}
	for _, rate := range []int64{16 << 20, 1 << 40} {
		name := "unlimited"
		if rate < 1<<40 {
			name = fmt.Sprintf("rate=%dMiB/s", rate>>20)
		}
		b.Run(name, func(b *testing.B) {
			vols := openVolumes(b, []string{dir}, VolumeOptions{})
			defer vols.Close()
			b.SetBytes(replicas * size)
			for b.Loop() {
				s := NewScanner(vols, ScanConfig{Period: time.Nanosecond, Rate: rate})
				vs := s.per[vols.vols[0]]
				vs.startPass(time.Now())
				for vs.step(context.Background()) == 0 && !vs.cur.done {
				}
				if s.verified.Load() != replicas {
					b.Fatalf("verified %d replicas, want %d", s.verified.Load(), replicas)
				}
			}
			perSec := float64(replicas*size) * float64(b.N) / b.Elapsed().Seconds()
			if rate < 1<<40 {
				b.ReportMetric(perSec/float64(rate), "of-rate")
			}
		})
	}
}
