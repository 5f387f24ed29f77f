package webui

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"cairn"
)

// Rows a list page shows at most; fewer when the page would pass MaxPage.
const (
	listRows  = 200 // a directory's entries
	nodeRows  = 200 // blockds
	blockRows = 200 // a file's blocks
)

// nodeCounts is the overview's count of blockds.
type nodeCounts struct {
	Live, Dead, Decommissioning, Decommissioned, FailedVolumes int
}

func countNodes(nodes []cairn.NodeReport) nodeCounts {
	var c nodeCounts
	for _, n := range nodes {
		if n.Live {
			c.Live++
		} else {
			c.Dead++
		}
		switch n.AdminState {
		case cairn.AdminDecommissioning:
			c.Decommissioning++
		case cairn.AdminDecommissioned:
			c.Decommissioned++
		}
		c.FailedVolumes += len(n.FailedVolumes)
	}
	return c
}

func (u *UI) overview(w http.ResponseWriter, r *http.Request) {
	now := u.now()
	if r.URL.RawQuery != "" {
		serveError(w, u.log, "metad", now, http.StatusBadRequest, errString("the overview takes no parameters"))
		return
	}
	st, err := u.src.Status(r.Context())
	if err != nil {
		serveError(w, u.log, "metad", now, 0, err)
		return
	}
	rep, err := u.src.Report(r.Context())
	if err != nil {
		serveError(w, u.log, "metad", now, 0, err)
		return
	}
	b, err := render("overview", page{Daemon: "metad", Title: "Overview", Nav: "overview", Now: now,
		Data: struct {
			Status Status
			Nodes  nodeCounts
		}{st, countNodes(rep.Nodes)}})
	if err != nil {
		serveError(w, u.log, "metad", now, http.StatusInternalServerError, err)
		return
	}
	write(w, http.StatusOK, b)
}

// nodeRow is one blockd on the datanodes page.
type nodeRow struct {
	cairn.NodeReport
	Link string // its own UI, when it serves HTTP
}

// listPage is a page of a long list: rows First to Last (counted from 1)
// of Total, and the link to the next page ("" on the last).
type listPage[T any] struct {
	Rows               []T
	First, Last, Total int
	Next               string
}

func (u *UI) datanodes(w http.ResponseWriter, r *http.Request) {
	now := u.now()
	from, err := parseFrom(r.URL.RawQuery)
	if err != nil {
		serveError(w, u.log, "metad", now, http.StatusBadRequest, err)
		return
	}
	rep, err := u.src.Report(r.Context())
	if err != nil {
		serveError(w, u.log, "metad", now, 0, err)
		return
	}
	nodes := slices.Clone(rep.Nodes)
	slices.SortFunc(nodes, func(a, b cairn.NodeReport) int {
		return strings.Compare(a.DataAddr+"\x00"+a.StorageID, b.DataAddr+"\x00"+b.StorageID)
	})
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	from = min(from, len(nodes))
	b, err := renderRows("datanodes", nodeRows, func(n int) page {
		rest := nodes[from:]
		rest = rest[:min(n, len(rest))]
		lp := listPage[nodeRow]{First: from + 1, Last: from + len(rest), Total: len(nodes)}
		for _, nr := range rest {
			row := nodeRow{NodeReport: nr}
			if nr.HTTPAddr != "" {
				row.Link = scheme + nr.HTTPAddr + "/"
			}
			lp.Rows = append(lp.Rows, row)
		}
		if lp.Last < len(nodes) {
			lp.Next = "/datanodes?from=" + strconv.Itoa(lp.Last)
		}
		return page{Daemon: "metad", Title: "Datanodes", Nav: "datanodes", Now: now, Data: lp}
	})
	if err != nil {
		serveError(w, u.log, "metad", now, http.StatusInternalServerError, err)
		return
	}
	write(w, http.StatusOK, b)
}

// crumb is one element of a path's trail of links.
type crumb struct{ Name, Link string }

// maxCrumbLinks bounds the bytes of the links in a path's trail: each
// names its whole directory, so a deep path's would grow as its square.
// Ancestors beyond it, from the root down, are shown as plain names.
const maxCrumbLinks = 32 << 10

