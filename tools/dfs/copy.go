package dfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"cairn"
	"cairn/client"
)

// copyingSuffix names the temporary file a copy writes before renaming
// it into place, as Hadoop's CommandWithDestination.
const copyingSuffix = "._COPYING_"

// copyOpts are the flags of put, get and cp.
type copyOpts struct {
	force, preserve, direct bool
}

// dest is a copy's destination as typed, resolved.
type dest struct {
	disp, abs string
	exists    bool
	fi        cairn.FileInfo
}

// remoteDest resolves a namespace destination: with several sources (or
// a directory there) it must be a directory, as CommandWithDestination
// requires.
func (s *shell) remoteDest(arg string, nsrc int) (dest, error) {
	d := dest{disp: arg, abs: s.abs(arg)}
	fi, err := s.ns().Stat(s.ctx, d.abs)
	switch {
	case err == nil:
		d.exists, d.fi = true, fi
	case cairn.KindOf(err) != cairn.KindNotExist:
		return d, perr(arg, err)
	}
	if nsrc > 1 && !d.exists {
		return d, newPathError(arg, kindText[cairn.KindNotExist])
	}
	if nsrc > 1 && !d.fi.IsDir() {
		return d, newPathError(arg, kindText[cairn.KindNotDir])
	}
	if !d.exists {
		pfi, err := s.ns().Stat(s.ctx, path.Dir(d.abs))
		if err != nil || !pfi.IsDir() {
			return d, newPathError(arg, kindText[cairn.KindNotExist])
		}
	}
	return d, nil
}

// target is where the source named base lands under d.
func (d dest) target(base string) (disp, abs string) {
	if d.exists && d.fi.IsDir() {
		return child(d.disp, base), cairn.Join(d.abs, base)
	}
	return d.disp, d.abs
}

func copyFlags(args []string) ([]string, copyOpts) {
	// -p[topax] keeps every attribute cairn has (times, owner, mode).
	var out []string
	for i, a := range args {
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			out = append(out, args[i:]...)
			break
		}
		if strings.HasPrefix(a, "-p") && strings.Trim(a[2:], "topax") == "" {
			a = "-p"
		}
		out = append(out, a)
	}
	return out, copyOpts{}
}

func (s *shell) put(args []string) error {
	args, co := copyFlags(args)
	o, err := parse(args, 1, -1, words("f p d l"))
	if err != nil {
		return err
	}
	co.force, co.preserve, co.direct = o.has("f"), o.has("p"), o.has("d")
	srcs, dst := splitDest(o.args)
	if _, err := s.client(); err != nil {
		return err
	}
	d, err := s.remoteDest(dst, len(srcs))
	if err != nil {
		return err
	}
	for _, src := range srcs {
		if err := s.putOne(src, d, co); err != nil {
			s.fail(err)
		}
	}
	return nil
}

// splitDest splits "SRC... DST" (a lone SRC goes to ".").
func splitDest(args []string) ([]string, string) {
	if len(args) == 1 {
		return args, "."
	}
	return args[:len(args)-1], args[len(args)-1]
}

func (s *shell) putOne(src string, d dest, co copyOpts) error {
	if src == "-" {
		// Hadoop's Put: stdin goes to the target path of a source named
		// "-", so onto a directory it is DIR/-.
		disp, abs := d.target("-")
		return s.putStream(&ctxReader{ctx: s.ctx, r: s.stdin}, -1, "-", disp, abs, co, nil)
	}
	st, err := os.Stat(src)
	if err != nil {
		return newPathError(src, kindText[cairn.KindNotExist])
	}
	disp, abs := d.target(filepath.Base(src))
	return s.putLocal(src, st, disp, abs, co)
}

func (s *shell) putLocal(src string, st fs.FileInfo, disp, abs string, co copyOpts) error {
	if st.IsDir() {
		if err := s.ns().Mkdir(s.ctx, abs, st.Mode().Perm()); err != nil && !(cairn.KindOf(err) == cairn.KindExist && co.force) {
			return perr(disp, err)
		}
		es, err := os.ReadDir(src)
		if err != nil {
			return newPathError(src, err.Error())
		}
		for _, e := range es {
			est, err := os.Stat(filepath.Join(src, e.Name()))
			if err != nil {
				s.fail(newPathError(filepath.Join(src, e.Name()), kindText[cairn.KindNotExist]))
				continue
			}
			if err := s.putLocal(filepath.Join(src, e.Name()), est, child(disp, e.Name()), cairn.Join(abs, e.Name()), co); err != nil {
				s.fail(err)
			}
		}
		return s.preserveRemote(abs, disp, st, co)
	}
	f, err := os.Open(src)
	if err != nil {
		return newPathError(src, err.Error())
	}
	defer f.Close()
	return s.putStream(f, st.Size(), filepath.Base(src), disp, abs, co, st)
}

