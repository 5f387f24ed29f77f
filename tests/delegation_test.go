package tests

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
	"cairn/trust"
)

// dtClient is an HTTPS client without a certificate that trusts the
// cluster's CA.
func dtClient(c *cluster.Cluster) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: trustingCA(c.CA().Cert)}}
}

// dtGet fetches path from metad's HTTP port with tok as the delegation
// parameter (bearer: in an Authorization header instead).
func dtGet(t *testing.T, c *cluster.Cluster, path, tok string, bearer bool) (int, string) {
	t.Helper()
	u := "https://" + c.MetadHTTPAddr() + path
	if tok != "" && !bearer {
		u += "?" + trust.DelegationParam + "=" + url.QueryEscape(tok)
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := dtClient(c).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// userClient dials metad with a user certificate for name.
func userClient(t *testing.T, c *cluster.Cluster, name string) *client.Client {
	t.Helper()
	h := trust.NewHolder(c.IssueCert(t, trust.Peer{Role: trust.RoleUser, Name: name}, t.TempDir()))
	cl, err := client.Dial(c.MetadAddr(), client.Options{Creds: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TestDelegationToken: a user with a certificate gets a delegation token
// (RPC and `cairn admin -delegation-token`); over HTTPS without a client
// certificate it authenticates as that user, by URL parameter and by
// bearer header, and not as an admin (pprof 403); only its renewer
// renews it; cancelled or forged it gets 401; it works, and a cancelled
// one stays refused, across a restart of metad.
func TestDelegationToken(t *testing.T) {
	c := cluster.Start(t, cluster.Config{MetadOnly: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, bob := userClient(t, c, "alice"), userClient(t, c, "bob")

	tok, exp, maxDate, err := alice.Delegations().GetDelegationToken(ctx, "bob")
	if err != nil {
		t.Fatalf("get a delegation token: %v", err)
	}
	if !exp.After(time.Now()) || maxDate.Before(exp) {
		t.Fatalf("token expiry %v, max date %v", exp, maxDate)
	}
	if code, body := dtGet(t, c, "/whoami", "", false); code != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d %q, want 401", code, body)
	}
	for _, bearer := range []bool{false, true} {
		if code, body := dtGet(t, c, "/whoami", tok, bearer); code != http.StatusOK || strings.TrimSpace(body) != "user/alice" {
			t.Fatalf("with the token (bearer %v): %d %q, want 200 user/alice", bearer, code, body)
		}
	}
	if code, body := dtGet(t, c, "/", tok, true); code != http.StatusOK || !strings.Contains(body, "cairn metad") {
		t.Fatalf("status page with the token: %d %q", code, body)
	}
	if code, _ := dtGet(t, c, "/debug/pprof/", tok, false); code != http.StatusForbidden {
		t.Fatalf("pprof with a user's token: %d, want 403", code)
	}

	// A byte of the MAC changed.
	i := len(tok) - 10
	swap := byte('A')
	if tok[i] == 'A' {
		swap = 'B'
	}
	forged := tok[:i] + string(swap) + tok[i+1:]
	if code, body := dtGet(t, c, "/whoami", forged, false); code != http.StatusUnauthorized || !strings.Contains(body, "not a delegation token") {
		t.Fatalf("a forged token: %d %q, want 401", code, body)
	}
	if code, _ := dtGet(t, c, "/whoami", "cairndt1.AAAA", true); code != http.StatusUnauthorized {
		t.Fatalf("a malformed token: %d, want 401", code)
	}

	// Only the renewer renews.
	if _, err := alice.Delegations().RenewDelegationToken(ctx, tok); !errors.Is(err, cairn.ErrPermission) {
		t.Fatalf("the owner renewed a token whose renewer is bob: %v, want a permission error", err)
	}
	renewed, err := bob.Delegations().RenewDelegationToken(ctx, tok)
	if err != nil || renewed.Before(exp) {
		t.Fatalf("bob renews: %v, %v (was %v)", renewed, err, exp)
	}
	if _, err := bob.Delegations().RenewDelegationToken(ctx, forged); err == nil {
		t.Fatal("renewed a forged token")
	}

	// From the command line, for the admin running it.
	out, code := c.Run(t, "admin", "-delegation-token")
	cliTok, _, _ := strings.Cut(out, "\n")
	if code != 0 || !strings.HasPrefix(cliTok, "cairndt1.") {
		t.Fatalf("cairn admin -delegation-token: exit %d, %q", code, out)
	}
	if code, body := dtGet(t, c, "/whoami", cliTok, true); code != http.StatusOK || !strings.HasPrefix(body, "user/") {
		t.Fatalf("the CLI's token: %d %q, want 200 as a user", code, body)
	}

	// Both work after a restart; a cancelled one is refused, also after a
	// restart.
	c.StopMetad(t)
	c.StartMetad(t)
	if code, body := dtGet(t, c, "/whoami", tok, false); code != http.StatusOK || strings.TrimSpace(body) != "user/alice" {
		t.Fatalf("after a restart: %d %q, want 200 user/alice", code, body)
	}
	alice, bob = userClient(t, c, "alice"), userClient(t, c, "bob")
	if err := userClient(t, c, "mallory").Delegations().CancelDelegationToken(ctx, tok); !errors.Is(err, cairn.ErrPermission) {
		t.Fatalf("a stranger cancelled alice's token: %v, want a permission error", err)
	}
	if err := alice.Delegations().CancelDelegationToken(ctx, tok); err != nil {
		t.Fatalf("alice cancels her token: %v", err)
	}
	if code, body := dtGet(t, c, "/whoami", tok, false); code != http.StatusUnauthorized || !strings.Contains(body, "cancelled") {
		t.Fatalf("a cancelled token: %d %q, want 401 cancelled", code, body)
	}
	if _, err := bob.Delegations().RenewDelegationToken(ctx, tok); err == nil {
		t.Fatal("renewed a cancelled token")
	}
	if out, code := c.Run(t, "admin", "-cancel-delegation-token", cliTok); code != 0 {
		t.Fatalf("cairn admin -cancel-delegation-token: exit %d %q", code, out)
	}
	c.StopMetad(t)
	c.StartMetad(t)
	for _, tk := range []string{tok, cliTok} {
		if code, _ := dtGet(t, c, "/whoami", tk, true); code != http.StatusUnauthorized {
			t.Fatalf("a cancelled token after a restart: %d, want 401", code)
		}
	}
}

// TestDelegationTokenExpires: a token not renewed within metad's
// --delegation-renew-interval gets 401, and cannot be renewed any more.
func TestDelegationTokenExpires(t *testing.T) {
	c := cluster.Start(t, cluster.Config{MetadOnly: true, MetadArgs: []string{"--delegation-renew-interval", "5s"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := userClient(t, c, "alice")
	tok, exp, _, err := alice.Delegations().GetDelegationToken(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if code, body := dtGet(t, c, "/whoami", tok, false); code != http.StatusOK {
		t.Fatalf("a fresh token: %d %q, want 200", code, body)
	}
	time.Sleep(time.Until(exp) + 500*time.Millisecond)
	if code, body := dtGet(t, c, "/whoami", tok, false); code != http.StatusUnauthorized || !strings.Contains(body, "expired") {
		t.Fatalf("an expired token: %d %q, want 401 expired", code, body)
	}
	if _, err := alice.Delegations().RenewDelegationToken(ctx, tok); err == nil {
		t.Fatal("renewed an expired token")
	}
}
