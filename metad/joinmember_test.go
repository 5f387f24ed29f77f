package metad

import (
	"context"
	"crypto"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cairn"
	"cairn/trust"
)

// JoinMetad hands a new member the cluster's keys once per token of role
// metad naming it, and refuses, recording nothing, a token that is
// expired, forged, of another role, for another member, or for a member
// of the group already; the blockds' Join refuses a metad token.
func TestJoinMetad(t *testing.T) {
	m := startGroupOfOne(t)
	must(t, m.openTrust())
	fc := m.clock.(*fakeClock)
	fc.Add(time.Since(fc.Now())) // tokens are made on the wall clock
	ctx := context.Background()
	const newcomer = "127.0.0.1:1"
	other, err := trust.CreateCA(filepath.Join(t.TempDir(), "trust"), "ns-other")
	must(t, err)
	tok := func(ca *trust.CA, role trust.Role, name string, ttl time.Duration) string {
		s, _, err := ca.NewJoinToken(role, name, ttl)
		must(t, err)
		return s
	}
	expiring := tok(m.ca, trust.RoleMetad, newcomer, time.Minute)
	fc.Add(2 * time.Minute)
	for _, c := range []struct{ what, token, member, want string }{
		{"expired", expiring, newcomer, "join token expired"},
		{"forged", tok(other, trust.RoleMetad, newcomer, time.Hour), newcomer, "not signed by this cluster's CA"},
		{"blockd", tok(m.ca, trust.RoleBlockd, "", time.Hour), newcomer, "for a blockd, not a metad"},
		{"another member's", tok(m.ca, trust.RoleMetad, "127.0.0.1:2", time.Hour), newcomer, "for member 127.0.0.1:2, not 127.0.0.1:1"},
		{"a member's", tok(m.ca, trust.RoleMetad, m.rep.self, time.Hour), m.rep.self, "remove it first"},
		{"malformed", "cairnjoin1.xyz", newcomer, "malformed join token"},
	} {
		before := m.rep.fsm.appliedIndex()
		_, err := m.JoinMetad(ctx, c.token, c.member)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("JoinMetad with a %s token: %v, want an error saying %q", c.what, err, c.want)
		}
		if after := m.rep.fsm.appliedIndex(); after != before {
			t.Fatalf("JoinMetad with a %s token was refused but changed the log (applied %d → %d)", c.what, before, after)
		}
	}
	good := tok(m.ca, trust.RoleMetad, newcomer, time.Hour)
	kit, err := m.JoinMetad(ctx, good, newcomer)
	must(t, err)
	if kit.Version["namespaceID"] != m.namespaceID || string(kit.CA.Cert) != string(m.ca.Cert.Raw) || string(kit.CA.JoinKey) != string(m.ca.JoinKey) {
		t.Fatalf("the kit: namespace %q (want %q), CA and join key equal: %v %v", kit.Version["namespaceID"], m.namespaceID,
			string(kit.CA.Cert) == string(m.ca.Cert.Raw), string(kit.CA.JoinKey) == string(m.ca.JoinKey))
	}
	if _, err := trust.InstallCA(filepath.Join(t.TempDir(), "trust"), m.ca.Fingerprint(), kit.CA); err != nil {
		t.Fatalf("the kit's CA does not install: %v", err)
	}
	if _, err := m.JoinMetad(ctx, good, newcomer); !errors.Is(err, cairn.ErrPermission) || !strings.Contains(err.Error(), "used already") {
		t.Fatalf("JoinMetad with a used token: %v, want it refused as used", err)
	}
	csr, _ := trust.NewCSR(mustKey(t), trust.Peer{Role: trust.RoleMetad, Name: m.namespaceID})
	if _, _, err := m.Join(ctx, tok(m.ca, trust.RoleMetad, newcomer, time.Hour), csr); err == nil || !strings.Contains(err.Error(), "not for a certificate") {
		t.Fatalf("Join (a certificate) with a metad token: %v, want a refusal", err)
	}
}

func mustKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := trust.NewKey()
	must(t, err)
	return k
}
