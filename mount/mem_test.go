package mount

import (
	"context"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"cairn"
)

// memBackend is an in-memory Backend: a fake of the cluster, so the
// mount's own tests exercise the mount and nothing else. It checks no
// permissions: it stores what it is told, records who asked (calls), and
// answers with an error set in fail.
type memBackend struct {
	mu       sync.Mutex
	files    map[string]*memFile // by path; "/" is the root
	nextIno  uint64
	stats    cairn.FsStats
	closeErr map[string]error // what Close of a writer created at this path returns
	lists    []listCall
	statted  map[string]int   // Stat calls by path
	calls    []memCall        // every call but Stat and List, in order
	fail     map[string]error // by "Op path": the error that call returns
	// buffered makes writers keep what they accept from readers until
	// Flush or Close, as a pipeline does until hflush; flushes counts
	// the Flush calls.
	buffered bool
	flushes  int
	readers  int // readers open
	reads    int // ReadAt calls of every reader
}

type memFile struct {
	fi     cairn.FileInfo
	data   []byte
	xattrs map[string][]byte
}

// memCall is one call the backend served, and who made it.
type memCall struct {
	op, path string
	name     string // of the extended attribute
	id       cairn.Identity
	hasID    bool
	flags    cairn.XattrFlags // SetXattr's
}

type listCall struct {
	path, after string
	limit       int
}

func newMemBackend() *memBackend {
	b := &memBackend{files: map[string]*memFile{}, nextIno: 1, closeErr: map[string]error{}, statted: map[string]int{}, fail: map[string]error{}}
	b.add("/", os.ModeDir|0o755)
	return b
}

// add makes an entry; b.mu is held or b is not shared yet.
func (b *memBackend) add(path string, mode os.FileMode) *memFile {
	_, name := cairn.Split(path)
	if path == "/" {
		name = "/"
	}
	b.nextIno++
	now := time.Now()
	f := &memFile{fi: cairn.FileInfo{Name: name, Inode: b.nextIno, Mode: mode, ModTime: now, AccessTime: now}}
	b.files[path] = f
	return f
}

// record notes a call by the caller ctx names and returns the error set
// for it in fail; b.mu is held.
func (b *memBackend) record(ctx context.Context, op, path string) error {
	id, ok := cairn.IdentityFrom(ctx)
	b.calls = append(b.calls, memCall{op: op, path: path, id: id, hasID: ok})
	return b.fail[op+" "+path]
}

// callsTo returns the calls of op on path.
func (b *memBackend) callsTo(op, path string) []memCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	var r []memCall
	for _, c := range b.calls {
		if c.op == op && c.path == path {
			r = append(r, c)
		}
	}
	return r
}

// own makes the caller ctx names the owner of f, as a namespace does.
func own(ctx context.Context, f *memFile) {
	if id, ok := cairn.IdentityFrom(ctx); ok {
		f.fi.Owner = id.User
		if len(id.Groups) > 0 {
			f.fi.Group = id.Groups[0]
		}
	}
}

// file returns a copy of what the backend keeps of path.
func (b *memBackend) file(path string) (cairn.FileInfo, map[string][]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, ok := b.files[path]
	if !ok {
		return cairn.FileInfo{}, nil, false
	}
	xs := map[string][]byte{}
	for k, v := range f.xattrs {
		xs[k] = v
	}
	return b.info(f), xs, true
}

// put makes a complete file holding data, and its parent directories.
func (b *memBackend) put(path string, data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	dir, _ := cairn.Split(path)
	b.mkdirAll(dir)
	b.add(path, 0o644).data = append([]byte(nil), data...)
}

func (b *memBackend) mkdirAll(path string) {
	if _, ok := b.files[path]; ok || path == "/" {
		return
	}
	dir, _ := cairn.Split(path)
	b.mkdirAll(dir)
	b.add(path, os.ModeDir|0o755)
}

// content returns a file's bytes and whether a writer still holds it.
func (b *memBackend) content(path string) ([]byte, bool, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, ok := b.files[path]
	if !ok {
		return nil, false, false
	}
	return append([]byte(nil), f.data...), f.fi.Writing, true
}

func (b *memBackend) listCalls(path string) []listCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	var r []listCall
	for _, c := range b.lists {
		if c.path == path {
			r = append(r, c)
		}
	}
	return r
}

