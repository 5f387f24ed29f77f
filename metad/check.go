package metad

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"cairn"
	"cairn/internal/versionfile"
	"cairn/metad/metapb"
)

// maxProblemsShown bounds the problems a CheckReport lists; all are counted.
const maxProblemsShown = 1000

// CheckReport is the outcome of Check.
type CheckReport struct {
	Dir         string
	NamespaceID string
	Layout      uint32
	Inodes      int64 // by type below
	Dirs        int64
	Files       int64
	Symlinks    int64
	Others      int64
	Entries     int64
	Blocks      int64
	Writing     int64 // files being written
	Orphans     int64 // unlinked files still open (no entry, an "o" key)
	Links       int64 // names of files other than their primary ones ("l" keys)
	Xattrs      int64
	Reachable   int64 // inodes reached from the root
	Counters    map[string]uint64
	// Digest is the SHA-256 of the namespace's records (every key and
	// value nameSpaceKey counts, in key order, each length-prefixed): the
	// same on every member of a metad group that has applied the same
	// entries, whatever else their stores hold.
	Digest      string
	Problems    []string // the first maxProblemsShown
	NumProblems int
}

// Clean reports whether the check found nothing wrong.
func (r *CheckReport) Clean() bool { return r.NumProblems == 0 }

func (r *CheckReport) problem(format string, args ...any) {
	r.NumProblems++
	if len(r.Problems) < maxProblemsShown {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Check checks the store of a data directory or a checkpoint offline
// (metad must not be running on it): every entry names an existing inode
// that names it back (as its primary name or by a link key), every file
// counts its names, every inode is reachable from the root, every block
// belongs to exactly one file, which lists it, each file's blocks add up
// to its size, the index of files being written and the extended
// attributes match their inodes, and every counter exceeds every id in
// use. It reads one key at a time; its memory does not grow with the
// namespace. An error means the store could not be read at all.
func Check(dir string) (*CheckReport, error) {
	v, err := versionfile.Read(dir)
	if err != nil {
		return nil, fmt.Errorf("check %s: not a metad data directory or checkpoint: %w", dir, err)
	}
	opts := storeOptions(8 << 20)
	opts.ReadOnly = true
	path := filepath.Join(dir, storeDir)
	if !hasManifest(path) {
		return nil, fmt.Errorf("check %s: no store in %s", dir, path)
	}
	db, err := pebble.Open(path, opts)
	if err != nil {
		return nil, fmt.Errorf("check %s (is a metad running on it? stop it, or check a checkpoint): %w", dir, err)
	}
	defer db.Close()
	c := &checker{db: db, r: &CheckReport{Dir: dir, NamespaceID: v["namespaceID"], Counters: map[string]uint64{}}}
	if err := c.run(v); err != nil {
		return nil, fmt.Errorf("check %s: %w", dir, err)
	}
	return c.r, nil
}

type checker struct {
	db  *pebble.DB
	r   *CheckReport
	max struct{ ino, blk, gs uint64 }
	// the file whose "f" keys are being read
	file struct {
		ino    uint64
		in     *metapb.Inode
		blocks uint32
		size   int64
	}
	// the last file whose block list a "k" key was checked against
	owner struct {
		ino uint64
		ids map[cairn.BlockID]bool
	}
	fkeys int64
}

func (c *checker) get(key []byte) ([]byte, error) {
	v, closer, err := c.db.Get(key)
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), v...)
	return out, closer.Close()
}

// inode returns inode ino, or nil if it is missing or unreadable (which is
// then reported, as what).
func (c *checker) inode(ino uint64, what string) *metapb.Inode {
	v, err := c.get(inodeKey(ino))
	if err != nil {
		c.r.problem("%s: inode %d is missing", what, ino)
		return nil
	}
	in := &metapb.Inode{}
	if err := proto.Unmarshal(v, in); err != nil {
		c.r.problem("%s: inode %d does not decode: %v", what, ino, err)
		return nil
	}
	return in
}

