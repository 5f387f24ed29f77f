package checksum

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// BlockFileName returns the name of the data file of a replica of block
// blockID: "blk_<id>", the id in decimal.
func BlockFileName(blockID uint64) string {
	return "blk_" + strconv.FormatUint(blockID, 10)
}

// MetaFileName returns the name of the .meta file of a replica:
// "blk_<id>_<genstamp>.meta", both numbers in decimal.
func MetaFileName(blockID, genStamp uint64) string {
	return fmt.Sprintf("blk_%d_%d.meta", blockID, genStamp)
}

// ParseMetaFileName parses a name made by MetaFileName. ok is false for any
// other name.
func ParseMetaFileName(name string) (blockID, genStamp uint64, ok bool) {
	rest, found := strings.CutPrefix(name, "blk_")
	if !found {
		return 0, 0, false
	}
	rest, found = strings.CutSuffix(rest, ".meta")
	if !found {
		return 0, 0, false
	}
	ids, gss, found := strings.Cut(rest, "_")
	if !found {
		return 0, 0, false
	}
	blockID, err1 := parseDecimal(ids)
	genStamp, err2 := parseDecimal(gss)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return blockID, genStamp, true
}

// parseDecimal accepts only the canonical form FormatUint produces.
func parseDecimal(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if strconv.FormatUint(v, 10) != s {
		return 0, strconv.ErrSyntax
	}
	return v, nil
}

// FinalizedSubdir returns the directory, relative to DIR/current/finalized,
// that holds the finalized replica of block blockID:
// "subdir<a>/subdir<b>" with a = (id>>16)&31 and b = (id>>8)&31.
func FinalizedSubdir(blockID uint64) string {
	return filepath.Join(
		"subdir"+strconv.FormatUint((blockID>>16)&31, 10),
		"subdir"+strconv.FormatUint((blockID>>8)&31, 10),
	)
}