// crumbs are p's ancestors and p, each linked but the last.
func crumbs(p string) []crumb {
	out := []crumb{{Name: "/", Link: browseURL(browseQuery{Path: "/"})}}
	if p != "/" {
		at := ""
		for _, name := range strings.Split(p[1:], "/") {
			at += "/" + name
			out = append(out, crumb{Name: name, Link: browseURL(browseQuery{Path: at})})
		}
	}
	out[len(out)-1].Link = ""
	total := 0
	for i := len(out) - 2; i >= 1; i-- {
		if total += len(out[i].Link); total > maxCrumbLinks {
			out[i].Link = ""
		}
	}
	return out
}

// entryRow is one directory entry in a listing.
type entryRow struct {
	cairn.FileInfo
	Link string
}

// dirPage is a directory listing.
type dirPage struct {
	Crumbs []crumb
	After  string
	Rows   []entryRow
	Next   string
}

// fileBlock is one block of a file on its page.
type fileBlock struct {
	cairn.LocatedBlock
	Index int
}

// filePage is a file with its blocks.
type filePage struct {
	Crumbs   []crumb
	Info     cairn.FileInfo
	Download string
	listPage[fileBlock]
}

func (u *UI) browse(w http.ResponseWriter, r *http.Request) {
	now := u.now()
	q, err := parseBrowse(r.URL.RawQuery)
	if err != nil {
		serveError(w, u.log, "metad", now, http.StatusBadRequest, err)
		return
	}
	fi, err := u.src.Stat(r.Context(), q.Path)
	if err != nil {
		serveError(w, u.log, "metad", now, 0, err)
		return
	}
	title := q.Path
	var b []byte
	if fi.IsDir() {
		// One more than shown tells whether a next page is needed when
		// the page is cut for its size.
		ents, more, err := u.src.List(r.Context(), q.Path, q.After, listRows)
		if err != nil {
			serveError(w, u.log, "metad", now, 0, err)
			return
		}
		b, err = renderRows("dir", len(ents), func(n int) page {
			n = min(n, len(ents))
			dp := dirPage{Crumbs: crumbs(q.Path), After: q.After}
			for _, e := range ents[:n] {
				dp.Rows = append(dp.Rows, entryRow{FileInfo: e, Link: browseURL(browseQuery{Path: cairn.Join(q.Path, e.Name)})})
			}
			if n > 0 && (more || n < len(ents)) {
				dp.Next = browseURL(browseQuery{Path: q.Path, After: ents[n-1].Name})
			}
			return page{Daemon: "metad", Title: title, Nav: "browse", Now: now, Data: dp}
		})
		if err != nil {
			serveError(w, u.log, "metad", now, http.StatusInternalServerError, err)
			return
		}
		write(w, http.StatusOK, b)
		return
	}
	fp := filePage{Crumbs: crumbs(q.Path), Info: fi, Download: downloadURL(q.Path)}
	var blocks []cairn.LocatedBlock
	if fi.Mode.IsRegular() {
		fb, err := u.src.BlockLocations(r.Context(), q.Path)
		if err != nil {
			serveError(w, u.log, "metad", now, 0, err)
			return
		}
		blocks = fb.Blocks
	}
	from := min(q.From, len(blocks))
	b, err = renderRows("file", blockRows, func(n int) page {
		rest := blocks[from:]
		rest = rest[:min(n, len(rest))]
		p := fp
		p.listPage = listPage[fileBlock]{First: from + 1, Last: from + len(rest), Total: len(blocks)}
		for i, lb := range rest {
			p.Rows = append(p.Rows, fileBlock{LocatedBlock: lb, Index: from + i})
		}
		if p.Last < len(blocks) {
			p.Next = browseURL(browseQuery{Path: q.Path, From: p.Last})
		}
		return page{Daemon: "metad", Title: title, Nav: "browse", Now: now, Data: p}
	})
	if err != nil {
		serveError(w, u.log, "metad", now, http.StatusInternalServerError, err)
		return
	}
	write(w, http.StatusOK, b)
}

// errString is an error of a fixed text.
type errString string

func (e errString) Error() string { return string(e) }
