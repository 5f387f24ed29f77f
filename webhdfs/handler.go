package webhdfs

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"

	"cairn"
	"cairn/client"
	"cairn/rpc"
)

// Mode is where a Handler serves the API.
type Mode int

const (
	// NameNode is metad's HTTP port: metadata answered there, OPEN,
	// CREATE, APPEND and GETFILECHECKSUM redirected to a blockd.
	NameNode Mode = iota
	// DataNode is a blockd's HTTP port: the operations metad redirects.
	DataNode
	// Gateway is HttpFS: every operation, bytes included, never a
	// redirect.
	Gateway
)

// Session is one authenticated request's view of the cluster: the
// namespace to call as the caller, and on a DataNode or a Gateway the
// client library for the bytes.
type Session struct {
	// Ctx carries the caller's identity for NS's calls.
	Ctx context.Context
	NS  cairn.Namespace
	// Client reads and writes files as the caller (DataNode, Gateway).
	Client *client.Client
	// Delegations serves delegation tokens to the caller; nil when the
	// cluster has none (--insecure): GETDELEGATIONTOKEN answers a null
	// token, as HDFS without security does.
	Delegations rpc.Delegations
	// User is who the caller is (GETHOMEDIRECTORY).
	User string
	// ByToken: the request authenticated with Token, a delegation
	// token, which may not be used to get another.
	ByToken bool
	Token   string
	// Close releases what the session holds (nil: nothing).
	Close func()
}

// ChecksumFunc computes a file's checksum with the caller's client.
type ChecksumFunc func(ctx context.Context, c *client.Client, path string) (Checksum, error)

// fileChecksum is the client library's file checksum, as WebHDFS shows it.
func fileChecksum(ctx context.Context, c *client.Client, path string) (Checksum, error) {
	fc, err := c.FileChecksum(ctx, path)
	if err != nil {
		return Checksum{}, err
	}
	return Checksum{Algorithm: fc.Algorithm, Bytes: fc.Bytes}, nil
}

// Handler serves /webhdfs/v1/.
type Handler struct {
	Mode Mode
	// Session authenticates r (parsed as q) and gives its view of the
	// cluster; an error (a *RemoteError, else a SecurityException) is
	// answered as it is.
	Session func(r *http.Request, q *Request) (*Session, error)
	// Redirect (NameNode) is the URL of a blockd's HTTP port, scheme and
	// host, to send q's bytes to, and the parameters to add to the query
	// (a delegation token for the caller).
	Redirect func(s *Session, q *Request) (base *url.URL, extra url.Values, err error)
	// Checksum computes GETFILECHECKSUM's answer; nil: the client
	// library's FileChecksum (HH64-COMPOSITE, docs/FORMAT.md).
	Checksum ChecksumFunc
	// NameNodeID names metad in CREATE's Location (hdfs://ID/PATH).
	NameNodeID string
	// Observe, if set, is told of each request once answered: its
	// operation ("" when it did not parse), status, body bytes read and
	// written, and how long it took.
	Observe func(op string, status int, in, out int64, took time.Duration)
	// BodyTimeout bounds the wait for each read of a CREATE or APPEND
	// body and each write of OPEN's bytes (DefaultBodyTimeout when 0): a
	// client that stalls longer is cut off; a file written is closed
	// with the bytes it got.
	BodyTimeout time.Duration
	Log         *zap.Logger
}

// ServeHTTP parses, authenticates and serves one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
	var body *countingReader
	if r.Body != nil {
		body = &countingReader{r: r.Body}
		r.Body = body
	}
	op := ""
	defer func() {
		if h.Observe != nil {
			var in int64
			if body != nil {
				in = body.n
			}
			h.Observe(op, cw.status, in, cw.n, time.Since(start))
		}
	}()
	q, err := ParseRequest(r.Method, r.URL.Path, r.URL.RawQuery)
	if err != nil {
		writeError(cw, remoteError(err))
		return
	}
	op = q.Op
	if err := h.serve(cw, r, q); err != nil {
		re := remoteError(err)
		if h.Log != nil {
			lvl := h.Log.Info
			if re.Status >= 500 {
				lvl = h.Log.Warn
			}
			lvl("webhdfs request refused", zap.String("op", q.Op), zap.String("path", q.Path), zap.Int("status", re.Status),
				zap.String("exception", re.Exception), zap.String("message", re.Message))
		}
		if !cw.wrote {
			writeError(cw, re)
		}
	}
}

