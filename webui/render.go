package webui

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"cairn"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pages are the templates, each the base layout with one page's content.
var pages = func() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, name := range []string{"overview", "datanodes", "dir", "file", "error", "blockd"} {
		t := template.New("base.html").Funcs(funcs)
		out[name] = template.Must(t.ParseFS(templateFS, "templates/base.html", "templates/"+name+".html"))
	}
	return out
}()

// page is what the base layout shows around a page's Data.
type page struct {
	Daemon string // "metad" or "blockd"
	Title  string
	Nav    string // the current entry of metad's menu
	Now    time.Time
	Data   any
}

// errTooBig: a page would be larger than MaxPage.
var errTooBig = errors.New("page larger than the limit")

// render executes page name into bytes, errTooBig if they pass MaxPage.
func render(name string, p page) ([]byte, error) {
	b, err := execute(name, p)
	if err == nil && len(b) > MaxPage {
		return nil, errTooBig
	}
	return b, err
}

func execute(name string, p page) ([]byte, error) {
	var buf bytes.Buffer
	if err := pages[name].Execute(&buf, p); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// renderRows renders a page showing up to n rows of a list; build makes
// the page's data for n rows. While the page is larger than MaxPage it is
// rendered again with fewer rows, in proportion to how much it overran.
func renderRows(name string, n int, build func(n int) page) ([]byte, error) {
	for {
		b, err := execute(name, build(n))
		switch {
		case err != nil:
			return nil, err
		case len(b) <= MaxPage:
			return b, nil
		case n <= 1:
			return nil, errTooBig
		}
		n = max(1, min(n-1, int(float64(n)*0.9*MaxPage/float64(len(b)))))
	}
}

// securityHeaders: no script, style only from here, and no framing.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

// write sends a rendered page.
func write(w http.ResponseWriter, status int, b []byte) {
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// serveError answers with an error page: the status a Kind calls for and
// the error's text (escaped like everything else).
func serveError(w http.ResponseWriter, log *zap.Logger, daemon string, now time.Time, status int, err error) {
	if status == 0 {
		status = statusOf(err)
	}
	if status >= 500 {
		log.Error("web UI page failed", zap.Error(err))
	}
	b, rerr := render("error", page{Daemon: daemon, Title: http.StatusText(status), Now: now, Data: err.Error()})
	if rerr != nil {
		http.Error(w, http.StatusText(status), status)
		return
	}
	write(w, status, b)
}

// statusOf is the HTTP status of a Source's error.
func statusOf(err error) int {
	switch cairn.KindOf(err) {
	case cairn.KindNotExist, cairn.KindNotDir:
		return http.StatusNotFound
	case cairn.KindAccess, cairn.KindPermission:
		return http.StatusForbidden
	case cairn.KindInvalid, cairn.KindNameTooLong:
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// staticHandler serves the embedded stylesheet.
func staticHandler() http.Handler {
	files := http.FileServerFS(staticFS)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := fs.Stat(staticFS, r.URL.Path[1:]); err != nil || r.URL.Path[len(r.URL.Path)-1] == '/' {
			http.NotFound(w, r)
			return
		}
		securityHeaders(w)
		w.Header().Set("Cache-Control", "max-age=3600")
		files.ServeHTTP(w, r)
	})
}
