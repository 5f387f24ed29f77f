package blockd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"cairn"
	"cairn/checksum"
	"cairn/internal/daemon"
	"cairn/internal/versionfile"
)

// progressEvery is how often `cairn blockd verify` rewrites its progress
// line on a terminal.
const progressEvery = 500 * time.Millisecond

// offlineReplica is a finalized replica found on disk by verify.
type offlineReplica struct {
	id    uint64
	dir   string   // its finalized leaf directory
	block string   // path of blk_<id>, "" if missing
	size  int64    // of the block file
	gss   []uint64 // generation stamps of the .meta files beside it, ascending
}

// verifyMain is `cairn blockd verify`: it checks every finalized replica of
// the data directories against its .meta, without a running cluster, and
// exits 0 if all are good, 1 if any is bad (or --block is not found), 2 if
// it cannot run.
func verifyMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const cmd = "cairn blockd verify"
	fl := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fl.SetOutput(stderr)
	data := fl.String("data", "", "data directories of a stopped blockd, comma-separated (required)")
	blockID := fl.String("block", "", "verify only the replica of this block ID")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s --data DIR[,DIR2...] [--block ID]\n\n"+
			"Checks every finalized replica against its .meta without a running cluster: prints\n"+
			"each bad replica and why; exit 0 all good, 1 some bad, 2 cannot run. The blockd\n"+
			"using the directories must be stopped (or verify a copy).\n\n", cmd)
		fl.PrintDefaults()
	}
	if _, code, ok := daemon.ParseFlags(fl, args, 0, stderr); !ok {
		return code
	}
	if *data == "" {
		return daemon.Usage(stderr, cmd, "--data DIR is required")
	}
	dirs, err := splitDirs(*data)
	if err != nil {
		return daemon.Usage(stderr, cmd, err.Error())
	}
	var only uint64
	if *blockID != "" {
		if only, err = strconv.ParseUint(*blockID, 10, 64); err != nil || only == 0 {
			return daemon.Usage(stderr, cmd, fmt.Sprintf("--block %q is not a block ID", *blockID))
		}
	}
	for _, d := range dirs {
		unlock, err := lockForVerify(d)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
			return 2
		}
		defer unlock()
	}

	var reps []offlineReplica
	var total int64
	rbw := 0
	for _, d := range dirs {
		r, err := findReplicas(d, only)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
			return 2
		}
		for _, x := range r {
			total += x.size
		}
		reps = append(reps, r...)
		if only == 0 {
			if ents, err := os.ReadDir(filepath.Join(d, "current", "rbw")); err == nil {
				for _, e := range ents {
					if _, _, ok := checksum.ParseMetaFileName(e.Name()); ok {
						rbw++
					}
				}
			}
		}
	}
	if only != 0 && len(reps) == 0 {
		fmt.Fprintf(stderr, "%s: no finalized replica of block %d in %s\n", cmd, only, strings.Join(dirs, ", "))
		return 1
	}

	var done, bytes, bad atomic.Int64
	stop := startProgress(stderr, len(reps), total, &done, &bytes, &bad)
	for _, r := range reps {
		if ctx.Err() != nil {
			stop()
			fmt.Fprintf(stderr, "%s: interrupted after %d of %d replicas\n", cmd, done.Load(), len(reps))
			return 2
		}
		for _, line := range checkOffline(r, &bytes) {
			bad.Add(1)
			stop()
			fmt.Fprintln(stdout, line)
			stop = startProgress(stderr, len(reps), total, &done, &bytes, &bad)
		}
		done.Add(1)
	}
	stop()
	fmt.Fprintf(stdout, "Verified %d replicas (%d bytes) in %s: ", len(reps), total, strings.Join(dirs, ", "))
	if bad.Load() == 0 {
		fmt.Fprintln(stdout, "all good.")
	} else {
		fmt.Fprintf(stdout, "%d bad.\n", bad.Load())
	}
	if rbw > 0 {
		fmt.Fprintf(stdout, "%d replicas being written (in rbw/) were not verified.\n", rbw)
	}
	if bad.Load() > 0 {
		return 1
	}
	return 0
}