func (c *checker) run(version map[string]string) error {
	v, err := c.get(layoutKey)
	if err != nil {
		return fmt.Errorf("no layout version record: %w", err)
	}
	if len(v) != 4 {
		return fmt.Errorf("layout version record of %d bytes", len(v))
	}
	c.r.Layout = binary.BigEndian.Uint32(v)
	if c.r.Layout > LayoutVersion {
		return fmt.Errorf("the store has layout version %d, newer than this cairn's %d: check it with a newer cairn", c.r.Layout, LayoutVersion)
	}
	if version["layoutVersion"] != fmt.Sprint(c.r.Layout) {
		c.r.problem("VERSION says layout %s, the store %d", version["layoutVersion"], c.r.Layout)
	}
	for _, name := range []string{"inode", "block", "genstamp", "files"} {
		v, err := c.get(counterKey(name))
		if err != nil {
			c.r.problem("counter %s is missing", name)
			continue
		}
		n, err := parseU64(v)
		if err != nil {
			c.r.problem("counter %s: %v", name, err)
			continue
		}
		c.r.Counters[name] = n
	}
	it, err := c.db.NewIter(nil)
	if err != nil {
		return err
	}
	h := sha256.New()
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		c.key(k, v)
		if len(k) > 0 && nameSpaceKey(k) {
			h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(k))))
			h.Write(k)
			h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(v))))
			h.Write(v)
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	c.r.Digest = hex.EncodeToString(h.Sum(nil))
	c.endFile()
	if c.fkeys != c.r.Blocks {
		c.r.problem("%d block keys (k) but %d file block records (f): a block is listed by no file or twice", c.r.Blocks, c.fkeys)
	}
	if c.r.Entries != c.r.Inodes-1-c.r.Orphans+c.r.Links {
		c.r.problem("%d directory entries for %d inodes, %d of them unlinked, and %d other names: every inode but the root and the unlinked needs one entry per name", c.r.Entries, c.r.Inodes, c.r.Orphans, c.r.Links)
	}
	if err := c.reach(); err != nil {
		return err
	}
	if c.r.Reachable+c.r.Orphans != c.r.Inodes {
		c.r.problem("%d of %d inodes are reachable from the root", c.r.Reachable, c.r.Inodes)
	}
	if n, ok := c.r.Counters["files"]; ok && int64(n) != c.r.Inodes {
		c.r.problem("counter files is %d, the store holds %d inodes", n, c.r.Inodes)
	}
	for _, x := range []struct {
		name string
		max  uint64
	}{{"inode", c.max.ino}, {"block", c.max.blk}, {"genstamp", c.max.gs}} {
		if n, ok := c.r.Counters[x.name]; ok && x.max >= n {
			c.r.problem("counter %s is %d, not above %d, an id in use", x.name, n, x.max)
		}
	}
	return nil
}