// statsUnder counts the Stat calls on paths under dir.
func (b *memBackend) statsUnder(dir string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for p, c := range b.statted {
		if strings.HasPrefix(p, dir+"/") {
			n += c
		}
	}
	return n
}

func (b *memBackend) info(f *memFile) cairn.FileInfo {
	fi := f.fi
	if !fi.IsDir() {
		fi.Size = int64(len(f.data))
	}
	return fi
}

// dir returns the directory at path, or the error a namespace gives.
func (b *memBackend) dir(op, path string) (*memFile, error) {
	f, ok := b.files[path]
	switch {
	case !ok:
		return nil, cairn.E(op, cairn.KindNotExist, path, "")
	case !f.fi.IsDir():
		return nil, cairn.E(op, cairn.KindNotDir, path, "")
	}
	return f, nil
}

func (b *memBackend) hasChildren(path string) bool {
	for p := range b.files {
		if d, _ := cairn.Split(p); d == path && p != "/" {
			return true
		}
	}
	return false
}

func (b *memBackend) Stat(ctx context.Context, path string) (cairn.FileInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.statted[path]++
	f, ok := b.files[path]
	if !ok {
		return cairn.FileInfo{}, cairn.E("mem.Stat", cairn.KindNotExist, path, "")
	}
	return b.info(f), nil
}

