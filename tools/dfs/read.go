package dfs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"strconv"
	"time"

	"cairn"
	"cairn/client"
)

// copyBuf is the size of the reads that stream a file.
const copyBuf = 1 << 20

// openFile opens a file for reading: a directory is "Is a directory".
func (s *shell) openFile(it item) (*client.Reader, error) {
	if it.fi.IsDir() {
		return nil, newPathError(it.disp, kindText[cairn.KindIsDir])
	}
	r, err := s.cl.Open(s.ctx, it.abs)
	if err != nil {
		return nil, perr(it.disp, err)
	}
	return r, nil
}

// eachFile runs fn on every file the arguments name, reporting each
// failure and going on (Hadoop's processArguments).
func (s *shell) eachFile(args []string, fn func(it item) error) {
	for _, a := range args {
		items, err := s.expand(a)
		if err != nil {
			s.fail(err)
			continue
		}
		for _, it := range items {
			if err := fn(it); err != nil {
				s.fail(err)
			}
		}
	}
}

func (s *shell) cat(args []string) error {
	o, err := parse(args, 1, -1, words("ignoreCrc"))
	if err != nil {
		return err
	}
	s.eachFile(o.args, func(it item) error {
		r, err := s.openFile(it)
		if err != nil {
			return err
		}
		defer r.Close()
		if _, err := io.CopyBuffer(s.out, io.NewSectionReader(r, 0, r.Size()), make([]byte, copyBuf)); err != nil {
			return perr(it.disp, err)
		}
		return nil
	})
	return nil
}

// text is -text: the bytes of a file, gunzipped when they are gzip
// (Hadoop's Display.Text also knows SequenceFiles and codecs by suffix).
func (s *shell) text(args []string) error {
	o, err := parse(args, 1, -1, words("ignoreCrc"))
	if err != nil {
		return err
	}
	s.eachFile(o.args, func(it item) error {
		r, err := s.openFile(it)
		if err != nil {
			return err
		}
		defer r.Close()
		br := bufio.NewReaderSize(io.NewSectionReader(r, 0, r.Size()), copyBuf)
		var src io.Reader = br
		if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
			z, err := gzip.NewReader(br)
			if err != nil {
				return perr(it.disp, err)
			}
			defer z.Close()
			src = z
		}
		if _, err := io.Copy(s.out, src); err != nil {
			return perr(it.disp, err)
		}
		return nil
	})
	return nil
}

// head and tail show 1 KiB, as Hadoop's Head and Tail.
const headTailBytes = 1024

func (s *shell) head(args []string) error {
	o, err := parse(args, 1, 1, nil)
	if err != nil {
		return err
	}
	s.eachFile(o.args, func(it item) error {
		r, err := s.openFile(it)
		if err != nil {
			return err
		}
		defer r.Close()
		if _, err := io.Copy(s.out, io.NewSectionReader(r, 0, min(r.Size(), headTailBytes))); err != nil {
			return perr(it.disp, err)
		}
		return nil
	})
	return nil
}

// tail is -tail [-f] [-s MS]: the last KiB, and with -f what is appended
// after, polled every -s milliseconds (Hadoop's default 5000; cairn's
// 1000) until interrupted.
func (s *shell) tail(args []string) error {
	o, err := parse(args, 1, 1, words("f"), "s")
	if err != nil {
		return err
	}
	every := time.Second
	if v, ok := o.vals["s"]; ok {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return usageError{"Invalid sleep interval: " + v}
		}
		every = time.Duration(ms) * time.Millisecond
	}
	s.eachFile(o.args, func(it item) error {
		if it.fi.IsDir() {
			return newPathError(it.disp, kindText[cairn.KindIsDir])
		}
		off := max(it.fi.Size-headTailBytes, 0)
		for {
			r, err := s.cl.Open(s.ctx, it.abs)
			if err != nil {
				return perr(it.disp, err)
			}
			n, err := io.Copy(s.out, io.NewSectionReader(r, off, r.Size()-off))
			r.Close()
			off += n
			if err != nil {
				return perr(it.disp, err)
			}
			if !o.has("f") {
				return nil
			}
			select {
			case <-s.ctx.Done():
				return nil
			case <-time.After(every):
			}
		}
	})
	return nil
}
