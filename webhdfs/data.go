package webhdfs

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"go.uber.org/zap"

	"cairn"
)

// The operations whose bytes a DataNode or a Gateway streams: OPEN reads
// through the client library's Reader (every chunk's checksum verified,
// local replicas first, failing over to the next replica), CREATE and
// APPEND write the request's body (plain or chunked) through a pipeline
// and close the file at its end.

// open streams [offset, offset+length) of the file.
func (h *Handler) open(w *countingWriter, s *Session, q *Request) error {
	off, err := q.Int64("offset", 0, 0, 1<<62)
	if err != nil {
		return err
	}
	length, err := q.Int64("length", -1, 0, 1<<62)
	if err != nil {
		return err
	}
	if _, err := q.Int64("buffersize", 0, 1, 1<<31); err != nil {
		return err
	}
	rd, err := s.Client.Open(s.Ctx, q.Path)
	if err != nil {
		return err
	}
	defer rd.Close()
	size := rd.Size()
	if off > size {
		return excIO("Offset=%d out of the range [0, %d]: cannot seek after EOF", off, size)
	}
	n := size - off
	if length >= 0 && length < n {
		n = length
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusOK)
	out := h.out(w)
	defer out.done()
	if _, err := io.Copy(out, io.NewSectionReader(rd, off, n)); err != nil {
		// The status is sent: the short body (Content-Length) tells the
		// client; the log says why.
		if h.Log != nil {
			h.Log.Warn("webhdfs read failed", zap.String("path", q.Path), zap.Int64("offset", off), zap.Error(err))
		}
	}
	return nil
}

// create writes the body into a new file (or, with overwrite=true, a new
// version of the file there): 201 Created with the file's hdfs:// URI.
func (h *Handler) create(w *countingWriter, r *http.Request, s *Session, q *Request) error {
	overwrite, err := q.Bool("overwrite", false)
	if err != nil {
		return err
	}
	perm, err := q.Perm(0o644)
	if err != nil {
		return err
	}
	repl, err := q.Int64("replication", 0, 1, 512)
	if err != nil {
		return err
	}
	bs, err := q.Int64("blocksize", 0, 1<<20, 1<<40)
	if err != nil {
		return err
	}
	if _, err := q.Int64("buffersize", 0, 1, 1<<31); err != nil {
		return err
	}
	wr, err := s.Client.CreateWith(s.Ctx, q.Path, cairn.CreateOptions{Perm: perm, Replication: int(repl), BlockSize: bs, Overwrite: overwrite})
	if err != nil {
		return err
	}
	if err := h.fill(wr, h.body(w, r), q.Path); err != nil {
		return err
	}
	u := url.URL{Scheme: "hdfs", Host: h.NameNodeID, Path: q.Path}
	w.Header().Set("Location", u.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// append writes the body at the end of the file: 200.
func (h *Handler) append(w *countingWriter, r *http.Request, s *Session, q *Request) error {
	if _, err := q.Int64("buffersize", 0, 1, 1<<31); err != nil {
		return err
	}
	wr, err := s.Client.Append(s.Ctx, q.Path)
	if err != nil {
		return err
	}
	if err := h.fill(wr, h.body(w, r), q.Path); err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
	return nil
}

// fill copies body into wr and closes it; the bytes a failed body
// delivered stay in the file (closed), as HDFS keeps what its stream got.
func (h *Handler) fill(wr io.WriteCloser, body io.Reader, path string) error {
	var werr error
	if body != nil {
		_, werr = io.Copy(wr, body)
	}
	cerr := wr.Close()
	if werr != nil {
		var re *RemoteError
		if errors.As(werr, &re) || cairn.KindOf(werr) != cairn.KindOther {
			return werr
		}
		return excIO("writing %s: %v", path, werr)
	}
	return cerr
}
