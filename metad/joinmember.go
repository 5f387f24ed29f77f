package metad

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"cairn"
	"cairn/internal/versionfile"
	"cairn/rpc"
	"cairn/trust"
)

// A new member of a metad group joins with a join token of role metad
// naming its address (cairn admin -join-token --role metad --name
// HOST:PORT): started on an empty data directory with --join LIST
// --join-token TOKEN, it asks the group's leader for what every member
// holds (JoinMetad: the cluster CA's keys, the VERSION fields, the
// revocation list), over TLS that checks the leader against the CA
// fingerprint in the token, writes them (fetchMemberKit), and then asks
// to be added (replica.join). Every member holds the CA's keys because
// whichever leads signs and checks everything the CA signs
// (docs/ARCHITECTURE.md, "Trust").

// joinKitTimeout bounds how long a new member looks for a leader to
// get its kit from (metad --join-token).
const joinKitTimeout = 2 * time.Minute

// JoinMetad hands the member a join token names what a member holds
// (rpc.TrustService), once per token, and only while that member is not
// in the group: a member that comes back wiped is removed first
// (cairn admin -remove-metad), so that it never votes in a term it voted
// in before it lost its log. A refused call changes nothing.
func (m *Metad) JoinMetad(ctx context.Context, token, member string) (rpc.MemberKit, error) {
	const op = "metad.JoinMetad"
	if m.ca == nil {
		return rpc.MemberKit{}, cairn.E(op, cairn.KindInvalid, "", "this metad runs --insecure: it has no CA; copy VERSION from a member to the new member's data directory")
	}
	if m.rep == nil {
		return rpc.MemberKit{}, cairn.E(op, cairn.KindInvalid, "", "this metad is not a member of a group (started without --peers): make it one with --convert --peers first")
	}
	jt, err := m.ca.VerifyJoinToken(token, m.clock.Now())
	switch {
	case errors.Is(err, trust.ErrTokenExpired):
		return rpc.MemberKit{}, cairn.E(op, cairn.KindPermission, "", fmt.Sprintf("%v: ask an admin for a new one (cairn admin -join-token --role metad --name %s)", err, member))
	case errors.Is(err, trust.ErrTokenForged):
		return rpc.MemberKit{}, cairn.E(op, cairn.KindPermission, "", "the join token is not signed by this cluster's CA")
	case err != nil:
		return rpc.MemberKit{}, cairn.E(op, cairn.KindInvalid, "", err.Error())
	}
	if jt.Role != trust.RoleMetad {
		return rpc.MemberKit{}, cairn.E(op, cairn.KindPermission, "", fmt.Sprintf("the join token is for a %s, not a metad: ask for one with cairn admin -join-token --role metad --name %s", jt.Role, member))
	}
	if jt.Name != member {
		return rpc.MemberKit{}, cairn.E(op, cairn.KindPermission, member, fmt.Sprintf("the join token is for member %s, not %s", jt.Name, member))
	}
	if in, err := m.rep.hasMember(member); err != nil {
		return rpc.MemberKit{}, &cairn.Error{Op: op, Kind: cairn.KindUnavailable, Err: err}
	} else if in {
		return rpc.MemberKit{}, cairn.E(op, cairn.KindPermission, "", fmt.Sprintf("%s is a member of the group already: to replace it (its data directory lost), remove it first: cairn admin -remove-metad %s", member, member))
	}
	kit, err := m.memberKit()
	if err != nil {
		return rpc.MemberKit{}, &cairn.Error{Op: op, Kind: cairn.KindIO, Err: err}
	}
	now := m.clock.Now()
	err = m.mutate(ctx, func(b *pebble.Batch) error {
		k := joinTokenKey(jt.ID)
		if _, err := m.st.get(k); err == nil {
			return cairn.E(op, cairn.KindPermission, "", fmt.Sprintf("join token %s was used already: a token works once; ask an admin for a new one", jt.IDString()))
		} else if !isNotFound(err) {
			return err
		}
		if err := pruneJoinTokens(m.st.db, b, now); err != nil {
			return err
		}
		return b.Set(k, u64(uint64(jt.Expiry.Unix())), nil)
	})
	if err != nil {
		return rpc.MemberKit{}, err
	}
	m.log.Info("a new metad group member got the cluster's keys", zap.String("member", member), zap.String("token", jt.IDString()))
	return kit, nil
}

