package checksum

import (
	"errors"
	"fmt"
)

// ErrCorruption is matched by errors.Is for every error that reports damaged
// data or metadata: *CorruptionError values and errors passed through
// MarkCorruption.
var ErrCorruption = errors.New("checksum: corruption")

// CorruptionError reports a replica whose bytes or .meta are damaged.
type CorruptionError struct {
	// BlockID is the block the damage was found in. For a damaged header it
	// is the id the header claims (0 if the header is too short to hold one)
	// and may itself be damaged.
	BlockID uint64
	// Chunk is the index of the bad chunk, or -1 when the problem is not
	// about one chunk (header, lengths).
	Chunk int64
	// Offset is the byte offset in the block of Chunk, or -1.
	Offset int64
	// Reason says what is wrong, e.g. "checksum mismatch" or
	// "length mismatch: block has 5 chunks, meta has 4".
	Reason string
}

// Error returns e.g. "block 17: checksum mismatch at chunk 3 (offset 196608)".
func (e *CorruptionError) Error() string {
	switch {
	case e.Chunk >= 0 && e.Offset >= 0:
		return fmt.Sprintf("block %d: %s at chunk %d (offset %d)", e.BlockID, e.Reason, e.Chunk, e.Offset)
	case e.Chunk >= 0:
		return fmt.Sprintf("block %d: %s at chunk %d", e.BlockID, e.Reason, e.Chunk)
	default:
		return fmt.Sprintf("block %d: %s", e.BlockID, e.Reason)
	}
}

// Is reports whether target is ErrCorruption.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorruption }

// headerError returns the corruption error for a damaged header.
func headerError(blockID uint64, format string, args ...any) *CorruptionError {
	return &CorruptionError{BlockID: blockID, Chunk: -1, Offset: -1, Reason: fmt.Sprintf(format, args...)}
}

// MarkCorruption returns err marked so that errors.Is(err, ErrCorruption)
// holds. The result has err's message and unwraps to err, so errors.Is and
// errors.As still see everything err wraps. MarkCorruption(nil) is nil, and
// an error that already is a corruption error is returned unchanged.
func MarkCorruption(err error) error {
	if err == nil || errors.Is(err, ErrCorruption) {
		return err
	}
	return &corruptionMark{err: err}
}

type corruptionMark struct{ err error }

func (m *corruptionMark) Error() string        { return m.err.Error() }
func (m *corruptionMark) Unwrap() error        { return m.err }
func (m *corruptionMark) Is(target error) bool { return target == ErrCorruption }

// IsCorruption reports whether err is or wraps a corruption error.
func IsCorruption(err error) bool { return errors.Is(err, ErrCorruption) }