// putStream writes r to the file abs: through abs._COPYING_ renamed into
// place (unless -d), refusing an existing file without -f.
func (s *shell) putStream(r io.Reader, size int64, name, disp, abs string, co copyOpts, st fs.FileInfo) error {
	if fi, err := s.ns().Stat(s.ctx, abs); err == nil {
		if fi.IsDir() {
			return newPathError(disp, kindText[cairn.KindIsDir])
		}
		if !co.force {
			return newPathError(disp, kindText[cairn.KindExist])
		}
	}
	tmp := abs + copyingSuffix
	if co.direct {
		tmp = abs
	}
	w, err := s.cl.Replace(s.ctx, tmp, 0o644)
	if err != nil {
		return perr(disp, err)
	}
	p := s.newProgress(name, size)
	_, err = io.CopyBuffer(w, p.reader(r), make([]byte, copyBuf))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if tmp != abs {
			s.removeTemp(tmp)
		}
		return perr(disp, err)
	}
	p.finish()
	if tmp != abs {
		if err := s.ns().Rename(s.ctx, tmp, abs); err != nil {
			s.removeTemp(tmp)
			return perr(disp, err)
		}
	}
	return s.preserveRemote(abs, disp, st, co)
}

// ctxReader reads r until ctx ends: a read of a terminal or pipe (put's
// stdin) does not see the interrupt otherwise. A read cut short leaves
// its goroutine blocked on r; the command is ending.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	buf []byte
}

type readResult struct {
	n   int
	err error
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	if len(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	buf := c.buf[:len(p)]
	done := make(chan readResult, 1)
	go func() {
		n, err := c.r.Read(buf)
		done <- readResult{n, err}
	}()
	select {
	case res := <-done:
		copy(p, buf[:res.n])
		return res.n, res.err
	case <-c.ctx.Done():
		c.buf = nil // the goroutine still owns buf
		return 0, c.ctx.Err()
	}
}

// removeTemp deletes a copy's temporary file, also when the copy ended
// because the command was interrupted (s.ctx cancelled).
func (s *shell) removeTemp(tmp string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), cleanupTimeout)
	defer cancel()
	_ = s.ns().Delete(ctx, tmp, false)
}

// cleanupTimeout bounds the removal of a temporary file.
const cleanupTimeout = 10 * time.Second

// preserveRemote is -p: the local file's mode and times.
func (s *shell) preserveRemote(abs, disp string, st fs.FileInfo, co copyOpts) error {
	if !co.preserve || st == nil {
		return nil
	}
	perm, mt := st.Mode().Perm(), st.ModTime()
	if _, err := s.ns().SetAttr(s.ctx, abs, cairn.Attr{Perm: &perm, ModTime: &mt, AccessTime: &mt}); err != nil {
		return perr(disp, err)
	}
	return nil
}

func (s *shell) moveFromLocal(args []string) error {
	before := s.errs
	if err := s.put(args); err != nil || s.errs > before {
		return err
	}
	o, _ := parse(args, 1, -1, words("f p d l"))
	srcs, _ := splitDest(o.args)
	for _, src := range srcs {
		if src != "-" {
			if err := os.RemoveAll(src); err != nil {
				s.fail(newPathError(src, err.Error()))
			}
		}
	}
	return nil
}

func (s *shell) appendToFile(args []string) error {
	o, err := parse(args, 2, -1, nil)
	if err != nil {
		return err
	}
	srcs, dst := o.args[:len(o.args)-1], o.args[len(o.args)-1]
	if _, err := s.client(); err != nil {
		return err
	}
	abs := s.abs(dst)
	var w *client.Writer
	fi, err := s.ns().Stat(s.ctx, abs)
	switch {
	case err == nil && fi.IsDir():
		return newPathError(dst, kindText[cairn.KindIsDir])
	case err == nil:
		w, err = s.cl.Append(s.ctx, abs)
	case cairn.KindOf(err) == cairn.KindNotExist:
		w, err = s.cl.Create(s.ctx, abs, 0o644)
	}
	if err != nil {
		return perr(dst, err)
	}
	for _, src := range srcs {
		var r io.Reader = &ctxReader{ctx: s.ctx, r: s.stdin}
		if src != "-" {
			f, err := os.Open(src)
			if err != nil {
				_ = w.Close()
				return newPathError(src, kindText[cairn.KindNotExist])
			}
			defer f.Close()
			r = f
		}
		if _, err := io.CopyBuffer(w, r, make([]byte, copyBuf)); err != nil {
			_ = w.Close()
			return perr(dst, err)
		}
	}
	if err := w.Close(); err != nil {
		return perr(dst, err)
	}
	return nil
}