// memberKit is what this member hands a new one.
func (m *Metad) memberKit() (rpc.MemberKit, error) {
	mat, err := m.ca.Material()
	if err != nil {
		return rpc.MemberKit{}, err
	}
	v, err := versionfile.Read(m.cfg.Dir)
	if err != nil {
		return rpc.MemberKit{}, err
	}
	rev, err := os.ReadFile(filepath.Join(m.ca.Dir, trust.RevokedFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return rpc.MemberKit{}, err
	}
	return rpc.MemberKit{CA: mat, Version: v, Revoked: rev}, nil
}

// hasMember reports whether id is in the group's latest configuration.
func (rep *replica) hasMember(id string) (bool, error) {
	cf := rep.r.GetConfiguration()
	if err := cf.Error(); err != nil {
		return false, err
	}
	for _, s := range cf.Configuration().Servers {
		if s.ID == raft.ServerID(id) {
			return true, nil
		}
	}
	return false, nil
}

// joinTargets are the members a new member asks to add it: those of
// --join, then the other members of --peers (a client given several
// follows the leader a follower names), comma-separated.
func joinTargets(rc RaftConfig) string {
	var out []string
	for _, a := range append(strings.Split(rc.Join, ","), rc.Peers...) {
		if a = strings.TrimSpace(a); a != "" && a != rc.Self && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return strings.Join(out, ",")
}

// fetchMemberKit readies dir, the data directory of a new member self,
// with a join token: when dir holds a member of the cluster the token is
// for already (a restart with the same flags), it does nothing; when it
// is empty, it gets the kit from the group at addrs and writes it, the
// CA first and VERSION last (a directory without VERSION is no member's,
// so a fetch cut short is done again with a new token). Anything else is
// refused, and nothing is written on a refusal.
func fetchMemberKit(ctx context.Context, log *zap.Logger, dir string, addrs []string, self, token string) error {
	jt, _, _, err := trust.ParseJoinToken(token)
	if err != nil {
		return fmt.Errorf("--join-token: %w", err)
	}
	if _, err := versionfile.Read(dir); err == nil {
		ca, err := trust.LoadCA(filepath.Join(dir, trust.CADir))
		if err != nil {
			return fmt.Errorf("--join-token: %s is formatted but holds no cluster CA: %w", dir, err)
		}
		if ca.Fingerprint() != jt.CAFingerprint() {
			return fmt.Errorf("--join-token: %s holds the data of another cluster (CA %s, the token's %s): empty it to join this one", dir, ca.Fingerprint(), jt.CAFingerprint())
		}
		log.Info("the data directory holds this cluster's member already: the join token is not used", zap.String("dir", dir))
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, d := range []string{storeDir, raftDir} {
		if _, err := os.Stat(filepath.Join(dir, d)); err == nil {
			return fmt.Errorf("--join-token: %s holds %s but no VERSION: a new member starts from an empty data directory", dir, d)
		}
	}
	kit, err := rpc.FetchMemberKit(ctx, addrs, token, self)
	if err != nil {
		return err
	}
	if err := checkKitVersion(kit.Version); err != nil {
		return fmt.Errorf("join the metad group: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("join the metad group: %w", err)
	}
	ca, err := trust.InstallCA(filepath.Join(dir, trust.CADir), jt.CAFingerprint(), kit.CA)
	if err != nil {
		return fmt.Errorf("join the metad group: %w", err)
	}
	if len(kit.Revoked) > 0 {
		if err := os.WriteFile(filepath.Join(ca.Dir, trust.RevokedFile), kit.Revoked, 0o644); err != nil {
			return fmt.Errorf("join the metad group: %w", err)
		}
	}
	if err := versionfile.Write(dir, kit.Version); err != nil {
		return fmt.Errorf("join the metad group: %w", err)
	}
	log.Info("joined the metad group's trust: the cluster CA and VERSION written", zap.String("dir", dir),
		zap.String("namespace_id", kit.Version["namespaceID"]), zap.String("ca_fingerprint", ca.Fingerprint()))
	return nil
}

// checkKitVersion checks the VERSION fields a new member was handed.
func checkKitVersion(v map[string]string) error {
	for k, val := range v {
		if k == "" || strings.ContainsAny(k, "=\n\r#") || strings.ContainsAny(val, "\n\r") {
			return fmt.Errorf("the group sent a malformed VERSION field %q", k)
		}
	}
	if v["namespaceID"] == "" {
		return errors.New("the group sent a VERSION without a namespaceID")
	}
	if lv, err := strconv.Atoi(v["layoutVersion"]); err != nil || lv > LayoutVersion {
		return fmt.Errorf("the group's layout version %q is not one this metad reads (at most %d): run the group's cairn", v["layoutVersion"], LayoutVersion)
	}
	return nil
}
