package webhdfs

import (
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"cairn"
)

// fakeNS answers Stat, List and Mkdirs from a map; the other methods are
// not called by these tests (the embedded nil interface would panic).
type fakeNS struct {
	cairn.Namespace
	files  map[string]cairn.FileInfo
	mkdirs []string
}

func (f *fakeNS) Stat(_ context.Context, p string) (cairn.FileInfo, error) {
	fi, ok := f.files[p]
	if !ok {
		return fi, cairn.E("fake.Stat", cairn.KindNotExist, p, "")
	}
	return fi, nil
}

func (f *fakeNS) List(_ context.Context, dir, after string, limit int) ([]cairn.FileInfo, bool, error) {
	var out []cairn.FileInfo
	for p, fi := range f.files {
		if d, _ := cairn.Split(p); d == dir && p != "/" && fi.Name > after {
			out = append(out, fi)
		}
	}
	return out, false, nil
}

func (f *fakeNS) Mkdirs(_ context.Context, p string, perm fs.FileMode) error {
	f.mkdirs = append(f.mkdirs, p)
	return nil
}

func testHandler(mode Mode) (*Handler, *fakeNS) {
	mt := time.UnixMilli(1700000000123)
	ns := &fakeNS{files: map[string]cairn.FileInfo{
		"/":  {Name: "/", Inode: 1, Mode: fs.ModeDir | 0o755, Owner: "root", Group: "supergroup", ModTime: mt},
		"/f": {Name: "f", Inode: 7, Mode: 0o644 | fs.ModeSticky, Size: 42, Owner: "alice", Group: "staff", ModTime: mt, AccessTime: mt, Replication: 3, BlockSize: 64 << 20},
	}}
	h := &Handler{Mode: mode, Session: func(r *http.Request, q *Request) (*Session, error) {
		c, err := CallerOf(r, q, false)
		if err != nil {
			return nil, err
		}
		return &Session{Ctx: r.Context(), NS: ns, User: c.User}, nil
	}, Redirect: func(s *Session, q *Request) (*url.URL, url.Values, error) {
		return &url.URL{Scheme: "http", Host: "blockd:9864"}, url.Values{"user.name": {s.User}}, nil
	}}
	return h, ns
}