// lockForVerify makes sure no blockd uses dir while it is verified: dir
// must be a blockd data directory whose lock is free, and the lock is held
// until the returned function is called. Nothing in dir is changed.
func lockForVerify(dir string) (func(), error) {
	v, err := versionfile.Read(dir)
	if err != nil {
		return nil, fmt.Errorf("%s is not a blockd data directory: %w", dir, err)
	}
	if v["storageType"] != "BLOCKD" {
		return nil, fmt.Errorf("%s is not a blockd data directory: VERSION has storageType %q", dir, v["storageType"])
	}
	f, err := os.Open(filepath.Join(dir, lockName))
	if errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil // no blockd has ever run here
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := io.ReadAll(io.LimitReader(f, 32))
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is in use by a running blockd (pid %s, lock %s): stop it first, or verify a copy of the directory",
				dir, strings.TrimSpace(string(pid)), lockName)
		}
		return nil, fmt.Errorf("%s: lock %s: %w", dir, lockName, err)
	}
	return func() { _ = f.Close() }, nil
}

// findReplicas lists the finalized replicas under dir, or only those of
// block only when it is not 0, sorted by block ID.
func findReplicas(dir string, only uint64) ([]offlineReplica, error) {
	root := filepath.Join(dir, "current", "finalized")
	if only != 0 {
		root = filepath.Join(root, checksum.FinalizedSubdir(only))
	}
	type key struct {
		dir string
		id  uint64
	}
	found := map[key]*offlineReplica{}
	get := func(k key) *offlineReplica {
		r := found[k]
		if r == nil {
			r = &offlineReplica{id: k.id, dir: k.dir}
			found[k] = r
		}
		return r
	}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		name, leaf := d.Name(), filepath.Dir(path)
		if id, gs, ok := checksum.ParseMetaFileName(name); ok {
			if only == 0 || id == only {
				r := get(key{leaf, id})
				r.gss = append(r.gss, gs)
			}
			return nil
		}
		if id, ok := parseBlockFileName(name); ok && (only == 0 || id == only) {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			r := get(key{leaf, id})
			r.block, r.size = path, fi.Size()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list replicas in %s: %w", root, err)
	}
	out := make([]offlineReplica, 0, len(found))
	for _, r := range found {
		slices.Sort(r.gss)
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b offlineReplica) int {
		if a.id != b.id {
			if a.id < b.id {
				return -1
			}
			return 1
		}
		return strings.Compare(a.dir, b.dir)
	})
	return out, nil
}

// parseBlockFileName parses "blk_<id>" in canonical decimal.
func parseBlockFileName(name string) (uint64, bool) {
	s, ok := strings.CutPrefix(name, "blk_")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || checksum.BlockFileName(id) != name {
		return 0, false
	}
	return id, true
}

// checkOffline verifies one replica found on disk and returns a line for
// each problem: "blk_<id>_<gs> PATH: reason".
func checkOffline(r offlineReplica, read *atomic.Int64) []string {
	name := func(gs uint64) string { return fmt.Sprintf("blk_%d_%d", r.id, gs) }
	blockPath := filepath.Join(r.dir, checksum.BlockFileName(r.id))
	if len(r.gss) == 0 {
		return []string{fmt.Sprintf("blk_%d %s: missing or unreadable meta: no %s_*.meta beside the block file", r.id, blockPath, checksum.BlockFileName(r.id))}
	}
	gs := r.gss[len(r.gss)-1]
	var lines []string
	for _, old := range r.gss[:len(r.gss)-1] {
		lines = append(lines, fmt.Sprintf("%s %s: stale generation stamp: %s beside the newer %s",
			name(old), blockPath, checksum.MetaFileName(r.id, old), checksum.MetaFileName(r.id, gs)))
	}
	if r.block == "" {
		return append(lines, fmt.Sprintf("%s %s: missing block file beside %s", name(gs), blockPath, checksum.MetaFileName(r.id, gs)))
	}
	b := cairn.Block{ID: cairn.BlockID(r.id), GenStamp: cairn.GenStamp(gs), Len: r.size}
	reason := verifyOffline(b, r.block, filepath.Join(r.dir, checksum.MetaFileName(r.id, gs)), read)
	if reason != "" {
		lines = append(lines, fmt.Sprintf("%s %s: %s", name(gs), r.block, reason))
	}
	return lines
}