// key checks one record of the store.
func (c *checker) key(k, v []byte) {
	if len(k) == 0 {
		c.r.problem("an empty key")
		return
	}
	id := func() uint64 { return binary.BigEndian.Uint64(k[1:9]) }
	switch k[0] {
	case prefixMeta:
		switch {
		case bytes.Equal(k, layoutKey), bytes.Equal(k, subdirsKey), bytes.Equal(k, delegationSeqKey), bytes.Equal(k, raftAppliedKey):
		case bytes.Equal(k, raftPipeKey):
			if _, err := decodePipeState(v); err != nil {
				c.r.problem("%v", err)
			}
		case bytes.HasPrefix(k, raftDroppedPrefix) && len(k) == len(raftDroppedPrefix)+8:
		default:
			c.r.problem("unknown meta key %q", k)
		}
	case prefixCounter:
		switch string(k[1:]) {
		case "inode", "block", "genstamp", "files":
		default:
			c.r.problem("unknown counter %q", k[1:])
		}
	case prefixInode:
		if len(k) != 9 {
			c.r.problem("inode key %x of %d bytes", k, len(k))
			return
		}
		c.inodeRecord(id(), v)
	case prefixEntry:
		if len(k) < 10 {
			c.r.problem("entry key %x of %d bytes", k, len(k))
			return
		}
		c.entry(id(), string(k[9:]), v)
	case prefixFile:
		if len(k) != 13 {
			c.r.problem("file block key %x of %d bytes", k, len(k))
			return
		}
		c.fileBlock(id(), binary.BigEndian.Uint32(k[9:]), v)
	case prefixBlock:
		if len(k) != 9 {
			c.r.problem("block key %x of %d bytes", k, len(k))
			return
		}
		c.block(cairn.BlockID(id()), v)
	case prefixWriting:
		if len(k) != 9 {
			c.r.problem("writing key %x of %d bytes", k, len(k))
			return
		}
		c.r.Writing++
		if in := c.inode(id(), "file being written"); in != nil && in.LeaseHolder != string(v) {
			c.r.problem("inode %d is indexed as written by %q, its lease holder is %q", id(), v, in.LeaseHolder)
		}
	case prefixOrphan:
		if len(k) != 9 {
			c.r.problem("orphan key %x of %d bytes", k, len(k))
			return
		}
		// An "o" key names an orphan, or a file that still has names
		// and holders who unlinked others of them.
		if in := c.inode(id(), "unlinked open file"); in != nil && in.Parent != 0 && len(v) == 0 {
			c.r.problem("inode %d is listed as unlinked without holders but is in directory %d", id(), in.Parent)
		}
	case prefixLink:
		parent, name, ok := parseLinkKey(k)
		if !ok {
			c.r.problem("link key %x of %d bytes", k, len(k))
			return
		}
		c.r.Links++
		c.link(id(), parent, name, v)
	case prefixBlockKey:
		if _, err := decodeBlockKey(k, v); err != nil {
			c.r.problem("%v", err)
		}
	case prefixXattr:
		if len(k) < 10 {
			c.r.problem("xattr key %x of %d bytes", k, len(k))
			return
		}
		c.r.Xattrs++
		c.inode(id(), fmt.Sprintf("attribute %q", k[9:]))
	case prefixDecom:
		if _, err := decodeAdmin(v); err != nil || len(k) < 2 {
			c.r.problem("admin state key %q: %v", k, err)
		}
	case prefixJoinToken:
		if len(k) != 17 || len(v) != 8 {
			c.r.problem("used join token key %x of %d bytes, value of %d", k, len(k), len(v))
		}
	case prefixDelegation:
		if _, _, err := decodeDelegationRecord(v); len(k) != 9 || err != nil {
			c.r.problem("delegation token key %x of %d bytes, value of %d", k, len(k), len(v))
		}
	case prefixNodeCert:
		if _, _, err := decodeNodeCert(v); len(k) < 2 || err != nil {
			c.r.problem("blockd certificate key %q, value of %d bytes", k, len(v))
		}
	default:
		c.r.problem("unknown key %q", k)
	}
}

