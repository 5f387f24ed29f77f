package mount

import (
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// timedFS is go-fuse's node file system with every FUSE operation timed
// and counted (metrics.go): each method calls the one it wraps with the
// same arguments and returns what it returned, so the mount behaves the
// same with metrics on or off. Reads and writes also count their bytes,
// and a failed operation its errno.
type timedFS struct {
	fuse.RawFileSystem
	m *metrics
}

func (t timedFS) Lookup(cancel <-chan struct{}, header *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Lookup(cancel, header, name, out)
	t.m.op("lookup", start, st)
	return st
}

func (t timedFS) GetAttr(cancel <-chan struct{}, input *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.GetAttr(cancel, input, out)
	t.m.op("getattr", start, st)
	return st
}

func (t timedFS) SetAttr(cancel <-chan struct{}, input *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.SetAttr(cancel, input, out)
	t.m.op("setattr", start, st)
	return st
}

func (t timedFS) Mknod(cancel <-chan struct{}, input *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Mknod(cancel, input, name, out)
	t.m.op("mknod", start, st)
	return st
}

func (t timedFS) Mkdir(cancel <-chan struct{}, input *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Mkdir(cancel, input, name, out)
	t.m.op("mkdir", start, st)
	return st
}

func (t timedFS) Unlink(cancel <-chan struct{}, header *fuse.InHeader, name string) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Unlink(cancel, header, name)
	t.m.op("unlink", start, st)
	return st
}

func (t timedFS) Rmdir(cancel <-chan struct{}, header *fuse.InHeader, name string) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Rmdir(cancel, header, name)
	t.m.op("rmdir", start, st)
	return st
}

func (t timedFS) Rename(cancel <-chan struct{}, input *fuse.RenameIn, oldName string, newName string) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Rename(cancel, input, oldName, newName)
	t.m.op("rename", start, st)
	return st
}

func (t timedFS) Link(cancel <-chan struct{}, input *fuse.LinkIn, filename string, out *fuse.EntryOut) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Link(cancel, input, filename, out)
	t.m.op("link", start, st)
	return st
}

func (t timedFS) Symlink(cancel <-chan struct{}, header *fuse.InHeader, pointedTo string, linkName string, out *fuse.EntryOut) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Symlink(cancel, header, pointedTo, linkName, out)
	t.m.op("symlink", start, st)
	return st
}

func (t timedFS) Access(cancel <-chan struct{}, input *fuse.AccessIn) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Access(cancel, input)
	t.m.op("access", start, st)
	return st
}

func (t timedFS) SetXAttr(cancel <-chan struct{}, input *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.SetXAttr(cancel, input, attr, data)
	t.m.op("setxattr", start, st)
	return st
}

func (t timedFS) RemoveXAttr(cancel <-chan struct{}, header *fuse.InHeader, attr string) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.RemoveXAttr(cancel, header, attr)
	t.m.op("removexattr", start, st)
	return st
}

func (t timedFS) Create(cancel <-chan struct{}, input *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Create(cancel, input, name, out)
	t.m.op("create", start, st)
	return st
}

func (t timedFS) Tmpfile(cancel <-chan struct{}, input *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Tmpfile(cancel, input, out)
	t.m.op("tmpfile", start, st)
	return st
}

func (t timedFS) Open(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Open(cancel, input, out)
	t.m.op("open", start, st)
	return st
}

func (t timedFS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Lseek(cancel, in, out)
	t.m.op("lseek", start, st)
	return st
}

func (t timedFS) GetLk(cancel <-chan struct{}, input *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.GetLk(cancel, input, out)
	t.m.op("getlk", start, st)
	return st
}

func (t timedFS) SetLk(cancel <-chan struct{}, input *fuse.LkIn) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.SetLk(cancel, input)
	t.m.op("setlk", start, st)
	return st
}

func (t timedFS) SetLkw(cancel <-chan struct{}, input *fuse.LkIn) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.SetLkw(cancel, input)
	t.m.op("setlkw", start, st)
	return st
}

func (t timedFS) Ioctl(cancel <-chan struct{}, input *fuse.IoctlIn, inbuf []byte, output *fuse.IoctlOut, outbuf []byte) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Ioctl(cancel, input, inbuf, output, outbuf)
	t.m.op("ioctl", start, st)
	return st
}