func (s *shell) get(args []string) error {
	args, co := copyFlags(args)
	o, err := parse(args, 1, -1, words("f p ignoreCrc crc"))
	if err != nil {
		return err
	}
	co.force, co.preserve = o.has("f"), o.has("p")
	srcs, dst := splitDest(o.args)
	var items []item
	for _, a := range srcs {
		its, err := s.expand(a)
		if err != nil {
			s.fail(err)
			continue
		}
		items = append(items, its...)
	}
	if len(items) == 0 {
		return nil
	}
	st, err := os.Stat(dst)
	isDir := err == nil && st.IsDir()
	if len(items) > 1 && !isDir {
		if err != nil {
			return newPathError(dst, kindText[cairn.KindNotExist])
		}
		return newPathError(dst, kindText[cairn.KindNotDir])
	}
	for _, it := range items {
		target := dst
		if isDir {
			target = filepath.Join(dst, path.Base(it.abs))
		}
		if err := s.getOne(it, target, co); err != nil {
			s.fail(err)
		}
	}
	return nil
}

func (s *shell) getOne(it item, target string, co copyOpts) error {
	if it.fi.IsDir() {
		if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return newPathError(target, err.Error())
		}
		es, err := s.cl.ReadDir(s.ctx, it.abs)
		if err != nil {
			return perr(it.disp, err)
		}
		for _, e := range es {
			c := item{disp: child(it.disp, e.Name), abs: cairn.Join(it.abs, e.Name), fi: e}
			if err := s.getOne(c, filepath.Join(target, e.Name), co); err != nil {
				s.fail(err)
			}
		}
		return s.preserveLocal(target, it.fi, co)
	}
	if _, err := os.Lstat(target); err == nil && !co.force {
		return newPathError(target, kindText[cairn.KindExist])
	}
	r, err := s.openFile(it)
	if err != nil {
		return err
	}
	defer r.Close()
	tmp := target + copyingSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return newPathError(target, err.Error())
	}
	p := s.newProgress(path.Base(it.abs), r.Size())
	_, err = io.CopyBuffer(f, p.reader(io.NewSectionReader(r, 0, r.Size())), make([]byte, copyBuf))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, target)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return perr(it.disp, err)
	}
	p.finish()
	return s.preserveLocal(target, it.fi, co)
}

func (s *shell) preserveLocal(target string, fi cairn.FileInfo, co copyOpts) error {
	if !co.preserve {
		return nil
	}
	if err := os.Chmod(target, fi.Mode.Perm()); err != nil {
		return newPathError(target, err.Error())
	}
	if err := os.Chtimes(target, fi.AccessTime, fi.ModTime); err != nil {
		return newPathError(target, err.Error())
	}
	return nil
}

func (s *shell) getmerge(args []string) error {
	o, err := parse(args, 2, 2, words("nl skip-empty-file"))
	if err != nil {
		return err
	}
	items, err := s.expand(o.args[0])
	if err != nil {
		return err
	}
	var files []item
	for _, it := range items {
		if !it.fi.IsDir() {
			files = append(files, it)
			continue
		}
		es, err := s.cl.ReadDir(s.ctx, it.abs)
		if err != nil {
			s.fail(perr(it.disp, err))
			continue
		}
		for _, e := range es {
			if e.Mode.IsRegular() {
				files = append(files, item{disp: child(it.disp, e.Name), abs: cairn.Join(it.abs, e.Name), fi: e})
			}
		}
	}
	sort.SliceStable(files, func(i, j int) bool { return files[i].abs < files[j].abs })
	dst := o.args[1]
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return newPathError(dst, err.Error())
	}
	for _, it := range files {
		if o.has("skip-empty-file") && it.fi.Size == 0 {
			continue
		}
		r, err := s.openFile(it)
		if err != nil {
			s.fail(err)
			continue
		}
		_, err = io.CopyBuffer(f, io.NewSectionReader(r, 0, r.Size()), make([]byte, copyBuf))
		r.Close()
		if err != nil {
			s.fail(perr(it.disp, err))
			continue
		}
		if o.has("nl") {
			_, _ = f.Write([]byte("\n"))
		}
	}
	if err := f.Close(); err != nil {
		return newPathError(dst, err.Error())
	}
	return nil
}

