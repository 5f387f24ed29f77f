package trust

import (
	"encoding/base64"
	"testing"
	"time"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// FuzzParseJoinToken: no input makes the token parser panic, and a token
// it accepts has a valid role and name.
func FuzzParseJoinToken(f *testing.F) {
	ca, err := CreateCA(f.TempDir(), "ns-fuzz")
	if err != nil {
		f.Fatal(err)
	}
	for _, r := range []Role{RoleBlockd, RoleMount} {
		tok, _, _ := ca.NewJoinToken(r, "", time.Hour)
		f.Add(tok)
	}
	tok, _, _ := ca.NewJoinToken(RoleUser, "alice", time.Hour)
	f.Add(tok)
	tok, _, _ = ca.NewJoinToken(RoleMetad, "[::1]:9000", time.Hour)
	f.Add(tok)
	f.Add("cairnjoin1.")
	f.Add("cairnjoin1.AQ")
	f.Fuzz(func(t *testing.T, s string) {
		jt, _, _, err := ParseJoinToken(s)
		if err != nil {
			return
		}
		if jt.Role == RoleMetad && ValidMemberAddr(jt.Name) != nil || jt.Role != RoleMetad && jt.Name != "" && ValidName(jt.Name) != nil {
			t.Fatalf("accepted %+v", jt)
		}
		_, _ = ca.VerifyJoinToken(s, time.Now())
	})
}

// FuzzParseCSR: no input makes the request parser panic, and a request
// it accepts names a valid peer.
func FuzzParseCSR(f *testing.F) {
	key, _ := NewKey()
	for _, p := range []Peer{{RoleBlockd, "DS-1"}, {RoleMount, "host"}} {
		der, _ := NewCSR(key, p)
		f.Add(der)
	}
	f.Add([]byte{0x30, 0x82, 0x01})
	f.Fuzz(func(t *testing.T, der []byte) {
		_, p, err := ParseCSR(der)
		if err == nil && p.Check() != nil {
			t.Fatalf("accepted %v", p)
		}
	})
}

// FuzzParseUIToken: no input makes the UI token parser panic, a token it
// accepts has a known kind and a valid name, and none but the CA's own
// verifies.
func FuzzParseUIToken(f *testing.F) {
	ca, err := CreateCA(f.TempDir(), "ns-fuzz")
	if err != nil {
		f.Fatal(err)
	}
	for _, k := range []UIKind{UILink, UISession} {
		tok, _, _ := ca.NewUIToken(k, "root", time.Minute)
		f.Add(tok)
	}
	f.Add("cairnui1.")
	f.Add("cairnui1.AQE")
	f.Add("cairnui1." + b64(append([]byte{1, 1}, make([]byte, 16+8+1+32)...)))
	f.Fuzz(func(t *testing.T, s string) {
		ut, body, mac, err := ParseUIToken(s)
		if err != nil {
			return
		}
		if ut.Kind != UILink && ut.Kind != UISession || ValidName(ut.Name) != nil || len(mac) != 32 || len(body) == 0 {
			t.Fatalf("accepted %+v", ut)
		}
		_, _ = ca.VerifyUIToken(s, ut.Kind, time.Now())
	})
}

// FuzzParseDelegationToken: no input makes the delegation token parser
// panic, a token it accepts names a valid owner and renewer, and only
// tokens this CA signed verify.
func FuzzParseDelegationToken(f *testing.F) {
	ca, err := CreateCA(f.TempDir(), "ns-fuzz")
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	tok, _, err := ca.SignDelegationToken(DelegationToken{KeyID: DelegationKeyID, Seq: 7, Issued: now, MaxDate: now.Add(time.Hour), Owner: "alice", Renewer: "bob"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add("cairndt1.")
	f.Add("cairndt1.AQ")
	f.Fuzz(func(t *testing.T, s string) {
		dt, _, _, err := ParseDelegationToken(s)
		if err != nil {
			return
		}
		if ValidName(dt.Owner) != nil || ValidName(dt.Renewer) != nil {
			t.Fatalf("accepted %+v", dt)
		}
		if v, err := ca.VerifyDelegationToken(s); err == nil && s != tok {
			t.Fatalf("verified a token this CA did not sign: %q %+v", s, v)
		}
	})
}