func (h *Handler) serve(w *countingWriter, r *http.Request, q *Request) error {
	if q.Op == "TRUNCATE" {
		return excUnsupported("TRUNCATE is not supported: cairn's files are write-once (append-only); " +
			"replace a file whole with CREATE&overwrite=true")
	}
	s, err := h.Session(r, q)
	if err != nil {
		if _, ok := err.(*RemoteError); ok {
			return err
		}
		return excSecurity("%v", err)
	}
	if s.Close != nil {
		defer s.Close()
	}
	if q.Data() && h.Mode == NameNode {
		return h.redirect(w, s, q)
	}
	if h.Mode == Gateway && (q.Op == "CREATE" || q.Op == "APPEND") {
		if data, _ := q.Bool("data", false); !data {
			return h.redirectSelf(w, r, q)
		}
	}
	switch q.Op {
	case "OPEN":
		return h.open(w, s, q)
	case "CREATE":
		return h.create(w, r, s, q)
	case "APPEND":
		return h.append(w, r, s, q)
	case "GETFILECHECKSUM":
		sum := h.Checksum
		if sum == nil {
			sum = fileChecksum
		}
		c, err := sum(s.Ctx, s.Client, q.Path)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, c.json())
	}
	return h.meta(w, s, q)
}

// redirect answers a data operation at metad: 307 to a blockd, or with
// noredirect=true 200 and the Location in JSON.
func (h *Handler) redirect(w *countingWriter, s *Session, q *Request) error {
	noRedirect, err := q.Bool("noredirect", false)
	if err != nil {
		return err
	}
	base, extra, err := h.Redirect(s, q)
	if err != nil {
		return err
	}
	u := *base
	u.Path = Prefix + q.Path
	v := url.Values{}
	for k, vs := range q.params {
		if k == "noredirect" {
			continue
		}
		v[k] = vs
	}
	// The place's parameters win over the caller's: a certificate
	// holder's stale delegation= would otherwise ride the redirect in
	// place of the token issued for it.
	for k, vs := range extra {
		v[k] = vs
	}
	u.RawQuery = v.Encode()
	loc := u.String()
	if noRedirect {
		return writeJSON(w, http.StatusOK, map[string]string{"Location": loc})
	}
	w.Header().Set("Location", loc)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusTemporaryRedirect)
	return nil
}

// redirectSelf is HttpFS's first step of CREATE and APPEND: 307 to the
// same URL with data=true, where the client sends the bytes (or with
// noredirect=true, 200 and that Location in JSON).
func (h *Handler) redirectSelf(w *countingWriter, r *http.Request, q *Request) error {
	u := url.URL{Scheme: "http", Host: r.Host, Path: Prefix + q.Path}
	if r.TLS != nil {
		u.Scheme = "https"
	}
	v := url.Values{}
	for k, vs := range q.params {
		if k != "noredirect" {
			v[k] = vs
		}
	}
	v.Set("data", "true")
	u.RawQuery = v.Encode()
	if nr, _ := q.Bool("noredirect", false); nr {
		return writeJSON(w, http.StatusOK, map[string]string{"Location": u.String()})
	}
	w.Header().Set("Location", u.String())
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusTemporaryRedirect)
	return nil
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}

// countingWriter counts the bytes and keeps the status of an answer.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
	wrote  bool
}

func (c *countingWriter) WriteHeader(status int) {
	if !c.wrote {
		c.status, c.wrote = status, true
	}
	c.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the connection (read
// deadlines of a body).
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.wrote = true
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// countingReader counts a request body's bytes.
type countingReader struct {
	r interface {
		Read([]byte) (int, error)
		Close() error
	}
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }
