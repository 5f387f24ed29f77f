package cluster

import (
	"errors"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"testing"
)

// The names of a replica's files in a blockd data directory: the data file
// blk_<id> and, beside it, blk_<id>_<genstamp>.meta.
var (
	blockFileName = regexp.MustCompile(`^blk_([0-9]+)$`)
	metaFileName  = regexp.MustCompile(`^blk_([0-9]+)_([0-9]+)\.meta$`)
)

// BlockFiles returns, for each blockd data directory (every one of a
// blockd with several), the paths of the blk_<id> data files under it (not
// the .meta files), sorted.
func (c *Cluster) BlockFiles(t testing.TB) map[string][]string {
	t.Helper()
	files := make(map[string][]string, len(c.blockds))
	var dirs []string
	for _, b := range c.blockds {
		dirs = append(dirs, b.dirs...)
	}
	for _, dir := range dirs {
		var paths []string
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // moved or deleted by blockd during the walk
			}
			if err != nil {
				return err
			}
			if !d.IsDir() && blockFileName.MatchString(d.Name()) {
				paths = append(paths, path)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("listing block files: %v", err)
		}
		slices.Sort(paths)
		files[dir] = paths
	}
	return files
}

// MetaFiles returns the blk_<id>_<genstamp>.meta files beside the block data
// file blk (a path ending in blk_<id>): those of the same block id in the
// same directory. A healthy replica has exactly one.
func MetaFiles(blk string) []string {
	id, ok := BlockID(blk)
	if !ok {
		return nil
	}
	candidates, _ := filepath.Glob(filepath.Join(filepath.Dir(blk), "blk_"+strconv.FormatUint(id, 10)+"_*.meta"))
	var metas []string
	for _, m := range candidates {
		if sub := metaFileName.FindStringSubmatch(filepath.Base(m)); sub != nil && sub[1] == strconv.FormatUint(id, 10) {
			metas = append(metas, m)
		}
	}
	return metas
}

// BlockID returns the block id of a block data file path ending in
// blk_<id>; ok is false for any other name.
func BlockID(path string) (id uint64, ok bool) {
	sub := blockFileName.FindStringSubmatch(filepath.Base(path))
	if sub == nil {
		return 0, false
	}
	id, err := strconv.ParseUint(sub[1], 10, 64)
	return id, err == nil
}

// FinalizedDir returns the directory in which a blockd with data directory
// dataDir keeps the finalized replica of block id:
// dataDir/current/finalized/subdir<a>/subdir<b>, a = (id>>16)&31,
// b = (id>>8)&31.
func FinalizedDir(dataDir string, id uint64) string {
	return filepath.Join(dataDir, "current", "finalized",
		"subdir"+strconv.FormatUint((id>>16)&31, 10),
		"subdir"+strconv.FormatUint((id>>8)&31, 10))
}

// BlockdIndex returns the index of the blockd with the given storage ID, or
// -1.
func (c *Cluster) BlockdIndex(storageID string) int {
	for i, b := range c.blockds {
		if b.addrs.StorageID == storageID {
			return i
		}
	}
	return -1
}

// SignalBlockd sends sig to blockd i, e.g. SIGSTOP and SIGCONT to make it
// stall.
func (c *Cluster) SignalBlockd(i int, sig syscall.Signal) { c.blockds[i].proc.signal(sig) }