func do(h http.Handler, method, target string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

func TestFileStatusJSON(t *testing.T) {
	h, _ := testHandler(NameNode)
	rec := do(h, "GET", "/webhdfs/v1/f?op=getfilestatus")
	want := `{"FileStatus":{"accessTime":1700000000123,"blockSize":67108864,"childrenNum":0,"fileId":7,"group":"staff","length":42,` +
		`"modificationTime":1700000000123,"owner":"alice","pathSuffix":"","permission":"1644","replication":3,"storagePolicy":0,"type":"FILE"}}`
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != want {
		t.Fatalf("GETFILESTATUS: %d %s\nwant %s", rec.Code, rec.Body, want)
	}
	rec = do(h, "GET", "/webhdfs/v1/?op=LISTSTATUS")
	var ls struct {
		FileStatuses struct{ FileStatus []FileStatus }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &ls); err != nil || len(ls.FileStatuses.FileStatus) != 1 || ls.FileStatuses.FileStatus[0].PathSuffix != "f" {
		t.Fatalf("LISTSTATUS: %s (%v)", rec.Body, err)
	}
	rec = do(h, "GET", "/webhdfs/v1/?op=GETHOMEDIRECTORY&user.name=bob")
	if strings.TrimSpace(rec.Body.String()) != `{"Path":"/user/bob"}` {
		t.Fatalf("GETHOMEDIRECTORY: %s", rec.Body)
	}
}

func TestRemoteExceptions(t *testing.T) {
	h, ns := testHandler(NameNode)
	for _, tc := range []struct{ method, target, exc string }{
		{"GET", "/webhdfs/v1/nope?op=GETFILESTATUS", "FileNotFoundException"},
		{"GET", "/webhdfs/v1/f?op=BOGUS", "IllegalArgumentException"},
		{"GET", "/webhdfs/v1/f", "IllegalArgumentException"},
		{"PUT", "/webhdfs/v1/f?op=OPEN", "IllegalArgumentException"},
		{"PUT", "/webhdfs/v1/d?op=MKDIRS&permission=999", "IllegalArgumentException"},
		{"GET", "/webhdfs/v1/f?op=OPEN&length=x", "IllegalArgumentException"},
		{"GET", "/webhdfs/v1/a/../b?op=GETFILESTATUS", "InvalidPathException"},
		{"POST", "/webhdfs/v1/f?op=TRUNCATE&newlength=1", "UnsupportedOperationException"},
		{"POST", "/webhdfs/v1/f?op=CONCAT", "IllegalArgumentException"},
		{"POST", "/webhdfs/v1/f?op=CONCAT&sources=/g,", "IllegalArgumentException"},
		{"POST", "/webhdfs/v1/f?op=CONCAT&sources=/g,h", "InvalidPathException"},
		{"GET", "/webhdfs/v1/f?op=GETFILECHECKSUM&user.name=a%2Fb", "IllegalArgumentException"},
	} {
		rec := do(h, tc.method, tc.target)
		var re struct {
			RemoteException struct{ Exception, JavaClassName, Message string }
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &re); err != nil || re.RemoteException.Exception != tc.exc || rec.Code != 400 && rec.Code != 404 {
			t.Errorf("%s %s: %d %s, want %s", tc.method, tc.target, rec.Code, rec.Body, tc.exc)
		}
	}
	if len(ns.mkdirs) != 0 {
		t.Fatalf("a refused MKDIRS made %v", ns.mkdirs)
	}
}

func TestRedirect(t *testing.T) {
	h, _ := testHandler(NameNode)
	rec := do(h, "GET", "/webhdfs/v1/f?op=open&offset=3&user.name=carol")
	loc, _ := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusTemporaryRedirect || loc == nil || loc.Host != "blockd:9864" || loc.Path != "/webhdfs/v1/f" ||
		loc.Query().Get("offset") != "3" || loc.Query().Get("op") != "open" || loc.Query().Get("user.name") != "carol" {
		t.Fatalf("OPEN: %d Location %q", rec.Code, rec.Header().Get("Location"))
	}
	rec = do(h, "PUT", "/webhdfs/v1/g?op=CREATE&noredirect=true")
	var j struct{ Location string }
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &j) != nil || !strings.HasPrefix(j.Location, "http://blockd:9864/webhdfs/v1/g?") || strings.Contains(j.Location, "noredirect") {
		t.Fatalf("CREATE noredirect=true: %d %s", rec.Code, rec.Body)
	}
	g, _ := testHandler(Gateway)
	rec = do(g, "PUT", "/webhdfs/v1/g?op=CREATE&overwrite=true")
	if loc := rec.Header().Get("Location"); rec.Code != http.StatusTemporaryRedirect || !strings.Contains(loc, "data=true") || !strings.Contains(loc, "overwrite=true") {
		t.Fatalf("HttpFS CREATE without data=true: %d Location %q", rec.Code, loc)
	}
}

func TestXattrCodec(t *testing.T) {
	for _, tc := range []struct{ in, want string }{{"0x4142", "AB"}, {"0sQUI=", "AB"}, {`"AB"`, "AB"}, {"AB", "AB"}} {
		b, err := decodeXattrValue(tc.in)
		if err != nil || string(b) != tc.want {
			t.Errorf("decode %q = %q, %v", tc.in, b, err)
		}
	}
	for enc, want := range map[string]string{"text": `"AB"`, "hex": "0x4142", "base64": "0sQUI="} {
		if got, err := encodeXattrValue([]byte("AB"), enc); err != nil || got != want {
			t.Errorf("encode %s = %q, %v", enc, got, err)
		}
	}
	if _, err := decodeXattrValue("0xZZ"); err == nil {
		t.Error("bad hex decoded")
	}
}
