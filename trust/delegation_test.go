package trust

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestDelegationTokenRoundTrip: a signed token parses back to what was
// signed and verifies under its CA only; a changed byte or another CA's
// signature is forged, a bad name or a truncated token malformed.
func TestDelegationTokenRoundTrip(t *testing.T) {
	ca, err := CreateCA(t.TempDir(), "ns-a")
	if err != nil {
		t.Fatal(err)
	}
	other, err := CreateCA(t.TempDir(), "ns-b")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	want := DelegationToken{KeyID: DelegationKeyID, Seq: 42, Issued: now, MaxDate: now.Add(time.Hour), Owner: "alice", Renewer: "bob"}
	tok, signed, err := ca.SignDelegationToken(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ca.VerifyDelegationToken(tok)
	if err != nil || got != signed || got.Seq != 42 || got.Owner != "alice" || got.Renewer != "bob" || got.Issued.UnixMilli() != now.UnixMilli() {
		t.Fatalf("verify: %+v, %v; signed %+v", got, err, signed)
	}
	if _, err := other.VerifyDelegationToken(tok); !errors.Is(err, ErrDelegationForged) {
		t.Fatalf("another CA verified it: %v", err)
	}
	b := []byte(tok)
	b[len(b)-10] ^= 1
	if _, err := ca.VerifyDelegationToken(string(b)); err == nil {
		t.Fatal("a changed token verified")
	}
	if _, err := ca.VerifyDelegationToken(tok[:len(tok)-50]); !errors.Is(err, ErrDelegationMalformed) {
		t.Fatalf("a truncated token: %v", err)
	}
	if _, err := ca.VerifyDelegationToken(strings.Repeat("a", MaxDelegationTokenLen+1)); !errors.Is(err, ErrDelegationMalformed) {
		t.Fatalf("a long token: %v", err)
	}
	if _, _, err := ca.SignDelegationToken(DelegationToken{Issued: now, MaxDate: now.Add(time.Hour), Owner: "a/b", Renewer: "bob"}); err == nil {
		t.Fatal("signed an owner with a slash")
	}
}