func (c *checker) inodeRecord(ino uint64, v []byte) {
	in := &metapb.Inode{}
	if err := proto.Unmarshal(v, in); err != nil {
		c.r.problem("inode %d does not decode: %v", ino, err)
		return
	}
	c.r.Inodes++
	c.max.ino = max(c.max.ino, ino)
	mode := fs.FileMode(in.Mode)
	switch {
	case mode.IsDir():
		c.r.Dirs++
	case mode.IsRegular():
		c.r.Files++
	case mode&fs.ModeSymlink != 0:
		c.r.Symlinks++
	default:
		c.r.Others++
	}
	if in.Id != ino {
		c.r.problem("inode key %d holds inode %d", ino, in.Id)
	}
	if ino == RootIno {
		if !mode.IsDir() || in.Parent != 0 {
			c.r.problem("the root is not a directory without parent (mode %v, parent %d)", mode, in.Parent)
		}
	} else if in.Parent == 0 {
		c.r.Orphans++
		if _, err := c.get(orphanKey(ino)); err != nil || !mode.IsRegular() {
			c.r.problem("inode %d (%q) has no parent and is not an unlinked open file", ino, in.Name)
		}
		if in.Nlink != 0 {
			c.r.problem("inode %d is unlinked but counts %d names", ino, in.Nlink)
		}
	} else if v, err := c.get(entryKey(in.Parent, in.Name)); err != nil {
		c.r.problem("inode %d (%q in directory %d) has no directory entry", ino, in.Name, in.Parent)
	} else if n, err := parseU64(v); err != nil || n != ino {
		c.r.problem("inode %d (%q in directory %d): the entry names inode %d", ino, in.Name, in.Parent, n)
	}
	if mode.IsDir() && in.Nlink != 0 {
		c.r.problem("directory %d counts %d names", ino, in.Nlink)
	}
	if !mode.IsDir() && in.Parent != 0 {
		if n := c.countPrefix(linkPrefix(ino)); n != int64(nlink(in))-1 {
			c.r.problem("inode %d counts %d names, the store holds %d", ino, nlink(in), n+1)
		}
	}
	if !mode.IsRegular() && (in.Blocks != 0 || in.LeaseHolder != "") {
		c.r.problem("inode %d is a %v with blocks (%d) or a lease holder (%q)", ino, mode.Type(), in.Blocks, in.LeaseHolder)
	}
	if mode.IsRegular() {
		if in.Blocks > 0 {
			if _, err := c.get(fileBlockKey(ino, 0)); err != nil {
				c.r.problem("file %d has %d blocks but no block record", ino, in.Blocks)
			}
		} else if in.Size != 0 {
			c.r.problem("file %d has no blocks but size %d", ino, in.Size)
		}
		_, err := c.get(writingKey(ino))
		if indexed := err == nil; indexed != (in.LeaseHolder != "") && c.r.Layout >= 2 {
			c.r.problem("file %d has lease holder %q but is indexed as being written: %v", ino, in.LeaseHolder, indexed)
		}
	}
	if n := c.countPrefix(xattrPrefix(ino)); n != int64(in.Xattrs) {
		c.r.problem("inode %d counts %d attributes, the store holds %d", ino, in.Xattrs, n)
	}
	if mode.IsDir() && c.subdirsCounted() {
		if n := c.countSubdirs(ino); n != int64(in.Subdirs) {
			c.r.problem("directory %d counts %d subdirectories, the store holds %d", ino, in.Subdirs, n)
		}
	}
}

// subdirsCounted reports whether the store's directories count their
// subdirectories (a store not opened since they did is counted at start).
func (c *checker) subdirsCounted() bool {
	_, err := c.get(subdirsKey)
	return err == nil
}

// countSubdirs counts the entries of directory ino that are directories.
func (c *checker) countSubdirs(ino uint64) int64 {
	p := entryPrefix(ino)
	it, err := c.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return -1
	}
	defer it.Close()
	var n int64
	for it.First(); it.Valid(); it.Next() {
		child, err := parseU64(it.Value())
		if err != nil {
			continue // entry() reports it
		}
		if v, err := c.get(inodeKey(child)); err == nil {
			in := &metapb.Inode{}
			if proto.Unmarshal(v, in) == nil && fs.FileMode(in.Mode).IsDir() {
				n++
			}
		}
	}
	return n
}

