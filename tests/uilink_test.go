package tests

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
	"cairn/trust"
)

// TestUISignInLink opens `cairn admin -ui-link`'s link with a real HTTPS
// client that has a cookie jar and no client certificate: without a
// session the UI answers 401; the link sets a session cookie (HttpOnly,
// Secure, SameSite=Strict, expiring) and redirects to /, which the
// session then gets; the same link a second time (also after metad
// restarts), an expired link, a forged one and a forged cookie get 401; a
// user certificate cannot make a link.
func TestUISignInLink(t *testing.T) {
	c := cluster.Start(t, cluster.Config{MetadOnly: true})
	ca := c.CA()
	newClient := func() *http.Client {
		jar, err := cookiejar.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: trustingCA(ca.Cert)},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	get := func(hc *http.Client, u string) (*http.Response, string) {
		t.Helper()
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	link := func(args ...string) string {
		t.Helper()
		out, code := c.Run(t, append([]string{"admin", "-ui-link"}, args...)...)
		first, _, _ := strings.Cut(out, "\n")
		if code != 0 || !strings.HasPrefix(first, "https://") || !strings.Contains(first, trust.UILoginPath+"?token=") {
			t.Fatalf("cairn admin -ui-link: exit %d, %q", code, out)
		}
		return first
	}
	root := "https://" + c.MetadHTTPAddr() + "/"

	browser := newClient()
	if resp, body := get(browser, root); resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "namespace") {
		t.Fatalf("no certificate, no session: %d %q, want 401", resp.StatusCode, body)
	}
	l := link()
	resp, _ := get(browser, l)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("open the link: %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	var sess *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == trust.UISessionCookie {
			sess = ck
		}
	}
	if sess == nil || !sess.HttpOnly || !sess.Secure || sess.SameSite != http.SameSiteStrictMode || sess.MaxAge <= 0 || sess.Expires.IsZero() {
		t.Fatalf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict, expiring", sess)
	}
	if resp, body := get(browser, root); resp.StatusCode != http.StatusOK || !strings.Contains(body, "cairn metad") {
		t.Fatalf("with the session: %d %q, want the status page", resp.StatusCode, body)
	}

	// The same link again, from another browser.
	if resp, body := get(newClient(), l); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "used already") {
		t.Fatalf("the link a second time: %d %q, want 401 used already", resp.StatusCode, body)
	}
	// The session cookie's value as a link, and a link with a byte
	// changed.
	if resp, _ := get(newClient(), "https://"+c.MetadHTTPAddr()+trust.UILoginPath+"?token="+url.QueryEscape(sess.Value)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a session token as a link: %d, want 401", resp.StatusCode)
	}
	fresh := link()
	u, _ := url.Parse(fresh)
	tok := u.Query().Get("token")
	// A character inside the MAC (the last may hold only padding bits).
	i := len(tok) - 10
	swap := byte('A')
	if tok[i] == 'A' {
		swap = 'B'
	}
	forged := tok[:i] + string(swap) + tok[i+1:]
	q := u.Query()
	q.Set("token", forged)
	u.RawQuery = q.Encode()
	if resp, _ := get(newClient(), u.String()); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a forged link: %d, want 401", resp.StatusCode)
	}
	// A forged cookie.
	fake := newClient()
	ru, _ := url.Parse(root)
	// A character inside the MAC changed, as for the link: the last may
	// hold only padding bits, or be an "x" already.
	j := len(sess.Value) - 10
	cswap := byte('A')
	if sess.Value[j] == 'A' {
		cswap = 'B'
	}
	fake.Jar.SetCookies(ru, []*http.Cookie{{Name: trust.UISessionCookie, Value: sess.Value[:j] + string(cswap) + sess.Value[j+1:], Path: "/"}})
	if resp, _ := get(fake, root); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a forged session cookie: %d, want 401", resp.StatusCode)
	}
	// An expired link.
	short := link("-ttl", "1s")
	time.Sleep(1500 * time.Millisecond)
	if resp, body := get(newClient(), short); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "expired") {
		t.Fatalf("an expired link: %d %q, want 401 expired", resp.StatusCode, body)
	}
	// A used link stays used across a restart of metad.
	c.StopMetad(t)
	c.StartMetad(t)
	if resp, _ := get(newClient(), l); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the used link after a restart: %d, want 401", resp.StatusCode)
	}
	if resp, _ := get(browser, root); resp.StatusCode != http.StatusOK {
		t.Fatalf("the session after a restart: %d, want 200", resp.StatusCode)
	}
	// The fresh link, unused, still works after the restart.
	if resp, _ := get(newClient(), fresh); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("an unused link after a restart: %d, want 303", resp.StatusCode)
	}

	// Only an admin makes links.
	user := trust.NewHolder(c.IssueCert(t, trust.Peer{Role: trust.RoleUser, Name: "alice"}, t.TempDir()))
	cl, err := client.Dial(c.MetadAddr(), client.Options{Creds: user})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, _, err := cl.Trust().IssueUILink(ctx, time.Minute); !errors.Is(err, cairn.ErrPermission) {
		t.Fatalf("a user asked for a sign-in link: %v, want a permission error", err)
	}
}

// trustingCA is a TLS client configuration without a certificate that
// takes a server whose chain ends at ca (the cluster's certificates name
// roles, not host names).
func trustingCA(ca *x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: pool})
			return err
		}}
}