func verifyOffline(b cairn.Block, blockPath, metaPath string, read *atomic.Int64) string {
	meta, err := os.Open(metaPath)
	if err != nil {
		return fmt.Sprintf("missing or unreadable meta: %v", err)
	}
	defer meta.Close()
	data, err := os.Open(blockPath)
	if err != nil {
		return fmt.Sprintf("missing or unreadable block file: %v", err)
	}
	defer data.Close()
	reason, _ := verifyReplicaFiles(b, b.Len, meta, &countingReader{r: data, n: read})
	return reason
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// startProgress shows, when w is a terminal, a progress line rewritten
// every progressEvery; the returned function stops it and clears the line.
func startProgress(w io.Writer, replicas int, total int64, done, read, bad *atomic.Int64) func() {
	if !isTerminal(w) {
		return func() {}
	}
	line := func() string {
		return fmt.Sprintf("\rverify: %d/%d replicas, %s of %s, %d bad ", done.Load(), replicas, humanBytes(read.Load()), humanBytes(total), bad.Load())
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		shown := false
		for {
			select {
			case <-quit:
				if shown {
					fmt.Fprint(w, "\r\033[K")
				}
				return
			case <-t.C:
				fmt.Fprint(w, line())
				shown = true
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			wg.Wait()
		})
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// computeMetaMain is `cairn blockd compute-meta`: it writes a new .meta for
// a block file. Exit 0 done, 1 failed, 2 bad usage.
func computeMetaMain(args []string, stdout, stderr io.Writer) int {
	const cmd = "cairn blockd compute-meta"
	fl := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fl.SetOutput(stderr)
	block := fl.String("block", "", "the block file (required)")
	out := fl.String("out", "", "the .meta to write; it must not exist (required)")
	idFlag := fl.String("id", "", "block ID (default: from the block file's name blk_<id>)")
	gsFlag := fl.String("genstamp", "", "generation stamp (default: from the one .meta beside the block file)")
	chunkFlag := fl.Int("chunk-size", 0, "bytes per checksum chunk (default: the existing .meta's, else "+strconv.Itoa(checksum.DefaultChunkSize)+")")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s --block FILE --out FILE [--id ID] [--genstamp GS] [--chunk-size N]\n\n"+
			"Writes a .meta for a block file: its header and one checksum per chunk.\n\n", cmd)
		fl.PrintDefaults()
	}
	if _, code, ok := daemon.ParseFlags(fl, args, 0, stderr); !ok {
		return code
	}
	if *block == "" || *out == "" {
		return daemon.Usage(stderr, cmd, "--block FILE and --out FILE are required")
	}
	spec, err := metaSpec(*block, *idFlag, *gsFlag, *chunkFlag)
	if err != nil {
		return daemon.Usage(stderr, cmd, err.Error())
	}
	if _, err := os.Lstat(*out); err == nil {
		return daemon.Usage(stderr, cmd, fmt.Sprintf("--out %s exists; remove it or choose another path", *out))
	}
	n, sums, err := writeMeta(*block, *out, spec)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s: block %d, generation stamp %d, chunk size %d, %d bytes, %d checksums\n",
		*out, spec.BlockID, spec.GenStamp, spec.ChunkSize, n, sums)
	if want := checksum.MetaFileName(spec.BlockID, spec.GenStamp); filepath.Base(*out) != want {
		fmt.Fprintf(stderr, "note: beside the block file, a blockd finds this .meta only under the name %s\n", want)
	}
	return 0
}