// link checks an "l" key: another name (parent, name) of file ino, which
// its entry names and which is not the file's primary name.
func (c *checker) link(ino, parent uint64, name string, v []byte) {
	if len(v) != 0 {
		c.r.problem("link key of inode %d (%q in %d) holds a value", ino, name, parent)
	}
	in := c.inode(ino, fmt.Sprintf("name %q in directory %d", name, parent))
	if in == nil {
		return
	}
	switch {
	case fs.FileMode(in.Mode).IsDir():
		c.r.problem("directory %d has another name %q in %d", ino, name, parent)
	case in.Parent == 0:
		c.r.problem("unlinked inode %d has a name %q in %d", ino, name, parent)
	case in.Parent == parent && in.Name == name:
		c.r.problem("inode %d records its primary name %q in %d as another name", ino, name, parent)
	}
	if ev, err := c.get(entryKey(parent, name)); err != nil {
		c.r.problem("inode %d has a name %q in directory %d without an entry", ino, name, parent)
	} else if n, err := parseU64(ev); err != nil || n != ino {
		c.r.problem("inode %d has a name %q in directory %d whose entry names inode %d", ino, name, parent, n)
	}
}

func (c *checker) countPrefix(p []byte) int64 {
	it, err := c.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return -1
	}
	defer it.Close()
	var n int64
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	return n
}

func (c *checker) entry(parent uint64, name string, v []byte) {
	c.r.Entries++
	if err := cairn.ValidateName(name); err != nil {
		c.r.problem("entry %q in directory %d: %v", name, parent, err)
	}
	child, err := parseU64(v)
	if err != nil {
		c.r.problem("entry %q in directory %d: %v", name, parent, err)
		return
	}
	if p := c.inode(parent, fmt.Sprintf("the directory of entry %q", name)); p != nil && !fs.FileMode(p.Mode).IsDir() {
		c.r.problem("entry %q is in inode %d, which is not a directory", name, parent)
	}
	in := c.inode(child, fmt.Sprintf("entry %q in directory %d", name, parent))
	if in == nil || in.Parent == parent && in.Name == name {
		return
	}
	if fs.FileMode(in.Mode).IsDir() {
		c.r.problem("entry %q in directory %d names inode %d, which says it is %q in %d", name, parent, child, in.Name, in.Parent)
	} else if _, err := c.get(linkKey(child, parent, name)); err != nil {
		c.r.problem("entry %q in directory %d names inode %d, whose names are %q in %d and no link key names this one", name, parent, child, in.Name, in.Parent)
	}
}

func (c *checker) fileBlock(ino uint64, idx uint32, v []byte) {
	c.fkeys++
	if ino != c.file.ino {
		c.endFile()
		c.file.ino, c.file.blocks, c.file.size = ino, 0, 0
		c.file.in = c.inode(ino, "file block record")
		if c.file.in != nil && !fs.FileMode(c.file.in.Mode).IsRegular() {
			c.r.problem("inode %d has block records but is a %v", ino, fs.FileMode(c.file.in.Mode).Type())
		}
	}
	b, err := decodeBlock(v)
	if err != nil {
		c.r.problem("file %d block %d: %v", ino, idx, err)
		return
	}
	if idx != c.file.blocks {
		c.r.problem("file %d: block record %d where %d was expected", ino, idx, c.file.blocks)
	}
	c.file.blocks = idx + 1
	c.file.size += b.Len
	c.max.blk = max(c.max.blk, uint64(b.ID))
	c.max.gs = max(c.max.gs, uint64(b.GenStamp))
	if in := c.file.in; in != nil && (b.Len < 0 || b.Len > in.BlockSize) {
		c.r.problem("file %d: %s holds %d bytes, outside 0..%d", ino, b, b.Len, in.BlockSize)
	}
	if v, err := c.get(blockKey(b.ID)); err != nil {
		c.r.problem("file %d lists %s, which has no block key", ino, b)
	} else if owner, err := parseU64(v); err != nil || owner != ino {
		c.r.problem("file %d lists %s, whose block key names inode %d", ino, b, owner)
	}
}

// endFile checks the totals of the file whose records were just read.
func (c *checker) endFile() {
	in := c.file.in
	if c.file.ino == 0 || in == nil {
		return
	}
	if c.file.blocks != in.Blocks {
		c.r.problem("file %d has %d block records, its inode says %d", c.file.ino, c.file.blocks, in.Blocks)
	}
	if c.file.size != in.Size {
		c.r.problem("file %d: blocks hold %d bytes, its inode says %d", c.file.ino, c.file.size, in.Size)
	}
}

