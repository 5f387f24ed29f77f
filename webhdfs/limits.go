package webhdfs

import (
	"io"
	"net/http"
	"strings"
	"time"
)

// The limits of the HTTP servers the API is served on, and of a request
// body's flow: a slow or stalled client must not hold a connection, a
// file's lease or a pipeline forever.

const (
	// DefaultBodyTimeout bounds each read of a CREATE or APPEND body and
	// each write of OPEN's bytes, as a blockd's --idle-timeout bounds
	// each packet of a write.
	DefaultBodyTimeout = 60 * time.Second
	// MaxHeaderBytes bounds a request's header (Hadoop's
	// hadoop.http.max.request.header.size is 64 KiB): a larger one is
	// answered 431.
	MaxHeaderBytes = 64 << 10
	// ReadHeaderTimeout bounds the wait for a request's header.
	ReadHeaderTimeout = 10 * time.Second
	// IdleTimeout bounds a kept-alive connection's wait for its next
	// request.
	IdleTimeout = 2 * time.Minute
)

// Limit sets the header, idle and header-time limits of a server the API
// is served on (the body's are the Handler's, chunk by chunk, so a large
// upload is never cut off while it flows).
func Limit(s *http.Server) *http.Server {
	s.ReadHeaderTimeout, s.IdleTimeout, s.MaxHeaderBytes = ReadHeaderTimeout, IdleTimeout, MaxHeaderBytes
	return s
}

// Route serves the API's paths with api and everything else with rest.
// The API is routed before any http.ServeMux sees the request, because a
// ServeMux answers a path with "..", "." or "//" with a redirect to its
// cleaned form (a client following it would act on another path than it
// named): WebHDFS refuses such a path, 400 InvalidPathException.
func Route(api, rest http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == Prefix || strings.HasPrefix(r.URL.Path, Prefix+"/") {
			api.ServeHTTP(w, r)
			return
		}
		rest.ServeHTTP(w, r)
	})
}

// body is r's body, each read of which must return within the handler's
// BodyTimeout: the connection's read deadline is moved on before each.
// (The answer's writes are bounded alike: out.)
func (h *Handler) body(w http.ResponseWriter, r *http.Request) io.Reader {
	if r.Body == nil {
		return nil
	}
	return &deadlineReader{r: r.Body, rc: http.NewResponseController(w), d: h.bodyTimeout()}
}

// out is w for OPEN's bytes, each write of which must finish within the
// handler's BodyTimeout: a client that stops reading is cut off, and the
// file's reader released. Its done lifts the deadline, which would
// otherwise outlive the answer on a kept-alive connection.
func (h *Handler) out(w http.ResponseWriter) *deadlineWriter {
	return &deadlineWriter{w: w, rc: http.NewResponseController(w), d: h.bodyTimeout()}
}

func (h *Handler) bodyTimeout() time.Duration {
	if h.BodyTimeout <= 0 {
		return DefaultBodyTimeout
	}
	return h.BodyTimeout
}

// deadlineWriter moves the connection's write deadline d on before each
// write to w.
type deadlineWriter struct {
	w  io.Writer
	rc *http.ResponseController
	d  time.Duration
}

func (b *deadlineWriter) Write(p []byte) (int, error) {
	_ = b.rc.SetWriteDeadline(time.Now().Add(b.d))
	return b.w.Write(p)
}

func (b *deadlineWriter) done() { _ = b.rc.SetWriteDeadline(time.Time{}) }

// deadlineReader moves the connection's read deadline d on before each
// read of r.
type deadlineReader struct {
	r  io.Reader
	rc *http.ResponseController
	d  time.Duration
}

func (b *deadlineReader) Read(p []byte) (int, error) {
	// A server whose connection cannot take a deadline (a test's
	// recorder) reads without one.
	_ = b.rc.SetReadDeadline(time.Now().Add(b.d))
	return b.r.Read(p)
}
