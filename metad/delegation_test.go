package metad

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cairn/trust"
)

// openDelegations opens a metad on dir with its CA, clk and a renew
// interval of an hour within a max life of three.
func openDelegations(t *testing.T, dir string, clk *fakeClock) *Metad {
	t.Helper()
	m := openCfg(t, Config{Dir: dir, Clock: clk, DelegationRenewInterval: time.Hour, DelegationMaxLifetime: 3 * time.Hour})
	if err := m.openTrust(); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDelegationTokenLife: a token is its owner, a user, until its renew
// interval passes; its renewer alone renews it, never past its max date;
// its owner or renewer cancels it, for good, across a restart; one
// altered, or signed by another cluster, is refused.
func TestDelegationTokenLife(t *testing.T) {
	clk := newFakeClock()
	dir := filepath.Join(t.TempDir(), "meta")
	m := openDelegations(t, dir, clk)
	alice := as("alice")
	works := func(tok string) error { _, err := m.delegationPeer(tok); return err }

	tok, exp, maxDate, err := m.GetDelegationToken(alice, "")
	must(t, err)
	if !exp.Equal(clk.Now().Add(time.Hour).Truncate(time.Millisecond)) || !maxDate.Equal(clk.Now().Add(3*time.Hour).Truncate(time.Millisecond)) {
		t.Fatalf("expiry %v, max date %v", exp, maxDate)
	}
	if p, err := m.delegationPeer(tok); err != nil || p != (trust.Peer{Role: trust.RoleUser, Name: "alice"}) {
		t.Fatalf("the token is %v, %v; want user alice", p, err)
	}
	// Renewed by its renewer only, each time for an interval from now.
	if _, err := m.RenewDelegationToken(as("bob"), tok); err == nil {
		t.Fatal("bob renewed alice's token")
	}
	for range 2 {
		clk.Add(50 * time.Minute)
		if _, err := m.RenewDelegationToken(alice, tok); err != nil {
			t.Fatalf("renew at %v: %v", clk.Now(), err)
		}
	}
	clk.Add(50 * time.Minute) // 2h30 after issue, 50 min after the last renewal
	must(t, works(tok))
	// Never past the max date, however renewed.
	exp, err = m.RenewDelegationToken(alice, tok)
	must(t, err)
	if !exp.Equal(maxDate) {
		t.Fatalf("renewed near its max date to %v, want %v", exp, maxDate)
	}
	clk.Add(31 * time.Minute)
	if err := works(tok); err == nil {
		t.Fatal("a token works past its max date")
	}
	if _, err := m.RenewDelegationToken(alice, tok); err == nil {
		t.Fatal("a token past its max date was renewed")
	}

	// Not renewed: refused once its interval passes.
	tok2, _, _, err := m.GetDelegationToken(alice, "")
	must(t, err)
	clk.Add(time.Hour)
	if err := works(tok2); err == nil {
		t.Fatal("a token works past its renew interval")
	}

	// Cancelled by its owner (not by another): refused, across a restart.
	tok3, _, _, err := m.GetDelegationToken(alice, "carol")
	must(t, err)
	if err := m.CancelDelegationToken(as("bob"), tok3); err == nil {
		t.Fatal("bob cancelled alice's token")
	}
	must(t, m.CancelDelegationToken(alice, tok3))
	if err := works(tok3); err == nil {
		t.Fatal("a cancelled token works")
	}
	tok4, _, _, err := m.GetDelegationToken(alice, "")
	must(t, err)
	must(t, m.Close())
	m = openDelegations(t, dir, clk)
	if err := works(tok3); err == nil {
		t.Fatal("a cancelled token works after a restart")
	}
	must(t, works(tok4))

	// Altered, or another cluster's: refused.
	body := strings.TrimPrefix(tok4, "cairndt1.")
	for i, c := range []byte{'A', 'B'} {
		alt := "cairndt1." + body[:20] + string(c) + body[21:]
		if alt != tok4 {
			if err := works(alt); err == nil {
				t.Fatalf("altered token %d works", i)
			}
		}
	}
	other := openDelegations(t, filepath.Join(t.TempDir(), "other"), clk)
	foreign, _, _, err := other.GetDelegationToken(alice, "")
	must(t, err)
	if err := works(foreign); err == nil {
		t.Fatal("another cluster's token works")
	}
}