// metaSpec works out the header of a new .meta for blockPath from the
// flags, else from the file name blk_<id> and a .meta beside it.
func metaSpec(blockPath, idFlag, gsFlag string, chunk int) (checksum.Header, error) {
	var id uint64
	var err error
	if idFlag != "" {
		if id, err = strconv.ParseUint(idFlag, 10, 64); err != nil {
			return checksum.Header{}, fmt.Errorf("--id %q is not a block ID", idFlag)
		}
	} else {
		var ok bool
		if id, ok = parseBlockFileName(filepath.Base(blockPath)); !ok {
			return checksum.Header{}, fmt.Errorf("cannot tell the block ID from the name %s (not blk_<id>): give --id", filepath.Base(blockPath))
		}
	}
	var existing string // a .meta beside the block, for the stamp and chunk size
	var gs uint64
	if gsFlag != "" {
		if gs, err = strconv.ParseUint(gsFlag, 10, 64); err != nil {
			return checksum.Header{}, fmt.Errorf("--genstamp %q is not a generation stamp", gsFlag)
		}
		existing = filepath.Join(filepath.Dir(blockPath), checksum.MetaFileName(id, gs))
	} else {
		ents, err := os.ReadDir(filepath.Dir(blockPath))
		if err != nil {
			return checksum.Header{}, fmt.Errorf("look for a .meta beside %s: %w", blockPath, err)
		}
		var metas []string
		for _, e := range ents {
			if mid, mgs, ok := checksum.ParseMetaFileName(e.Name()); ok && mid == id {
				metas = append(metas, e.Name())
				gs = mgs
			}
		}
		switch len(metas) {
		case 0:
			return checksum.Header{}, fmt.Errorf("no blk_%d_*.meta beside %s to take the generation stamp from: give --genstamp", id, blockPath)
		case 1:
			existing = filepath.Join(filepath.Dir(blockPath), metas[0])
		default:
			return checksum.Header{}, fmt.Errorf("several .meta files beside %s (%s): give --genstamp", blockPath, strings.Join(metas, ", "))
		}
	}
	if chunk == 0 {
		chunk = checksum.DefaultChunkSize
		if b, err := readHead(existing, checksum.HeaderSize); err == nil {
			if h, err := checksum.ParseHeader(b); err == nil {
				chunk = int(h.ChunkSize)
			}
		}
	}
	h := checksum.NewHeader(id, gs, chunk)
	if chunk < 0 || h.Validate() != nil {
		return checksum.Header{}, fmt.Errorf("--chunk-size %d is outside 1..%d", chunk, checksum.MaxChunkSize)
	}
	return h, nil
}

func readHead(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	k, err := io.ReadFull(f, b)
	return b[:k], err
}

// writeMeta checksums blockPath into a new file out, written in full and
// synced under a temporary name, then linked to out (never replacing a
// file there). It returns the block's length and the number of checksums.
func writeMeta(blockPath, out string, h checksum.Header) (int64, int64, error) {
	in, err := os.Open(blockPath)
	if err != nil {
		return 0, 0, err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*.tmp")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	w, err := checksum.NewWriter(tmp, h)
	if err != nil {
		return 0, 0, err
	}
	n, err := io.Copy(w, in)
	if err != nil {
		return 0, 0, fmt.Errorf("checksum %s: %w", blockPath, err)
	}
	if err := w.Close(); err != nil {
		return 0, 0, fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return 0, 0, fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := os.Link(tmp.Name(), out); err != nil {
		return 0, 0, fmt.Errorf("write %s: %w", out, err)
	}
	if err := versionfile.SyncDir(filepath.Dir(out)); err != nil {
		return 0, 0, fmt.Errorf("sync the directory of %s: %w", out, err)
	}
	return n, checksum.NumChunks(n, int(h.ChunkSize)), nil
}
