package metad

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Admission of a leader's pipelined entries (overlay.go): every member's
// state machine decides, the same way from the log alone, whether an
// entry built on the entries before it in its pipeline may be applied.
//
// A leader builds each mutation on the entries it proposed before and
// that are not applied yet. If one of those never reaches the log (Raft
// refused it: leadership lost or being handed over) or is overwritten by
// another leader's entries, the ones built after it must not be applied
// either, whatever the leader saw when it proposed them. So each entry
// carries its pipeline (the term and generation it was started in, and
// the applied index it started from, the base) and its place in it (seq,
// from 1). An entry is applied when it follows the last applied entry of
// its pipeline (seq+1), or starts a pipeline (seq 1) and no entry of
// another pipeline has been applied since that pipeline's base; otherwise
// it is dropped: the store does not change, the member records that the
// entry was dropped (so a restart replaying the log does not take its
// call as made), and the leader's caller is told its change was not
// applied (errDropped). A pipeline that dropped one entry admits no more.

// entryPiped wraps an entry of a leader's pipeline: the header
// (pipeHeaderLen bytes), then the entry itself (its own type byte first).
const entryPiped = 5

const pipeHeaderLen = 4 * 8

// pipeHeader names an entry's pipeline and its place in it.
type pipeHeader struct{ term, gen, base, seq uint64 }

func encodePiped(h pipeHeader, inner []byte) []byte {
	out := make([]byte, 0, 1+pipeHeaderLen+len(inner))
	out = append(out, entryPiped)
	for _, v := range [4]uint64{h.term, h.gen, h.base, h.seq} {
		out = binary.BigEndian.AppendUint64(out, v)
	}
	return append(out, inner...)
}

// splitPiped splits the data of an entryPiped entry after its type byte.
func splitPiped(data []byte) (pipeHeader, []byte, error) {
	if len(data) < pipeHeaderLen+1 {
		return pipeHeader{}, nil, errors.New("a pipelined entry cut short")
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(data[i*8:]) }
	h := pipeHeader{term: u(0), gen: u(1), base: u(2), seq: u(3)}
	inner := data[pipeHeaderLen:]
	if inner[0] == entryPiped {
		return pipeHeader{}, nil, errors.New("a pipelined entry inside another")
	}
	return h, inner, nil
}

// pipeState is what the state machine knows of the pipelines: the one
// whose entries it applies now, the seq of its last applied entry
// (pipeDead once it dropped one), and the index of the last applied entry
// that changed the store, of any pipeline or none.
type pipeState struct {
	term, gen, base, seq uint64
	lastChange           uint64
}

const pipeDead = ^uint64(0)

// raftPipeKey holds the state machine's pipeState (5 × 8 bytes BE);
// outside the namespace.
var raftPipeKey = []byte("mraft-pipeline")

// raftDroppedPrefix begins the records of dropped entries (then the
// index, 8 bytes BE); outside the namespace.
var raftDroppedPrefix = []byte("mraft-dropped/")

func raftDroppedKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), raftDroppedPrefix...), index)
}

func (p pipeState) encode() []byte {
	out := make([]byte, 0, 5*8)
	for _, v := range [5]uint64{p.term, p.gen, p.base, p.seq, p.lastChange} {
		out = binary.BigEndian.AppendUint64(out, v)
	}
	return out
}

func decodePipeState(v []byte) (pipeState, error) {
	if len(v) != 5*8 {
		return pipeState{}, fmt.Errorf("the pipeline record has %d bytes, not 40", len(v))
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(v[i*8:]) }
	return pipeState{u(0), u(1), u(2), u(3), u(4)}, nil
}

// admit decides on the entry at index with header h, and returns the
// state after it.
func (p pipeState) admit(h pipeHeader, index uint64) (pipeState, bool) {
	if h.term == p.term && h.gen == p.gen && h.base == p.base && p.seq != pipeDead {
		if h.seq == p.seq+1 {
			p.seq, p.lastChange = h.seq, index
			return p, true
		}
		p.seq = pipeDead // a gap: the rest were built on what is missing
		return p, false
	}
	if h.seq == 1 && p.lastChange <= h.base {
		return pipeState{term: h.term, gen: h.gen, base: h.base, seq: 1, lastChange: index}, true
	}
	return p, false
}

// errDropped is the Response of an entry the state machine dropped.
var errDropped = errors.New("the change was built on an earlier one that did not commit, and was not applied")
