package metad

import (
	"encoding/binary"
	"fmt"

	"cairn"
)

// Pebble key layout (docs/FORMAT.md is the reference):
//
//	"m" "layout"                       -> layout version, uint32 BE
//	"c" name                           -> counter, uint64 BE ("inode", "block", "genstamp", "files")
//	"i" ino(8 BE)                      -> metapb.Inode
//	"e" parent(8 BE) name              -> child ino (8 BE)
//	"f" ino(8 BE) index(4 BE)          -> block: id(8) genstamp(8) len(8), all BE
//	"k" blockID(8 BE)                  -> owning ino (8 BE)
//	"x" ino(8 BE) name                 -> extended attribute value
//	"w" ino(8 BE)                      -> lease holder of a file being written
//	"o" ino(8 BE)                      -> holders of an unlinked open file, "\n"-separated
//	"l" ino(8 BE) parent(8 BE) name    -> empty: a name of a file other than its primary one
//	"t" keyID(4 BE)                    -> block token key: secret(32) signFrom(8 BE) expiry(8 BE), Unix ms
//	"j" tokenID(16)                    -> expiry of a used join token, Unix seconds (8 BE)
//	"d" seq(8 BE)                      -> delegation token: expiry(8 BE) maxDate(8 BE), Unix ms
//	"n" storageID                      -> blockd certificate issued: notAfter(8 BE, Unix s) serial
//	"m" "delegation-seq"               -> last delegation token sequence number (8 BE)
//	"a" storageID                      -> admin state of a blockd not in service: state(1) byFile(1)
const (
	prefixMeta    = 'm'
	prefixCounter = 'c'
	prefixInode   = 'i'
	prefixEntry   = 'e'
	prefixFile    = 'f'
	prefixBlock   = 'k'
	prefixXattr   = 'x'
	prefixWriting = 'w'
	prefixOrphan  = 'o'
	prefixLink    = 'l'
	// prefixBlockKey keys are outside the namespace: an older metad
	// ignores them (blocktokens.go).
	prefixBlockKey = 't'
	// prefixJoinToken keys the one-time tokens used: join tokens
	// (certs.go) and UI sign-in links (uilink.go).
	prefixJoinToken = 'j'
	// prefixDelegation keys the delegation tokens that work
	// (delegation.go).
	prefixDelegation = 'd'
	// prefixNodeCert keys the blockd identities metad signed
	// certificates for (nodecerts.go).
	prefixNodeCert = 'n'
	// prefixDecom keys the blockds being decommissioned or decommissioned
	// (decommission.go); outside the namespace, like "t", "j" and "d".
	prefixDecom = 'a'
)

// LayoutVersion is the version of the key layout this metad reads and
// writes. Version 2 added the "x" and "w" keys, version 3 the "o" keys of
// unlinked open files and the "metad/recovery" lease holder of files under
// block recovery, version 4 hard links (the inode's nlink and the "l" keys
// of a file's other names); an older store is upgraded in place at start
// (upgradeV1, upgradeVersion), and an older metad refuses a newer store
// rather than misread it (a version 3 metad would free a file with
// several names at the removal of one).
const LayoutVersion = 4

// RootIno is the inode number of "/".
const RootIno = 1

var layoutKey = []byte("mlayout")

// idKey is prefix followed by id (8 bytes, big-endian), with room for
// extra more bytes.
func idKey(prefix byte, id uint64, extra int) []byte {
	k := make([]byte, 9, 9+extra)
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:], id)
	return k
}

func counterKey(name string) []byte { return append([]byte{prefixCounter}, name...) }

func inodeKey(ino uint64) []byte { return idKey(prefixInode, ino, 0) }

func entryPrefix(parent uint64) []byte { return idKey(prefixEntry, parent, 32) }

func entryKey(parent uint64, name string) []byte { return append(entryPrefix(parent), name...) }

func filePrefix(ino uint64) []byte { return idKey(prefixFile, ino, 4) }

func fileBlockKey(ino uint64, idx uint32) []byte {
	return binary.BigEndian.AppendUint32(filePrefix(ino), idx)
}

func blockKey(id cairn.BlockID) []byte { return idKey(prefixBlock, uint64(id), 0) }

func xattrPrefix(ino uint64) []byte { return idKey(prefixXattr, ino, 32) }

func xattrKey(ino uint64, name string) []byte { return append(xattrPrefix(ino), name...) }

func writingKey(ino uint64) []byte { return idKey(prefixWriting, ino, 0) }

func orphanKey(ino uint64) []byte { return idKey(prefixOrphan, ino, 0) }

func linkPrefix(ino uint64) []byte { return idKey(prefixLink, ino, 8+32) }

func linkKey(ino, parent uint64, name string) []byte {
	return append(binary.BigEndian.AppendUint64(linkPrefix(ino), parent), name...)
}

// parseLinkKey returns the directory and name a "l" key records.
func parseLinkKey(k []byte) (parent uint64, name string, ok bool) {
	if len(k) < 18 || k[0] != prefixLink {
		return 0, "", false
	}
	return binary.BigEndian.Uint64(k[9:17]), string(k[17:]), true
}

func joinTokenKey(id [16]byte) []byte { return append([]byte{prefixJoinToken}, id[:]...) }

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func parseU64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("metad: value of %d bytes where 8 were expected", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

func encodeBlock(b cairn.Block) []byte {
	v := make([]byte, 24)
	binary.BigEndian.PutUint64(v, uint64(b.ID))
	binary.BigEndian.PutUint64(v[8:], uint64(b.GenStamp))
	binary.BigEndian.PutUint64(v[16:], uint64(b.Len))
	return v
}

func decodeBlock(v []byte) (cairn.Block, error) {
	if len(v) != 24 {
		return cairn.Block{}, fmt.Errorf("metad: block record of %d bytes where 24 were expected", len(v))
	}
	return cairn.Block{
		ID:       cairn.BlockID(binary.BigEndian.Uint64(v)),
		GenStamp: cairn.GenStamp(binary.BigEndian.Uint64(v[8:])),
		Len:      int64(binary.BigEndian.Uint64(v[16:])),
	}, nil
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