func (c *checker) block(id cairn.BlockID, v []byte) {
	c.r.Blocks++
	c.max.blk = max(c.max.blk, uint64(id))
	ino, err := parseU64(v)
	if err != nil {
		c.r.problem("block %d: %v", id, err)
		return
	}
	if ino != c.owner.ino {
		c.owner.ino, c.owner.ids = ino, map[cairn.BlockID]bool{}
		p := filePrefix(ino)
		it, err := c.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err == nil {
			for it.First(); it.Valid(); it.Next() {
				if b, err := decodeBlock(it.Value()); err == nil {
					c.owner.ids[b.ID] = true
				}
			}
			_ = it.Close()
		}
	}
	if !c.owner.ids[id] {
		c.r.problem("block %d belongs to inode %d, which does not list it", id, ino)
	}
}

// reach counts the inodes reachable from the root, following only entries
// whose inode names them back, so it visits each inode at most once.
func (c *checker) reach() error {
	var walk func(dir uint64) error
	walk = func(dir uint64) error {
		c.r.Reachable++
		p := entryPrefix(dir)
		it, err := c.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return err
		}
		defer it.Close()
		for it.First(); it.Valid(); it.Next() {
			ino, err := parseU64(it.Value())
			if err != nil {
				continue
			}
			v, err := c.get(inodeKey(ino))
			if errors.Is(err, pebble.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			in := &metapb.Inode{}
			if proto.Unmarshal(v, in) != nil || in.Parent != dir || in.Name != string(it.Key()[len(p):]) {
				continue
			}
			if !fs.FileMode(in.Mode).IsDir() {
				c.r.Reachable++
				continue
			}
			if err := walk(ino); err != nil {
				return err
			}
		}
		return it.Error()
	}
	if _, err := c.get(inodeKey(RootIno)); err != nil {
		c.r.problem("the root inode is missing")
		return nil
	}
	return walk(RootIno)
}

// Write prints the report: the problems, the counts, and a last line
// saying CLEAN or CORRUPT.
func (r *CheckReport) Write(w io.Writer) {
	fmt.Fprintf(w, "Checking the metad store in %s (namespace %s, layout %d)\n", r.Dir, r.NamespaceID, r.Layout)
	for _, p := range r.Problems {
		fmt.Fprintf(w, "PROBLEM: %s\n", p)
	}
	if r.NumProblems > len(r.Problems) {
		fmt.Fprintf(w, "... and %d more problems\n", r.NumProblems-len(r.Problems))
	}
	fmt.Fprintf(w, "Inodes:\t%d (directories %d, files %d, symlinks %d, other %d)\n", r.Inodes, r.Dirs, r.Files, r.Symlinks, r.Others)
	fmt.Fprintf(w, "Reachable from /:\t%d\n", r.Reachable)
	fmt.Fprintf(w, "Directory entries:\t%d\n", r.Entries)
	fmt.Fprintf(w, "Blocks:\t%d\n", r.Blocks)
	fmt.Fprintf(w, "Files being written:\t%d\n", r.Writing)
	fmt.Fprintf(w, "Unlinked open files:\t%d\n", r.Orphans)
	fmt.Fprintf(w, "Other names (hard links):\t%d\n", r.Links)
	fmt.Fprintf(w, "Extended attributes:\t%d\n", r.Xattrs)
	fmt.Fprintf(w, "Counters:\tinode %d, block %d, genstamp %d, files %d\n",
		r.Counters["inode"], r.Counters["block"], r.Counters["genstamp"], r.Counters["files"])
	fmt.Fprintf(w, "Namespace digest:\tsha256:%s\n", r.Digest)
	if r.Clean() {
		fmt.Fprintf(w, "The metad store in '%s' is CLEAN\n", r.Dir)
	} else {
		fmt.Fprintf(w, "The metad store in '%s' is CORRUPT: %d problems\n", r.Dir, r.NumProblems)
	}
}
