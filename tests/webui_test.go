package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"cairn/tests/cluster"
)

// The web UI in a real browser: Debian's chromium, headless, driven by
// chromedp. Every browser step has its own deadline (browserStep) inside
// one for the whole browser (browserLife), so a stuck page fails the test
// instead of hanging the suite; the browser is killed when the test ends.
// Screenshots go to the test's artifact directory (t.ArtifactDir): kept
// with go test -artifacts -outputdir DIR (make test keeps them under
// .dev/artifacts), else removed with the test.
const (
	browserLife = 3 * time.Minute
	browserStep = 45 * time.Second
)

// TestWebUISecure signs in on a secure cluster through a `cairn admin
// -ui-link` link, sees the overview count three live blockds, the
// datanodes page list them, the file browser list a file written
// through the mount, and the file's page show its blocks on blockds of
// the cluster, also on a phone's screen.
func TestWebUISecure(t *testing.T) {
	RequireFUSE(t)
	chrome := requireChromium(t)
	c := cluster.Start(t, cluster.Config{Blockds: 3})
	mnt := c.Mount(t)
	src := filepath.Join(t.TempDir(), "hello <world>.txt")
	if err := os.WriteFile(src, []byte(strings.Repeat("cairn in a browser\n", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(mnt, "ui"), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "cp", src, filepath.Join(mnt, "ui"))

	out, code := c.Run(t, "admin", "-ui-link")
	link, _, _ := strings.Cut(out, "\n")
	if code != 0 || !strings.HasPrefix(link, "https://") {
		t.Fatalf("cairn admin -ui-link: exit %d, %q", code, out)
	}
	base := "https://" + c.MetadHTTPAddr()
	b := newBrowser(t, chrome)

	// Without a session: 401, and no figure of the cluster.
	b.do("open / without a session", chromedp.Navigate(base+"/"))
	if body := value(b, "read the page", chromedp.Text(chromedp.CSS("body"))); !strings.Contains(body, "401") || strings.Contains(body, "Namespace") {
		t.Fatalf("/ without a session shows %q, want 401", body)
	}

	b.do("sign in", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#live-nodes")))
	live := value(b, "live blockds", chromedp.Text(chromedp.CSS("#live-nodes")))
	ns := value(b, "namespace", chromedp.Text(chromedp.CSS("#namespace")))
	if live != "3" || !strings.HasPrefix(ns, "ns-") {
		t.Errorf("overview after sign-in: %s live blockds, namespace %q; want 3 and the namespace ID", live, ns)
	}
	b.screenshot("overview")

	b.do("datanodes", chromedp.Navigate(base+"/datanodes"), chromedp.WaitVisible(chromedp.CSS("#datanodes")))
	nodes := value(b, "the blockds", chromedp.Text(chromedp.CSS("#datanodes tbody")))
	for i := range c.Blockds() {
		if !strings.Contains(nodes, c.BlockdAddr(i)) {
			t.Errorf("datanodes page lacks blockd %s:\n%s", c.BlockdAddr(i), nodes)
		}
	}
	if n := strings.Count(nodes, "live"); n != 3 {
		t.Errorf("datanodes page shows %d live blockds, want 3:\n%s", n, nodes)
	}
	b.screenshot("datanodes")

	// From the root, through the directory, to the file, by their links.
	b.do("browse / and open ui/", chromedp.Navigate(base+"/browse?path=%2F"), chromedp.WaitVisible(chromedp.CSS("#listing")),
		chromedp.Click(chromedp.Search(`//table[@id="listing"]//a[text()="ui/"]`)),
		chromedp.WaitVisible(chromedp.Search(`//h1[@id="path" and contains(., "ui")]`)))
	listing := value(b, "the listing", chromedp.Text(chromedp.CSS("#listing")))
	if !strings.Contains(listing, "hello <world>.txt") || !strings.Contains(listing, "18.6 KiB") {
		t.Errorf("the listing of /ui lacks the file written through the mount (hello <world>.txt, 18.6 KiB):\n%s", listing)
	}
	b.screenshot("browse")

	b.do("open the file's page", chromedp.Click(chromedp.Search(`//table[@id="listing"]//a[text()="hello <world>.txt"]`)),
		chromedp.WaitVisible(chromedp.CSS("#blocks")))
	blocks := value(b, "the blocks", chromedp.Text(chromedp.CSS("#blocks tbody")))
	size := value(b, "the size", chromedp.Text(chromedp.CSS("#size")))
	download := value(b, "the download link", chromedp.AttributeValue(chromedp.CSS("#download"), "href"))
	if !strings.Contains(size, "19000 bytes") || !strings.Contains(blocks, "blk_") || !strings.Contains(blocks, "/default-rack") {
		t.Errorf("the file's page: size %q, blocks:\n%s", size, blocks)
	}
	held := 0
	for i := range c.Blockds() {
		if strings.Contains(blocks, c.BlockdAddr(i)) {
			held++
		}
	}
	if held != 3 {
		t.Errorf("the file's block is shown on %d of the 3 blockds:\n%s", held, blocks)
	}
	if want := "/webhdfs/v1/ui/hello%20%3Cworld%3E.txt?op=OPEN"; !download.Exists || !strings.HasSuffix(download.Value, want) {
		t.Errorf("download link %+v, want ...%s", download, want)
	}
	b.screenshot("file")

	// A phone's screen: the file's page does not scroll sideways.
	b.do("the file's page on a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#blocks")))
	width := value(b, "page width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
	inner := value(b, "screen width", chromedp.Evaluate[int](`window.innerWidth`))
	if width > inner {
		t.Errorf("on a 390-pixel screen the file's page is %d pixels wide", width)
	}
	b.screenshot("file-phone")
}

// TestWebUIInsecure: on an --insecure loopback cluster the UI needs no
// sign-in: the overview counts the live blockd, and the datanodes page
// links to the blockd's own status page.
func TestWebUIInsecure(t *testing.T) {
	chrome := requireChromium(t)
	c := cluster.Start(t, cluster.Config{Blockds: 1, Insecure: true})
	b := newBrowser(t, chrome)
	b.do("overview", chromedp.Navigate("http://"+c.MetadHTTPAddr()+"/"), chromedp.WaitVisible(chromedp.CSS("#live-nodes")))
	if live := value(b, "live blockds", chromedp.Text(chromedp.CSS("#live-nodes"))); live != "1" {
		t.Errorf("overview: %s live blockds, want 1", live)
	}
	b.screenshot("overview")
	b.do("a blockd's page", chromedp.Navigate("http://"+c.MetadHTTPAddr()+"/datanodes"),
		chromedp.Click(chromedp.Search(`//table[@id="datanodes"]//a`)), chromedp.WaitVisible(chromedp.CSS("#storage-id")))
	id := value(b, "storage ID", chromedp.Text(chromedp.CSS("#storage-id")))
	volumes := value(b, "volumes", chromedp.Text(chromedp.CSS("#volumes")))
	if id != c.BlockdStorageID(0) || !strings.Contains(volumes, "in service") {
		t.Errorf("the blockd's page: storage ID %q (want %q), volumes %q", id, c.BlockdStorageID(0), volumes)
	}
	b.screenshot("blockd")
}

// requireChromium returns the path of Debian's chromium, or skips the test
// without it, except in CI (CI=true), where it fails.
func requireChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const reason = "needs a headless browser: chromium is not on PATH (Debian package chromium; make test installs it as root)"
	if os.Getenv("CI") == "true" {
		t.Fatal(reason + " (CI=true: may not skip)")
	}
	t.Skip(reason)
	return ""
}

// browser is one headless chromium for one test.
type browser struct {
	t    *testing.T
	ctx  context.Context // the tab
	dir  string          // where screenshots go
	shot int
}

// newBrowser starts chromium (in a root container it needs --no-sandbox)
// with its own profile, accepting the cluster's certificates, which name
// roles rather than hosts; the test's end kills it.
func newBrowser(t *testing.T, path string) *browser {
	t.Helper()
	life, cancelLife := context.WithTimeout(context.Background(), browserLife)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless,
		chromedp.UserDataDir(t.TempDir()), chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	alloc, cancelAlloc := chromedp.NewExecAllocator(life, opts...)
	tab, cancelTab := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelTab()   // closes the browser
		cancelAlloc() // kills its process if it is still there, and waits for it
		cancelLife()
	})
	b := &browser{t: t, ctx: tab, dir: t.ArtifactDir()}
	// The first call starts the browser, for as long as its context
	// lives: the tab's, bounded by browserLife.
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

// do runs actions within browserStep; a failure ends the test. A page
// load cut by ERR_NETWORK_CHANGED is tried again, twice at most: chromium
// aborts loads when the machine's links change, and other tests add and
// remove network namespaces, veth pairs and bridges meanwhile.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(b.ctx, browserStep)
		err := chromedp.Do(ctx, actions...)
		cancel()
		if err == nil {
			return
		}
		if try < 3 && strings.Contains(err.Error(), "ERR_NETWORK_CHANGED") {
			b.t.Logf("browser: %s: %v; again", what, err)
			continue
		}
		b.t.Fatalf("browser: %s: %v (at %s)", what, err, b.location())
	}
}

// value runs an action that reads something within browserStep; a
// failure ends the test.
func value[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("browser: %s: %v (at %s)", what, err, b.location())
	}
	return v
}

// location is the tab's address, for messages.
func (b *browser) location() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	u, _ := chromedp.Run(ctx, chromedp.Location())
	return u
}

// screenshot saves the whole page as NN-name.png in the artifacts.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png := value(b, "screenshot "+name, chromedp.FullScreenshot(100))
	b.shot++
	p := filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.shot, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", p)
}
