package webhdfs

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"cairn"
)

// listPage is how many entries LISTSTATUS_BATCH answers at a time
// (HDFS's dfs.ls.limit).
const listPage = 1000

// meta serves the operations answered from the namespace alone.
func (h *Handler) meta(w *countingWriter, s *Session, q *Request) error {
	ctx, ns := s.Ctx, s.NS
	ok := func(b bool) error { return writeJSON(w, http.StatusOK, map[string]bool{"boolean": b}) }
	empty := func() error {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return nil
	}
	switch q.Op {
	case "GETFILESTATUS":
		fi, err := ns.Stat(ctx, q.Path)
		if err != nil {
			return notFound(err, q.Path)
		}
		return writeJSON(w, http.StatusOK, map[string]any{"FileStatus": fileStatus(fi, "")})
	case "LISTSTATUS":
		fi, err := ns.Stat(ctx, q.Path)
		if err != nil {
			return notFound(err, q.Path)
		}
		list := []FileStatus{}
		if !fi.IsDir() {
			list = append(list, fileStatus(fi, ""))
		} else {
			after := ""
			for {
				es, more, err := ns.List(ctx, q.Path, after, listPage)
				if err != nil {
					return notFound(err, q.Path)
				}
				for _, e := range es {
					list = append(list, fileStatus(e, e.Name))
				}
				if !more || len(es) == 0 {
					break
				}
				after = es[len(es)-1].Name
			}
		}
		return writeJSON(w, http.StatusOK, map[string]any{"FileStatuses": map[string]any{"FileStatus": list}})
	case "LISTSTATUS_BATCH":
		fi, err := ns.Stat(ctx, q.Path)
		if err != nil {
			return notFound(err, q.Path)
		}
		list, remaining := []FileStatus{}, 0
		if !fi.IsDir() {
			list = append(list, fileStatus(fi, ""))
		} else {
			es, more, err := ns.List(ctx, q.Path, q.Param("startAfter"), listPage)
			if err != nil {
				return notFound(err, q.Path)
			}
			for _, e := range es {
				list = append(list, fileStatus(e, e.Name))
			}
			if more {
				remaining = 1 // more follow; cairn does not count them
			}
		}
		return writeJSON(w, http.StatusOK, map[string]any{"DirectoryListing": map[string]any{
			"partialListing": map[string]any{"FileStatuses": map[string]any{"FileStatus": list}}, "remainingEntries": remaining}})
	case "GETCONTENTSUMMARY":
		cs, err := ns.ContentSummary(ctx, q.Path)
		if err != nil {
			return notFound(err, q.Path)
		}
		return writeJSON(w, http.StatusOK, map[string]any{"ContentSummary": ContentSummary{
			DirectoryCount: cs.Dirs, FileCount: cs.Files, Length: cs.Length, Quota: -1, SpaceConsumed: cs.SpaceConsumed,
			SpaceQuota: -1, TypeQuota: map[string]any{}}})
	case "GETHOMEDIRECTORY":
		return writeJSON(w, http.StatusOK, map[string]string{"Path": "/user/" + s.User})
	case "GETFILEBLOCKLOCATIONS":
		off, err := q.Int64("offset", 0, 0, 1<<62)
		if err != nil {
			return err
		}
		length, err := q.Int64("length", 1<<62, 0, 1<<62)
		if err != nil {
			return err
		}
		fb, err := ns.BlockLocations(ctx, cairn.FileRef{Path: q.Path})
		if err != nil {
			return notFound(err, q.Path)
		}
		list := []BlockLocation{}
		for _, lb := range fb.Blocks {
			if lb.Offset+lb.Len > off && lb.Offset < off+length || (lb.Len == 0 && lb.Offset == off) {
				list = append(list, blockLocation(lb))
			}
		}
		return writeJSON(w, http.StatusOK, map[string]any{"BlockLocations": map[string]any{"BlockLocation": list}})
	case "GETXATTRS":
		return h.getXattrs(w, s, q)
	case "LISTXATTRS":
		names, err := ns.ListXattrs(ctx, q.Path)
		if err != nil {
			return notFound(err, q.Path)
		}
		if names == nil {
			names = []string{}
		}
		return writeJSON(w, http.StatusOK, map[string]string{"XAttrNames": jsonString(names)})
	case "CHECKACCESS":
		want, err := fsAction(q.Param("fsaction"))
		if err != nil {
			return err
		}
		if _, err := ns.Access(ctx, q.Path, want); err != nil {
			return notFound(err, q.Path)
		}
		return empty()
	case "GETDELEGATIONTOKEN":
		if s.Delegations == nil {
			return writeJSON(w, http.StatusOK, map[string]any{"Token": nil})
		}
		if s.ByToken {
			return excIO("Delegation Token can be issued only with a certificate: this request brought a delegation token")
		}
		tok, _, _, err := s.Delegations.GetDelegationToken(ctx, q.Param("renewer"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, map[string]any{"Token": map[string]string{"urlString": tok}})
	case "RENEWDELEGATIONTOKEN":
		if s.Delegations == nil {
			return excUnsupported("this cluster runs --insecure: it has no delegation tokens")
		}
		if s.ByToken {
			// HDFS: "Delegation Token can be renewed only with kerberos or
			// web authentication": else whoever saw a token (a redirect URL
			// carries one) could keep it alive to its max date.
			return excIO("Delegation Token can be renewed only with a certificate: this request brought a delegation token")
		}
		exp, err := s.Delegations.RenewDelegationToken(ctx, q.Param("token"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, map[string]int64{"long": exp.UnixMilli()})
	case "CANCELDELEGATIONTOKEN":
		if s.Delegations == nil {
			return excUnsupported("this cluster runs --insecure: it has no delegation tokens")
		}
		if err := s.Delegations.CancelDelegationToken(ctx, q.Param("token")); err != nil {
			return err
		}
		return empty()
	case "MKDIRS":
		perm, err := q.Perm(0o755)
		if err != nil {
			return err
		}
		if err := ns.Mkdirs(ctx, q.Path, perm); err != nil {
			return err
		}
		return ok(true)
	case "RENAME":
		return h.rename(w, s, q)
	case "CONCAT":
		srcs, err := q.Sources()
		if err != nil {
			return err
		}
		if err := ns.Concat(ctx, q.Path, srcs); err != nil {
			return err
		}
		return empty()
	case "SETREPLICATION":
		r, err := q.Int64("replication", 0, 1, 512)
		if err != nil {
			return err
		}
		fi, err := ns.Stat(ctx, q.Path)
		if cairn.KindOf(err) == cairn.KindNotExist || (err == nil && !fi.Mode.IsRegular()) {
			return ok(false)
		} else if err != nil {
			return err
		}
		if r == 0 {
			return ok(true) // no replication named: HDFS keeps the file's
		}
		n := int(r)
		if _, err := ns.SetAttr(ctx, q.Path, cairn.Attr{Replication: &n}); err != nil {
			return err
		}
		return ok(true)
	case "SETOWNER":
		var a cairn.Attr
		if o := q.Param("owner"); o != "" {
			a.Owner = &o
		}
		if g := q.Param("group"); g != "" {
			a.Group = &g
		}
		if a.Owner == nil && a.Group == nil {
			return excIllegal("Both owner and group are empty.")
		}
		if _, err := ns.SetAttr(ctx, q.Path, a); err != nil {
			return notFound(err, q.Path)
		}
		return empty()
	case "SETPERMISSION":
		perm, err := q.Perm(0o755)
		if err != nil {
			return err
		}
		if _, err := ns.SetAttr(ctx, q.Path, cairn.Attr{Perm: &perm}); err != nil {
			return notFound(err, q.Path)
		}
		return empty()
	case "SETTIMES":
		var a cairn.Attr
		for _, p := range []struct {
			name string
			t    **time.Time
		}{{"modificationtime", &a.ModTime}, {"accesstime", &a.AccessTime}} {
			ms, err := q.Int64(p.name, -1, -1, 1<<50)
			if err != nil {
				return err
			}
			if ms >= 0 {
				t := time.UnixMilli(ms)
				*p.t = &t
			}
		}
		if a.ModTime == nil && a.AccessTime == nil {
			return empty()
		}
		if _, err := ns.SetAttr(ctx, q.Path, a); err != nil {
			return notFound(err, q.Path)
		}
		return empty()
	case "SETXATTR":
		name := q.Param("xattr.name")
		if name == "" {
			return excIllegal("the xattr.name parameter is missing")
		}
		v, err := decodeXattrValue(q.Param("xattr.value"))
		if err != nil {
			return err
		}
		var flags cairn.XattrFlags
		for _, f := range strings.Split(strings.ToUpper(q.Param("flag")), ",") {
			switch f {
			case "CREATE":
				flags |= cairn.XattrCreate
			case "REPLACE":
				flags |= cairn.XattrReplace
			case "":
			default:
				return excIllegal("Invalid value for webhdfs parameter \"flag\": %q (CREATE, REPLACE)", f)
			}
		}
		if flags == cairn.XattrCreate|cairn.XattrReplace {
			flags = 0
		}
		if err := ns.SetXattr(ctx, q.Path, name, v, flags); err != nil {
			return notFound(err, q.Path)
		}
		return empty()
	case "REMOVEXATTR":
		name := q.Param("xattr.name")
		if name == "" {
			return excIllegal("the xattr.name parameter is missing")
		}
		if err := ns.RemoveXattr(ctx, q.Path, name); err != nil {
			if cairn.KindOf(err) == cairn.KindNotExist {
				return excIO("No matching attributes found for remove operation")
			}
			return err
		}
		return empty()
	case "CREATESYMLINK":
		target := q.Param("destination")
		if target == "" {
			return excIllegal("the destination parameter (the link's target) is missing")
		}
		if parent, err := q.Bool("createparent", true); err != nil {
			return err
		} else if parent {
			dir, _ := cairn.Split(q.Path)
			if err := ns.Mkdirs(ctx, dir, 0o755); err != nil {
				return err
			}
		}
		if err := ns.Symlink(ctx, target, q.Path); err != nil {
			return err
		}
		return empty()
	case "DELETE":
		rec, err := q.Bool("recursive", false)
		if err != nil {
			return err
		}
		if q.Path == "/" {
			return ok(false) // HDFS never deletes the root
		}
		err = ns.Delete(ctx, q.Path, rec)
		if cairn.KindOf(err) == cairn.KindNotExist {
			return ok(false)
		}
		if err != nil {
			return err
		}
		return ok(true)
	}
	return excUnsupported("operation %s is not served here", q.Op)
}

// rename moves the path to destination as HDFS's rename does: into
// destination when it is a directory, false when the source is missing
// or the destination exists.
func (h *Handler) rename(w *countingWriter, s *Session, q *Request) error {
	ok := func(b bool) error { return writeJSON(w, http.StatusOK, map[string]bool{"boolean": b}) }
	dst, err := q.PathParam("destination", q.Param("destination"))
	if err != nil {
		return err
	}
	if _, err := s.NS.Stat(s.Ctx, q.Path); cairn.KindOf(err) == cairn.KindNotExist {
		return ok(false)
	} else if err != nil {
		return err
	}
	if fi, err := s.NS.Stat(s.Ctx, dst); err == nil {
		if !fi.IsDir() {
			return ok(false)
		}
		_, name := cairn.Split(q.Path)
		dst = cairn.Join(dst, name)
		if _, err := s.NS.Stat(s.Ctx, dst); err == nil {
			return ok(false)
		}
	}
	if err := s.NS.Rename(s.Ctx, q.Path, dst); err != nil {
		switch cairn.KindOf(err) {
		case cairn.KindNotExist, cairn.KindInvalid, cairn.KindNotEmpty, cairn.KindExist:
			return ok(false)
		}
		return err
	}
	return ok(true)
}

// getXattrs answers the named attributes (all when none is named).
func (h *Handler) getXattrs(w *countingWriter, s *Session, q *Request) error {
	names := q.Params("xattr.name")
	if len(names) == 0 {
		all, err := s.NS.ListXattrs(s.Ctx, q.Path)
		if err != nil {
			return notFound(err, q.Path)
		}
		names = all
	}
	out := []XAttr{}
	for _, n := range names {
		v, err := s.NS.GetXattr(s.Ctx, q.Path, n)
		if cairn.KindOf(err) == cairn.KindNotExist {
			if _, serr := s.NS.Stat(s.Ctx, q.Path); serr != nil {
				return notFound(serr, q.Path)
			}
			return excIO("At least one of the attributes provided was not found.")
		}
		if err != nil {
			return err
		}
		ev, err := encodeXattrValue(v, q.Param("encoding"))
		if err != nil {
			return err
		}
		out = append(out, XAttr{Name: n, Value: ev})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"XAttrs": out})
}

// notFound words a missing path as HDFS does ("File does not exist:
// /x"), other errors as they are.
func notFound(err error, path string) error {
	if cairn.KindOf(err) == cairn.KindNotExist {
		return excNotFound("File does not exist: %s", path)
	}
	return err
}

// fsAction parses CHECKACCESS's fsaction ("r-x", "rw-", ...).
func fsAction(s string) (cairn.AccessMode, error) {
	if len(s) != 3 {
		return 0, excIllegal("Invalid value for webhdfs parameter \"fsaction\": %q (rwx, r-x, ...)", s)
	}
	var m cairn.AccessMode
	for i, bit := range []struct {
		c byte
		m cairn.AccessMode
	}{{'r', cairn.AccessRead}, {'w', cairn.AccessWrite}, {'x', cairn.AccessExec}} {
		switch s[i] {
		case bit.c:
			m |= bit.m
		case '-':
		default:
			return 0, excIllegal("Invalid value for webhdfs parameter \"fsaction\": %q (rwx, r-x, ...)", s)
		}
	}
	return m, nil
}

// jsonString is names as a JSON array in a string, as LISTXATTRS has it.
func jsonString(names []string) string {
	b, _ := json.Marshal(names)
	return string(b)
}