func (b *memBackend) List(ctx context.Context, path, after string, limit int) ([]cairn.FileInfo, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lists = append(b.lists, listCall{path, after, limit})
	if _, err := b.dir("mem.List", path); err != nil {
		return nil, false, err
	}
	var names []string
	for p := range b.files {
		if d, name := cairn.Split(p); d == path && p != "/" && name > after {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	more := len(names) > limit
	if more {
		names = names[:limit]
	}
	r := make([]cairn.FileInfo, len(names))
	for i, name := range names {
		r[i] = b.info(b.files[cairn.Join(path, name)])
	}
	return r, more, nil
}

func (b *memBackend) Mkdir(ctx context.Context, path string, perm os.FileMode) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.record(ctx, "Mkdir", path); err != nil {
		return err
	}
	if _, ok := b.files[path]; ok {
		return cairn.E("mem.Mkdir", cairn.KindExist, path, "")
	}
	dir, _ := cairn.Split(path)
	if _, err := b.dir("mem.Mkdir", dir); err != nil {
		return err
	}
	own(ctx, b.add(path, os.ModeDir|perm))
	return nil
}

func (b *memBackend) Delete(ctx context.Context, path string, recursive bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.record(ctx, "Delete", path); err != nil {
		return err
	}
	f, ok := b.files[path]
	switch {
	case !ok:
		return cairn.E("mem.Delete", cairn.KindNotExist, path, "")
	case path == "/":
		return cairn.E("mem.Delete", cairn.KindInvalid, path, "the root")
	case f.fi.IsDir() && !recursive && b.hasChildren(path):
		return cairn.E("mem.Delete", cairn.KindNotEmpty, path, "")
	}
	for p := range b.files {
		if p == path || strings.HasPrefix(p, path+"/") {
			delete(b.files, p)
		}
	}
	return nil
}

func (b *memBackend) Rename(ctx context.Context, src, dst string) error {
	const op = "mem.Rename"
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.record(ctx, "Rename", src); err != nil {
		return err
	}
	sf, ok := b.files[src]
	if !ok {
		return cairn.E(op, cairn.KindNotExist, src, "")
	}
	if src == dst {
		return nil
	}
	if strings.HasPrefix(dst, src+"/") {
		return cairn.E(op, cairn.KindInvalid, dst, "into itself")
	}
	dir, _ := cairn.Split(dst)
	if _, err := b.dir(op, dir); err != nil {
		return err
	}
	if df, ok := b.files[dst]; ok {
		switch {
		case df.fi.IsDir() && !sf.fi.IsDir():
			return cairn.E(op, cairn.KindIsDir, dst, "")
		case !df.fi.IsDir() && sf.fi.IsDir():
			return cairn.E(op, cairn.KindNotDir, dst, "")
		case df.fi.IsDir() && b.hasChildren(dst):
			return cairn.E(op, cairn.KindNotEmpty, dst, "")
		}
	}
	moved := map[string]*memFile{}
	for p, f := range b.files {
		if p == src || strings.HasPrefix(p, src+"/") {
			moved[dst+strings.TrimPrefix(p, src)] = f
			delete(b.files, p)
		}
	}
	for p, f := range moved {
		if p == dst {
			_, f.fi.Name = cairn.Split(dst)
		}
		b.files[p] = f
	}
	return nil
}

func (b *memBackend) Statfs(ctx context.Context) (cairn.FsStats, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.stats
	st.Files = int64(len(b.files))
	return st, nil
}

func (b *memBackend) Create(ctx context.Context, path string, perm os.FileMode) (FileWriter, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.record(ctx, "Create", path); err != nil {
		return nil, err
	}
	if _, ok := b.files[path]; ok {
		return nil, cairn.E("mem.Create", cairn.KindExist, path, "")
	}
	dir, _ := cairn.Split(path)
	if _, err := b.dir("mem.Create", dir); err != nil {
		return nil, err
	}
	f := b.add(path, perm)
	own(ctx, f)
	f.fi.Writing = true
	return &memWriter{b: b, f: f, closeErr: b.closeErr[path], buffered: b.buffered}, nil
}

func (b *memBackend) Append(ctx context.Context, path string) (FileWriter, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.record(ctx, "Append", path); err != nil {
		return nil, err
	}
	f, ok := b.files[path]
	switch {
	case !ok:
		return nil, cairn.E("mem.Append", cairn.KindNotExist, path, "")
	case f.fi.IsDir():
		return nil, cairn.E("mem.Append", cairn.KindIsDir, path, "")
	case f.fi.Writing:
		return nil, cairn.E("mem.Append", cairn.KindBusy, path, "")
	}
	f.fi.Writing = true
	return &memWriter{b: b, f: f, closeErr: b.closeErr[path], buffered: b.buffered}, nil
}

// appendRaw appends to a file behind the mount's back, as another client
// would.
func (b *memBackend) appendRaw(path string, data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.files[path]
	f.data = append(f.data, data...)
}

// noAppend is a backend that cannot reopen files.
type noAppend struct{ Backend }

func (b *memBackend) Open(ctx context.Context, path string) (FileReader, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.record(ctx, "Open", path); err != nil {
		return nil, err
	}
	f, ok := b.files[path]
	switch {
	case !ok:
		return nil, cairn.E("mem.Open", cairn.KindNotExist, path, "")
	case f.fi.IsDir():
		return nil, cairn.E("mem.Open", cairn.KindIsDir, path, "")
	}
	b.readers++
	return &memReader{b: b, data: f.data[:len(f.data):len(f.data)]}, nil
}

func (b *memBackend) SetAttr(ctx context.Context, path string, a cairn.Attr) (cairn.FileInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.record(ctx, "SetAttr", path); err != nil {
		return cairn.FileInfo{}, err
	}
	f, ok := b.files[path]
	if !ok {
		return cairn.FileInfo{}, cairn.E("mem.SetAttr", cairn.KindNotExist, path, "")
	}
	if a.Perm != nil {
		f.fi.Mode = f.fi.Mode.Type() | *a.Perm
	}
	if a.Owner != nil {
		f.fi.Owner = *a.Owner
	}
	if a.Group != nil {
		f.fi.Group = *a.Group
	}
	if a.ModTime != nil {
		f.fi.ModTime = *a.ModTime
	}
	if a.AccessTime != nil {
		f.fi.AccessTime = *a.AccessTime
	}
	if a.TimesNow {
		f.fi.ModTime = time.Now()
		f.fi.AccessTime = f.fi.ModTime
	}
	return b.info(f), nil
}

// create makes a new entry at path, whose parent must be a directory.
func (b *memBackend) create(ctx context.Context, op, path string, mode os.FileMode) (*memFile, error) {
	if _, ok := b.files[path]; ok {
		return nil, cairn.E(op, cairn.KindExist, path, "")
	}
	dir, _ := cairn.Split(path)
	if _, err := b.dir(op, dir); err != nil {
		return nil, err
	}
	f := b.add(path, mode)
	own(ctx, f)
	return f, nil
}

func (b *memBackend) Symlink(ctx context.Context, target, path string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.record(ctx, "Symlink", path); err != nil {
		return err
	}
	f, err := b.create(ctx, "mem.Symlink", path, os.ModeSymlink|0o777)
	if err != nil {
		return err
	}
	f.fi.Symlink = target
	return nil
}

func (b *memBackend) Mknod(ctx context.Context, path string, mode os.FileMode, rdev uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.record(ctx, "Mknod", path); err != nil {
		return err
	}
	f, err := b.create(ctx, "mem.Mknod", path, mode)
	if err == nil && mode&os.ModeDevice != 0 {
		f.fi.Rdev = rdev
	}
	return err
}

// xattrFile returns the entry at path for a call on its attribute name.
func (b *memBackend) xattrFile(ctx context.Context, op, path, name string) (*memFile, error) {
	err := b.record(ctx, op, path)
	b.calls[len(b.calls)-1].name = name
	if err != nil {
		return nil, err
	}
	f, ok := b.files[path]
	if !ok {
		return nil, cairn.E("mem."+op, cairn.KindNotExist, path, "")
	}
	return f, nil
}

func (b *memBackend) SetXattr(ctx context.Context, path, name string, value []byte, flags cairn.XattrFlags) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, err := b.xattrFile(ctx, "SetXattr", path, name)
	b.calls[len(b.calls)-1].flags = flags
	if err != nil {
		return err
	}
	_, exists := f.xattrs[name]
	switch {
	case exists && flags&cairn.XattrCreate != 0:
		return cairn.E("mem.SetXattr", cairn.KindExist, path, name)
	case !exists && flags&cairn.XattrReplace != 0:
		return cairn.E("mem.SetXattr", cairn.KindNotExist, path, name)
	}
	if f.xattrs == nil {
		f.xattrs = map[string][]byte{}
	}
	f.xattrs[name] = append([]byte(nil), value...)
	return nil
}

