package webui

import (
	"context"
	"fmt"
	"html"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"cairn"
)

// fakeSource is a namespace of a few files in memory and a fixed cluster.
type fakeSource struct {
	status Status
	report cairn.ClusterReport
	files  map[string]cairn.FileInfo // by path
	blocks map[string][]cairn.LocatedBlock
	calls  int
}

func (f *fakeSource) Status(context.Context) (Status, error) { f.calls++; return f.status, nil }
func (f *fakeSource) Report(context.Context) (cairn.ClusterReport, error) {
	f.calls++
	return f.report, nil
}

func (f *fakeSource) Stat(_ context.Context, p string) (cairn.FileInfo, error) {
	f.calls++
	fi, ok := f.files[p]
	if !ok {
		return cairn.FileInfo{}, cairn.E("fake.Stat", cairn.KindNotExist, p, "")
	}
	if fi.Owner == "secret" {
		return cairn.FileInfo{}, cairn.E("fake.Stat", cairn.KindAccess, p, "user=nobody, access=READ")
	}
	return fi, nil
}

func (f *fakeSource) List(_ context.Context, p, after string, limit int) ([]cairn.FileInfo, bool, error) {
	f.calls++
	var names []string
	for q := range f.files {
		if q != "/" {
			if dir, name := cairn.Split(q); dir == p && name > after {
				names = append(names, name)
			}
		}
	}
	sort.Strings(names)
	more := len(names) > limit
	names = names[:min(limit, len(names))]
	var out []cairn.FileInfo
	for _, n := range names {
		out = append(out, f.files[cairn.Join(p, n)])
	}
	return out, more, nil
}

func (f *fakeSource) BlockLocations(_ context.Context, p string) (cairn.FileBlocks, error) {
	f.calls++
	return cairn.FileBlocks{Size: f.files[p].Size, Blocks: f.blocks[p]}, nil
}

func (f *fakeSource) add(p string, fi cairn.FileInfo) {
	_, fi.Name = cairn.Split(p)
	if p == "/" {
		fi.Name = "/"
	}
	f.files[p] = fi
}

var (
	t0      = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	dirMode = fs.ModeDir | 0o755
)

func newFake() *fakeSource {
	f := &fakeSource{files: map[string]cairn.FileInfo{}, blocks: map[string][]cairn.LocatedBlock{}}
	f.status = Status{NamespaceID: "ns-1234", Version: "v9 test", Started: t0.Add(-time.Hour),
		SafeMode: cairn.SafeModeStatus{On: true, Total: 10, Reported: 7, Message: "Safe mode is ON. <b>wait</b>"},
		Stats:    cairn.FsStats{Capacity: 4 << 30, Used: 1 << 30, Remaining: 3 << 30, Files: 42, Blocks: 17, LiveNodes: 2},
		Health:   BlockHealth{UnderReplicated: 3, Corrupt: 1, Missing: 2, Checked: t0}}
	f.report = cairn.ClusterReport{NamespaceID: "ns-1234", Nodes: []cairn.NodeReport{
		{Node: cairn.Node{StorageID: "s-b", DataAddr: "10.0.0.2:9866", HTTPAddr: "10.0.0.2:9864", Rack: "/r2"}, Capacity: 2 << 30, Used: 1 << 29, Blocks: 9, Live: true, AdminState: cairn.AdminNormal, LastHeartbeat: t0.Add(-2 * time.Second)},
		{Node: cairn.Node{StorageID: "s-a", DataAddr: "10.0.0.1:9866", HTTPAddr: "10.0.0.1:9864", Rack: "/r1"}, Capacity: 2 << 30, Used: 1 << 29, Blocks: 8, Live: true, AdminState: cairn.AdminDecommissioning, LastHeartbeat: t0.Add(-time.Second)},
		{Node: cairn.Node{StorageID: "s-c", DataAddr: "10.0.0.3:9866", Rack: "/r1"}, Live: false, AdminState: cairn.AdminNormal, LastHeartbeat: t0.Add(-20 * time.Minute),
			FailedVolumes: []string{"/disk<1>: input/output error"}},
	}}
	f.add("/", cairn.FileInfo{Mode: dirMode, Owner: "root", Group: "supergroup"})
	f.add("/data", cairn.FileInfo{Mode: dirMode, Owner: "alice", Group: "staff"})
	f.add("/data/log.txt", cairn.FileInfo{Mode: 0o644, Size: 3 << 20, Replication: 3, BlockSize: 1 << 20, Owner: "alice", Group: "staff", ModTime: t0})
	f.add("/data/<img src=x onerror=alert(1)>", cairn.FileInfo{Mode: 0o644, Size: 5, Replication: 3, Owner: "eve\"'<>", Group: "staff", ModTime: t0})
	f.add("/data/a?b#c", cairn.FileInfo{Mode: 0o600, Size: 1, Replication: 1, Owner: "alice", Group: "staff"})
	f.add("/private", cairn.FileInfo{Mode: dirMode, Owner: "secret"})
	for i := range 3 {
		f.blocks["/data/log.txt"] = append(f.blocks["/data/log.txt"], cairn.LocatedBlock{
			Block: cairn.Block{ID: cairn.BlockID(1000 + i), GenStamp: 5, Len: 1 << 20}, Offset: int64(i) << 20,
			Locations: []cairn.Node{{DataAddr: "10.0.0.1:9866", Rack: "/r1"}, {DataAddr: "10.0.0.2:9866", Rack: "/r2"}}})
	}
	return f
}