func (s *shell) cp(args []string) error {
	args, co := copyFlags(args)
	o, err := parse(args, 2, -1, words("f p d"))
	if err != nil {
		return err
	}
	co.force, co.preserve, co.direct = o.has("f"), o.has("p"), o.has("d")
	srcs, dst := splitDest(o.args)
	var items []item
	for _, a := range srcs {
		its, err := s.expand(a)
		if err != nil {
			s.fail(err)
			continue
		}
		items = append(items, its...)
	}
	if len(items) == 0 {
		return nil
	}
	d, err := s.remoteDest(dst, len(items))
	if err != nil {
		return err
	}
	for _, it := range items {
		disp, abs := d.target(path.Base(it.abs))
		if abs == it.abs || strings.HasPrefix(abs, it.abs+"/") {
			s.fail(fmt.Errorf("`%s' to `%s': is a subdirectory of itself", it.disp, disp))
			continue
		}
		if err := s.cpOne(it, disp, abs, co); err != nil {
			s.fail(err)
		}
	}
	return nil
}

func (s *shell) cpOne(it item, disp, abs string, co copyOpts) error {
	if it.fi.IsDir() {
		if err := s.ns().Mkdir(s.ctx, abs, it.fi.Mode.Perm()); err != nil && !(cairn.KindOf(err) == cairn.KindExist && co.force) {
			return perr(disp, err)
		}
		es, err := s.cl.ReadDir(s.ctx, it.abs)
		if err != nil {
			return perr(it.disp, err)
		}
		for _, e := range es {
			c := item{disp: child(it.disp, e.Name), abs: cairn.Join(it.abs, e.Name), fi: e}
			if err := s.cpOne(c, child(disp, e.Name), cairn.Join(abs, e.Name), co); err != nil {
				s.fail(err)
			}
		}
		return s.preserveAttrs(abs, disp, it.fi, co)
	}
	r, err := s.openFile(it)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := s.putStream(io.NewSectionReader(r, 0, r.Size()), r.Size(), path.Base(it.abs), disp, abs, co, nil); err != nil {
		return err
	}
	return s.preserveAttrs(abs, disp, it.fi, co)
}

// preserveAttrs is cp -p: mode, times, owner and group of the source.
func (s *shell) preserveAttrs(abs, disp string, fi cairn.FileInfo, co copyOpts) error {
	if !co.preserve {
		return nil
	}
	perm := fi.Mode.Perm()
	a := cairn.Attr{Perm: &perm, ModTime: &fi.ModTime, AccessTime: &fi.AccessTime}
	if fi.Owner != s.user {
		a.Owner = &fi.Owner
	}
	a.Group = &fi.Group
	if _, err := s.ns().SetAttr(s.ctx, abs, a); err != nil {
		return perr(disp, err)
	}
	return nil
}

func (s *shell) mv(args []string) error {
	o, err := parse(args, 2, -1, nil)
	if err != nil {
		return err
	}
	srcs, dst := o.args[:len(o.args)-1], o.args[len(o.args)-1]
	var items []item
	for _, a := range srcs {
		its, err := s.expand(a)
		if err != nil {
			s.fail(err)
			continue
		}
		items = append(items, its...)
	}
	if len(items) == 0 {
		return nil
	}
	d, err := s.remoteDest(dst, len(items))
	if err != nil {
		return err
	}
	for _, it := range items {
		disp, abs := d.target(path.Base(it.abs))
		if abs == it.abs || strings.HasPrefix(abs, it.abs+"/") {
			s.fail(fmt.Errorf("`%s' to `%s': is a subdirectory of itself", it.disp, disp))
			continue
		}
		if _, err := s.ns().Stat(s.ctx, abs); err == nil {
			s.fail(newPathError(disp, kindText[cairn.KindExist]))
			continue
		}
		if err := s.ns().Rename(s.ctx, it.abs, abs); err != nil {
			s.fail(perr(it.disp, err))
		}
	}
	return nil
}