func (b *memBackend) GetXattr(ctx context.Context, path, name string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, err := b.xattrFile(ctx, "GetXattr", path, name)
	if err != nil {
		return nil, err
	}
	v, ok := f.xattrs[name]
	if !ok {
		return nil, cairn.E("mem.GetXattr", cairn.KindNotExist, path, name)
	}
	return append([]byte(nil), v...), nil
}

func (b *memBackend) ListXattrs(ctx context.Context, path string) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, err := b.xattrFile(ctx, "ListXattrs", path, "")
	if err != nil {
		return nil, err
	}
	var names []string
	for k := range f.xattrs {
		names = append(names, k)
	}
	sort.Strings(names)
	return names, nil
}

func (b *memBackend) RemoveXattr(ctx context.Context, path, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, err := b.xattrFile(ctx, "RemoveXattr", path, name)
	if err != nil {
		return err
	}
	if _, ok := f.xattrs[name]; !ok {
		return cairn.E("mem.RemoveXattr", cairn.KindNotExist, path, name)
	}
	delete(f.xattrs, name)
	return nil
}

type memWriter struct {
	b        *memBackend
	f        *memFile
	closeErr error
	closed   bool
	buffered bool
	pending  []byte // accepted, not yet visible (buffered)
}

func (w *memWriter) Write(p []byte) (int, error) {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	if w.closed {
		return 0, cairn.E("mem.Write", cairn.KindInvalid, w.f.fi.Name, "closed")
	}
	if w.buffered {
		w.pending = append(w.pending, p...)
	} else {
		w.f.data = append(w.f.data, p...)
	}
	return len(p), nil
}

func (w *memWriter) Size() int64 {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	return int64(len(w.f.data) + len(w.pending))
}

// Flush makes what the writer accepted visible to readers.
func (w *memWriter) Flush() error {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	w.b.flushes++
	w.f.data = append(w.f.data, w.pending...)
	w.pending = nil
	return nil
}

func (w *memWriter) Close() error {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	if !w.closed {
		w.f.data = append(w.f.data, w.pending...)
		w.pending = nil
		w.closed = true
		w.f.fi.Writing = false
		w.f.fi.ModTime = time.Now() // as a namespace completing a file does
	}
	return w.closeErr
}

// memReader reads the bytes the file had when it was opened.
type memReader struct {
	b      *memBackend
	data   []byte
	closed bool
}

func (r *memReader) ReadAt(p []byte, off int64) (int, error) {
	r.b.mu.Lock()
	r.b.reads++
	r.b.mu.Unlock()
	if off >= int64(len(r.data)) {
		return 0, io.EOF
	}
	n := copy(p, r.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (r *memReader) Size() int64 { return int64(len(r.data)) }
func (r *memReader) Close() error {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	if !r.closed {
		r.closed = true
		r.b.readers--
	}
	return nil
}