func get(t *testing.T, h http.Handler, target string) (int, http.Header, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec.Code, rec.Header(), rec.Body.String()
}

func newUI(f *fakeSource) *UI {
	u := New(f, nil)
	u.now = func() time.Time { return t0 }
	return u
}

// checkPage checks what every page must be: under MaxPage, with the
// security headers, no script and nothing fetched from another site
// (links to blockds' own pages are fine).
func checkPage(t *testing.T, target string, h http.Header, body string) {
	t.Helper()
	if len(body) > MaxPage {
		t.Errorf("%s: %d bytes, over %d", target, len(body), MaxPage)
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("%s: Content-Security-Policy %q", target, csp)
	}
	if strings.Contains(strings.ToLower(body), "<script") || regexp.MustCompile(`src="(https?:)?//|<link[^>]*href="(https?:)?//|url\(`).MatchString(body) {
		t.Errorf("%s: a script or a reference to another site:\n%s", target, body)
	}
	if !strings.Contains(body, `name="viewport"`) {
		t.Errorf("%s: no viewport", target)
	}
}

func TestOverview(t *testing.T) {
	code, h, body := get(t, newUI(newFake()), "/")
	if code != http.StatusOK {
		t.Fatalf("GET /: %d %s", code, body)
	}
	checkPage(t, "/", h, body)
	for _, want := range []string{
		`id="namespace">ns-1234<`, "v9 test", `class="warn">ON<`, "7 of 10 blocks reported",
		"Safe mode is ON. &lt;b&gt;wait&lt;/b&gt;", "4.00 GiB", "1.00 GiB (25.0%)", `id="files">42<`, `id="blocks">17<`,
		`id="live-nodes">2<`, `id="dead-nodes" class="warn">1<`, `id="decommissioning-nodes">1<`, `id="decommissioned-nodes">0<`,
		`id="under-replicated" class="warn">3<`, `id="corrupt" class="warn">1<`, `id="missing" class="warn">2<`,
		`value="0.25"`, "up 1h0m0s",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q:\n%s", want, body)
		}
	}
}

func TestDatanodes(t *testing.T) {
	f := newFake()
	code, h, body := get(t, newUI(f), "/datanodes")
	if code != http.StatusOK {
		t.Fatalf("GET /datanodes: %d %s", code, body)
	}
	checkPage(t, "/datanodes", h, body)
	a, b, c := strings.Index(body, "10.0.0.1:9866"), strings.Index(body, "10.0.0.2:9866"), strings.Index(body, "10.0.0.3:9866")
	if a < 0 || b < a || c < b {
		t.Errorf("blockds not listed in address order (%d %d %d):\n%s", a, b, c, body)
	}
	for _, want := range []string{`href="http://10.0.0.1:9864/"`, "/r2", "Decommission in progress", "/disk&lt;1&gt;: input/output error",
		"20m0s", "2s", `class="warn">dead<`, "3 blockds"} {
		if !strings.Contains(body, want) {
			t.Errorf("datanodes page lacks %q:\n%s", want, body)
		}
	}
	if code, _, body := get(t, newUI(f), "/datanodes?from=2"); code != http.StatusOK || strings.Contains(body, "10.0.0.1:9866") || !strings.Contains(body, "10.0.0.3:9866") {
		t.Errorf("datanodes from 2: %d\n%s", code, body)
	}
}

func TestBrowseDirectory(t *testing.T) {
	code, h, body := get(t, newUI(newFake()), "/browse?path=/data")
	if code != http.StatusOK {
		t.Fatalf("browse /data: %d %s", code, body)
	}
	checkPage(t, "/browse", h, body)
	if strings.Contains(body, "<img") || strings.Contains(body, `eve"'`) {
		t.Errorf("a name or owner reached the page unescaped:\n%s", body)
	}
	for _, want := range []string{
		"&lt;img src=x onerror=alert(1)&gt;", `href="/browse?path=%2Fdata%2F%3Cimg&#43;src%3Dx&#43;onerror%3Dalert%281%29%3E"`,
		`href="/browse?path=%2Fdata%2Fa%3Fb%23c"`, "a?b#c", "log.txt", "3.00 MiB", "-rw-r--r--", "alice", "2026-12-01 10:00:00 UTC",
		`<a href="/browse?path=%2F">/</a>data`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("listing lacks %q:\n%s", want, body)
		}
	}
}

