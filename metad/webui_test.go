package metad

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cairn"
	"cairn/trust"
	"cairn/webui"
)

// TestUIBlockHealth: the replication monitor's round counts the blocks
// the overview shows: none in trouble with every replica in place, one
// under-replicated when a holder dies, one with a corrupt replica when
// one is reported bad, one missing when every holder is dead.
func TestUIBlockHealth(t *testing.T) {
	clock := newFakeClock()
	m := openCfg(t, Config{Clock: clock, DeadAfter: time.Minute, Heartbeat: time.Second})
	nodes := registerNodes(t, m, 4)
	ctx := context.Background()
	src := uiSource{m: m, started: clock.Now()}
	health := func() webui.BlockHealth {
		t.Helper()
		st, err := src.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.Health
	}
	if h := health(); !h.Checked.IsZero() {
		t.Fatalf("before the first round: %+v, want nothing counted", h)
	}
	if _, err := m.Create(ctx, "/f", cairn.CreateOptions{Client: "c", Replication: 3, BlockSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	lb, err := m.AddBlock(ctx, cairn.WriterRef{Path: "/f", Client: "c"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := lb.Block
	b.Len = 1000
	for _, n := range lb.Locations {
		must(t, m.BlocksReceived(ctx, n.StorageID, finalized(b)))
	}
	must(t, m.Complete(ctx, cairn.WriterRef{Path: "/f", Client: "c"}, &b))
	must(t, m.checkReplication(true))
	if h := health(); h != (webui.BlockHealth{Checked: clock.Now()}) {
		t.Fatalf("every replica in place: %+v", h)
	}

	// One holder dies: under-replicated.
	holders := lb.Locations
	clock.Add(30 * time.Second)
	heartbeatAll(t, m, nodes, holders[0].StorageID)
	clock.Add(40 * time.Second)
	heartbeatAll(t, m, nodes, holders[0].StorageID)
	must(t, m.checkReplication(false))
	if h := health(); h.UnderReplicated != 1 || h.Missing != 0 || h.Corrupt != 0 || !h.Checked.Equal(clock.Now()) {
		t.Fatalf("a holder dead: %+v, want 1 under-replicated", h)
	}
	// A live replica reported bad: also counted as corrupt.
	must(t, m.BadReplicasFound(ctx, holders[1].StorageID, []cairn.BadReplica{{Block: b, StorageID: holders[1].StorageID, Reason: "checksum"}}))
	must(t, m.checkReplication(false))
	if h := health(); h.UnderReplicated != 1 || h.Corrupt != 1 || h.Missing != 0 {
		t.Fatalf("a holder dead, one replica bad: %+v, want 1 under-replicated, 1 corrupt", h)
	}
	// Every holder dead: missing.
	var others []cairn.Node
	for _, n := range nodes {
		if n.StorageID != holders[0].StorageID && n.StorageID != holders[1].StorageID && n.StorageID != holders[2].StorageID {
			others = append(others, n)
		}
	}
	for range 2 {
		clock.Add(40 * time.Second)
		heartbeatAll(t, m, others, "")
	}
	must(t, m.checkReplication(false))
	if h := health(); h.Missing != 1 || h.UnderReplicated != 0 {
		t.Fatalf("every holder dead: %+v, want 1 missing", h)
	}
	// The same dead holders in maintenance: not missing, as fsck says.
	for _, n := range holders {
		if _, err := m.SetNodeAdmin(ctx, n.StorageID, cairn.NodeMaintenance, 0); err != nil {
			t.Fatal(err)
		}
	}
	must(t, m.checkReplication(false))
	if h := health(); h.Missing != 0 || h.UnderReplicated != 0 {
		t.Fatalf("every holder dead and in maintenance: %+v, want nothing missing", h)
	}
}

// TestUIIdentity: the UI's namespace pages run as the request's
// credential: an admin sees everything, a user what its permissions
// allow, a mount's certificate and an insecure cluster's anonymous
// visitor (dr.who) only what everybody may see.
func TestUIIdentity(t *testing.T) {
	m := openCfg(t, Config{})
	alice := as("alice", "staff")
	must(t, m.Mkdir(context.Background(), "/home", 0o755))
	owner := "alice"
	if _, err := m.SetAttr(context.Background(), "/home", cairn.Attr{Owner: &owner}); err != nil {
		t.Fatal(err)
	}
	must(t, m.Mkdir(alice, "/home/private", 0o700))
	if _, err := m.Create(alice, "/home/private/secret.txt", cairn.CreateOptions{Client: "c", Closed: true}); err != nil {
		t.Fatal(err)
	}
	ui := webui.New(uiSource{m: m, started: time.Now()}, nil)
	for _, c := range []struct {
		who  string
		peer *trust.Peer
		want int
	}{
		{"admin", &trust.Peer{Role: trust.RoleAdmin, Name: "root-admin"}, http.StatusOK},
		{"alice", &trust.Peer{Role: trust.RoleUser, Name: "alice"}, http.StatusOK},
		{"bob", &trust.Peer{Role: trust.RoleUser, Name: "bob"}, http.StatusForbidden},
		{"a mount", &trust.Peer{Role: trust.RoleMount, Name: "host1"}, http.StatusForbidden},
		{"insecure", nil, http.StatusForbidden},
	} {
		r := httptest.NewRequest(http.MethodGet, "/browse?path=%2Fhome%2Fprivate", nil)
		if c.peer != nil {
			r = r.WithContext(trust.WithPeer(r.Context(), *c.peer))
		}
		rec := httptest.NewRecorder()
		ui.ServeHTTP(rec, r)
		body := rec.Body.String()
		if rec.Code != c.want {
			t.Errorf("%s lists /home/private: %d, want %d\n%s", c.who, rec.Code, c.want, body)
		}
		if shown := strings.Contains(body, "secret.txt"); shown != (c.want == http.StatusOK) {
			t.Errorf("%s: secret.txt shown %v", c.who, shown)
		}
		if c.who == "insecure" && !strings.Contains(body, "user=dr.who") {
			t.Errorf("insecure: the refusal does not name dr.who:\n%s", body)
		}
	}
}