func (t timedFS) Flush(cancel <-chan struct{}, input *fuse.FlushIn) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Flush(cancel, input)
	t.m.op("flush", start, st)
	return st
}

func (t timedFS) Fsync(cancel <-chan struct{}, input *fuse.FsyncIn) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Fsync(cancel, input)
	t.m.op("fsync", start, st)
	return st
}

func (t timedFS) Fallocate(cancel <-chan struct{}, input *fuse.FallocateIn) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Fallocate(cancel, input)
	t.m.op("fallocate", start, st)
	return st
}

func (t timedFS) OpenDir(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.OpenDir(cancel, input, out)
	t.m.op("opendir", start, st)
	return st
}

func (t timedFS) ReadDir(cancel <-chan struct{}, input *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.ReadDir(cancel, input, out)
	t.m.op("readdir", start, st)
	return st
}

func (t timedFS) ReadDirPlus(cancel <-chan struct{}, input *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.ReadDirPlus(cancel, input, out)
	t.m.op("readdirplus", start, st)
	return st
}

func (t timedFS) FsyncDir(cancel <-chan struct{}, input *fuse.FsyncIn) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.FsyncDir(cancel, input)
	t.m.op("fsyncdir", start, st)
	return st
}

func (t timedFS) StatFs(cancel <-chan struct{}, input *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.StatFs(cancel, input, out)
	t.m.op("statfs", start, st)
	return st
}

func (t timedFS) Statx(cancel <-chan struct{}, input *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	start := time.Now()
	st := t.RawFileSystem.Statx(cancel, input, out)
	t.m.op("statx", start, st)
	return st
}

func (t timedFS) Readlink(cancel <-chan struct{}, header *fuse.InHeader) ([]byte, fuse.Status) {
	start := time.Now()
	b, st := t.RawFileSystem.Readlink(cancel, header)
	t.m.op("readlink", start, st)
	return b, st
}

func (t timedFS) GetXAttr(cancel <-chan struct{}, header *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	start := time.Now()
	n, st := t.RawFileSystem.GetXAttr(cancel, header, attr, dest)
	t.m.op("getxattr", start, st)
	return n, st
}

func (t timedFS) ListXAttr(cancel <-chan struct{}, header *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	start := time.Now()
	n, st := t.RawFileSystem.ListXAttr(cancel, header, dest)
	t.m.op("listxattr", start, st)
	return n, st
}

func (t timedFS) Read(cancel <-chan struct{}, input *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	start := time.Now()
	r, st := t.RawFileSystem.Read(cancel, input, buf)
	t.m.op("read", start, st)
	if st == fuse.OK && r != nil {
		t.m.readBytes.Add(float64(r.Size()))
	}
	return r, st
}

func (t timedFS) Write(cancel <-chan struct{}, input *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	start := time.Now()
	n, st := t.RawFileSystem.Write(cancel, input, data)
	t.m.op("write", start, st)
	if st == fuse.OK {
		t.m.writtenBytes.Add(float64(n))
	}
	return n, st
}

func (t timedFS) Writev(cancel <-chan struct{}, input *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	start := time.Now()
	n, st := t.RawFileSystem.Writev(cancel, input, data)
	t.m.op("write", start, st)
	if st == fuse.OK {
		t.m.writtenBytes.Add(float64(n))
	}
	return n, st
}

func (t timedFS) CopyFileRange(cancel <-chan struct{}, input *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	start := time.Now()
	n, st := t.RawFileSystem.CopyFileRange(cancel, input)
	t.m.op("copy_file_range", start, st)
	return n, st
}

func (t timedFS) Release(cancel <-chan struct{}, input *fuse.ReleaseIn) {
	start := time.Now()
	t.RawFileSystem.Release(cancel, input)
	t.m.op("release", start, fuse.OK)
}

func (t timedFS) ReleaseDir(input *fuse.ReleaseIn) {
	start := time.Now()
	t.RawFileSystem.ReleaseDir(input)
	t.m.op("releasedir", start, fuse.OK)
}