func TestBrowseFile(t *testing.T) {
	code, h, body := get(t, newUI(newFake()), "/browse?path=/data/log.txt")
	if code != http.StatusOK {
		t.Fatalf("browse a file: %d %s", code, body)
	}
	checkPage(t, "/browse", h, body)
	for _, want := range []string{"blk_1000", "blk_1002", "10.0.0.2:9866", "/r2", `id="download" href="/webhdfs/v1/data/log.txt?op=OPEN"`,
		"3 blocks; 1 to 3 shown", "1048576"} {
		if !strings.Contains(body, want) {
			t.Errorf("file page lacks %q:\n%s", want, body)
		}
	}
	_, _, body = get(t, newUI(newFake()), "/browse?path="+url.QueryEscape("/data/a?b#c"))
	if !strings.Contains(body, `href="/webhdfs/v1/data/a%3Fb%23c?op=OPEN"`) {
		t.Errorf("the download link of a?b#c is not escaped:\n%s", body)
	}
}

// TestBadRequests: a bad query gets 400 with the reason, and the source
// is not asked anything; errors of the source get their status.
func TestBadRequests(t *testing.T) {
	for target, want := range map[string]string{
		"/browse?path=/a/../b":     "&#34;..&#34;",
		"/browse?path=rel":         "not absolute",
		"/browse?path=/a%00b":      "NUL",
		"/browse?path=/a&x=1":      "unknown parameter",
		"/browse?path=/&after=a/b": "&#39;/&#39;",
		"/browse?path=%zz":         "malformed",
		"/datanodes?from=-3":       "not a row number",
		"/?x":                      "no parameters",
	} {
		f := newFake()
		code, h, body := get(t, newUI(f), target)
		if code != http.StatusBadRequest || !strings.Contains(body, want) || f.calls != 0 {
			t.Errorf("%s: %d, %d calls of the source, %q; want 400 with %q", target, code, f.calls, body, want)
		}
		checkPage(t, target, h, body)
	}
	for target, want := range map[string]int{
		"/browse?path=/nope":    http.StatusNotFound,
		"/browse?path=/private": http.StatusForbidden,
		"/nowhere":              http.StatusNotFound,
		"/static/":              http.StatusNotFound,
		"/static/nope.css":      http.StatusNotFound,
	} {
		if code, _, body := get(t, newUI(newFake()), target); code != want {
			t.Errorf("%s: %d %q, want %d", target, code, body, want)
		}
	}
	rec := httptest.NewRecorder()
	newUI(newFake()).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/browse?path=/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /browse: %d, want 405", rec.Code)
	}
}

func TestStatic(t *testing.T) {
	code, h, body := get(t, newUI(newFake()), "/static/style.css")
	if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/css") || !strings.Contains(body, "@media (max-width") {
		t.Fatalf("style.css: %d %q", code, h.Get("Content-Type"))
	}
	if strings.Contains(body, "url(") || strings.Contains(body, "@import") {
		t.Error("the stylesheet fetches something")
	}
}

// TestLongDirectory: a directory of many entries with the longest names
// that escape worst is shown in pages under MaxPage whose "more" links
// visit every entry once.
func TestLongDirectory(t *testing.T) {
	f := newFake()
	f.add("/big", cairn.FileInfo{Mode: dirMode})
	var want []string
	for i := range 700 {
		name := fmt.Sprintf("%03d", i) + strings.Repeat("<&\"", (cairn.MaxNameLen-3)/3)
		want = append(want, name)
		f.add("/big/"+name, cairn.FileInfo{Mode: 0o644, Owner: strings.Repeat("<", 200), Group: strings.Repeat("&", 200)})
	}
	ui := newUI(f)
	var seen []string
	next := "/browse?path=%2Fbig"
	pages := 0
	for next != "" {
		code, h, body := get(t, ui, next)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", next, code, body)
		}
		checkPage(t, next, h, body)
		for _, m := range regexp.MustCompile(`<td class="name" data-label="Name"><a href="[^"]*">([^<]*)</a>`).FindAllStringSubmatch(body, -1) {
			seen = append(seen, html.UnescapeString(m[1]))
		}
		next = ""
		if m := regexp.MustCompile(`<a href="([^"]*)">More entries</a>`).FindStringSubmatch(body); m != nil {
			next = html.UnescapeString(m[1])
		}
		if pages++; pages > 100 {
			t.Fatal("more than 100 pages")
		}
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("the pages showed %d entries, want %d", len(seen), len(want))
	}
	if pages < 4 {
		t.Errorf("%d pages for 700 long entries: not cut for size?", pages)
	}
}

// TestManyBlocks: a file of many blocks is shown in pages under MaxPage
// that cover every block once.
func TestManyBlocks(t *testing.T) {
	f := newFake()
	f.add("/huge", cairn.FileInfo{Mode: 0o644, Replication: 3})
	for i := range 1000 {
		var locs []cairn.Node
		for j := range 6 {
			locs = append(locs, cairn.Node{DataAddr: fmt.Sprintf("[2001:db8::%d]:9866", j), Rack: "/dc<" + strings.Repeat("&", 40) + ">/rack"})
		}
		f.blocks["/huge"] = append(f.blocks["/huge"], cairn.LocatedBlock{Block: cairn.Block{ID: cairn.BlockID(1<<40 + i), GenStamp: 1 << 40, Len: 1 << 26}, Locations: locs})
	}
	ui := newUI(f)
	next, count, pages := "/browse?path=%2Fhuge", 0, 0
	for next != "" {
		code, h, body := get(t, ui, next)
		if code != http.StatusOK {
			t.Fatalf("%s: %d", next, code)
		}
		checkPage(t, next, h, body)
		count += strings.Count(body, "<code>blk_")
		next = ""
		if m := regexp.MustCompile(`<a href="([^"]*)">More blocks</a>`).FindStringSubmatch(body); m != nil {
			next = html.UnescapeString(m[1])
		}
		if pages++; pages > 100 {
			t.Fatal("more than 100 pages")
		}
	}
	if count != 1000 {
		t.Fatalf("pages showed %d blocks, want 1000", count)
	}
}

// TestDeepPath: the page of a directory at the deepest or longest path
// there may be stays under MaxPage, with its trail of links.
func TestDeepPath(t *testing.T) {
	f := newFake()
	deep := strings.Repeat("/a", cairn.MaxNamespacePathLen/2)
	wide := ""
	for len(wide)+cairn.MaxNameLen+1 <= cairn.MaxNamespacePathLen {
		wide += "/" + strings.Repeat("%", cairn.MaxNameLen)
	}
	for _, p := range []string{deep, wide} {
		f.add(p, cairn.FileInfo{Mode: dirMode})
		f.add(p+"/f", cairn.FileInfo{Mode: 0o644})
		target := "/browse?path=" + url.QueryEscape(p)
		code, h, body := get(t, newUI(f), target)
		if code != http.StatusOK {
			t.Fatalf("a path of %d bytes: %d %.300s", len(p), code, body)
		}
		checkPage(t, "a deep path", h, body)
		if !strings.Contains(body, `<a href="/browse?path=%2F">/</a>`) || !strings.Contains(body, ">f</a>") {
			t.Errorf("a path of %d bytes: no link to the root or to the entry", len(p))
		}
	}
}

type fakeBlockd struct{ st BlockdStatus }

func (f fakeBlockd) BlockdStatus(context.Context) BlockdStatus { return f.st }

func TestBlockdPage(t *testing.T) {
	h := BlockdHandler(fakeBlockd{BlockdStatus{StorageID: "st-9", NamespaceID: "ns-1", DataAddr: "127.0.0.1:9866", Rack: "/r1", Metad: "127.0.0.1:9000",
		Started: time.Now().Add(-time.Minute), Replicas: 12, Volumes: []VolumeStatus{
			{Dir: "/d1", Capacity: 1 << 30, Used: 1 << 28, Remaining: 3 << 28, Replicas: 12},
			{Dir: "/d2<x>", Failed: "/d2<x>: input/output error"},
		}, Scanner: &ScannerStatus{Period: 21 * 24 * time.Hour, Rate: 1 << 20, Verified: 5, Bytes: 5 << 20}}}, nil)
	code, hdr, body := get(t, h, "/")
	if code != http.StatusOK {
		t.Fatalf("blockd page: %d %s", code, body)
	}
	checkPage(t, "/", hdr, body)
	for _, want := range []string{`id="storage-id">st-9<`, "127.0.0.1:9000", `id="replicas">12<`, "/d2&lt;x&gt;: input/output error",
		"25.0%", `id="scanner-verified">5 replicas, 5.00 MiB`, "every replica once in 21d,", "up 1m0s"} {
		if !strings.Contains(body, want) {
			t.Errorf("blockd page lacks %q:\n%s", want, body)
		}
	}
	if code, _, _ := get(t, h, "/other"); code != http.StatusNotFound {
		t.Errorf("/other: %d", code)
	}
	if code, _, _ := get(t, h, "/static/style.css"); code != http.StatusOK {
		t.Errorf("style.css on a blockd: %d", code)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.00 KiB", 1536: "1.50 KiB", 10 << 20: "10.0 MiB", 500 << 30: "500 GiB", 3 << 60: "3.00 EiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	_ = io.Discard
}
