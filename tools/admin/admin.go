// Package admin is `cairn admin`, the equivalent of `hdfs dfsadmin`: a
// report of the cluster in dfsadmin's layout (-report), its racks
// (-printTopology), a checkpoint of the namespace written by metad while
// it serves (-checkpoint), metad's safe mode (-safemode
// get|enter|leave|wait), join tokens for new blockds, mounts and users
// (-join-token), one-time sign-in links for metad's HTTP UI (-ui-link),
// decommissioning (-decommission NODE, -recommission NODE,
// -refreshNodes) and maintenance (-maintenance NODE [-expire DURATION]). Each but -safemode get needs an admin certificate.
package admin

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"cairn"
	"cairn/client"
	"cairn/internal/daemon"
	"cairn/trust"
)

// WriteReport prints the cluster as `hdfs dfsadmin -report` does: the
// totals, then each live and each dead blockd.
func WriteReport(w io.Writer, st cairn.FsStats, rep cairn.ClusterReport) {
	present := st.Used + st.Remaining
	fmt.Fprintf(w, "Configured Capacity: %s\n", bytesDesc(st.Capacity))
	fmt.Fprintf(w, "Present Capacity: %s\n", bytesDesc(present))
	fmt.Fprintf(w, "DFS Remaining: %s\n", bytesDesc(st.Remaining))
	fmt.Fprintf(w, "DFS Used: %s\n", bytesDesc(st.Used))
	fmt.Fprintf(w, "DFS Used%%: %s\n", percent(st.Used, present))
	fmt.Fprintf(w, "Replicated Blocks:\n")
	fmt.Fprintf(w, "\tTotal blocks: %d\n", st.Blocks)
	fmt.Fprintf(w, "Namespace:\n")
	fmt.Fprintf(w, "\tNamespace ID: %s\n", rep.NamespaceID)
	fmt.Fprintf(w, "\tFiles and directories: %d\n", st.Files)
	fmt.Fprintf(w, "\tDefault replication: %d\n", rep.DefaultReplication)
	fmt.Fprintf(w, "\n-------------------------------------------------\n")
	var live, dead []cairn.NodeReport
	for _, n := range rep.Nodes {
		if n.Live {
			live = append(live, n)
		} else {
			dead = append(dead, n)
		}
	}
	for _, group := range []struct {
		title string
		nodes []cairn.NodeReport
	}{{"Live", live}, {"Dead", dead}} {
		if group.title == "Dead" && len(group.nodes) == 0 {
			continue
		}
		sort.Slice(group.nodes, func(i, j int) bool { return group.nodes[i].DataAddr < group.nodes[j].DataAddr })
		fmt.Fprintf(w, "%s datanodes (%d):\n\n", group.title, len(group.nodes))
		for _, n := range group.nodes {
			writeNode(w, n)
		}
	}
}

// WriteTopology prints the racks as `hdfs dfsadmin -printTopology` does:
// each rack ("Rack: /r1"), then each of its blockds, live or dead,
// "   IP:port (hostname)" (the hostname when the address has one), and a
// blank line; racks and blockds in order. hostname looks an IP address up
// ("" when it has no name).
func WriteTopology(w io.Writer, rep cairn.ClusterReport, hostname func(ip string) string) {
	racks := map[string][]string{}
	for _, n := range rep.Nodes {
		racks[n.Rack] = append(racks[n.Rack], n.DataAddr)
	}
	names := make([]string, 0, len(racks))
	for r := range racks {
		names = append(names, r)
	}
	sort.Strings(names)
	for _, r := range names {
		fmt.Fprintf(w, "Rack: %s\n", r)
		addrs := racks[r]
		sort.Strings(addrs)
		for _, a := range addrs {
			fmt.Fprintf(w, "   %s", a)
			if host, _, err := net.SplitHostPort(a); err == nil {
				if name := hostname(host); name != "" {
					fmt.Fprintf(w, " (%s)", name)
				}
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
	}
}

// lookupHostname is the name of ip by reverse lookup, "" when it has none
// or the lookup takes over a second.
func lookupHostname(ctx context.Context) func(string) string {
	return func(ip string) string {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		names, err := net.DefaultResolver.LookupAddr(ctx, ip)
		if err != nil || len(names) == 0 {
			return ""
		}
		return strings.TrimSuffix(names[0], ".")
	}
}

// contactLayout is Java's Date.toString, as dfsadmin prints times.
const contactLayout = "Mon Jan 02 15:04:05 MST 2006"

func writeNode(w io.Writer, n cairn.NodeReport) {
	nonDFS := max(n.Capacity-n.Used-n.Remaining, 0)
	fmt.Fprintf(w, "Name: %s (%s)\n", n.DataAddr, n.StorageID)
	fmt.Fprintf(w, "Rack: %s\n", n.Rack)
	fmt.Fprintf(w, "HTTP: %s\n", n.HTTPAddr)
	state := n.AdminState
	if state == "" {
		state = cairn.AdminNormal
	}
	fmt.Fprintf(w, "Decommission Status : %s\n", state)
	if !n.MaintenanceExpires.IsZero() {
		fmt.Fprintf(w, "Maintenance expires: %s\n", n.MaintenanceExpires.Format(contactLayout))
	}
	fmt.Fprintf(w, "Configured Capacity: %s\n", bytesDesc(n.Capacity))
	fmt.Fprintf(w, "DFS Used: %s\n", bytesDesc(n.Used))
	fmt.Fprintf(w, "Non DFS Used: %s\n", bytesDesc(nonDFS))
	fmt.Fprintf(w, "DFS Remaining: %s\n", bytesDesc(n.Remaining))
	fmt.Fprintf(w, "DFS Used%%: %s\n", percent(n.Used, n.Capacity))
	fmt.Fprintf(w, "DFS Remaining%%: %s\n", percent(n.Remaining, n.Capacity))
	fmt.Fprintf(w, "Last contact: %s\n", n.LastHeartbeat.Format(contactLayout))
	fmt.Fprintf(w, "Volume Failures: %d\n", len(n.FailedVolumes))
	for _, v := range n.FailedVolumes {
		fmt.Fprintf(w, "Failed Volume: %s\n", v)
	}
	fmt.Fprintf(w, "Num of Blocks: %d\n\n\n", n.Blocks)
}

// bytesDesc writes n as dfsadmin does: "17220509696 (16.04 GB)", "65536
// (64 KB)", "0 (0 B)".
func bytesDesc(n int64) string {
	units := []string{"B", "KB", "MB", "GB", "TB", "PB", "EB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	s := strconv.FormatFloat(v, 'f', 2, 64)
	if v == float64(int64(v)) {
		s = strconv.FormatInt(int64(v), 10)
	}
	return fmt.Sprintf("%d (%s %s)", n, s, units[i])
}

func percent(n, of int64) string {
	if of <= 0 {
		return "0.00%"
	}
	return fmt.Sprintf("%.2f%%", 100*float64(n)/float64(of))
}

// Main is `cairn admin`.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("cairn admin", flag.ContinueOnError)
	fl.SetOutput(stderr)
	metad := fl.String("metad", "", "metad address HOST:PORT (default $CAIRN_METAD, else "+cairn.DefaultMetadAddr+")")
	report := fl.Bool("report", false, "report the cluster's capacity and every blockd, in hdfs dfsadmin's layout")
	topology := fl.Bool("printTopology", false, "print the racks and the blockds on each, in hdfs dfsadmin's layout")
	safemode := fl.String("safemode", "", "`get`, `enter`, `leave` or `wait` (until off) metad's safe mode, in which it is read-only")
	ckpt := fl.String("checkpoint", "", "make metad write a checkpoint of the namespace to this new `DIR` under its --checkpoint-dir (a relative DIR is taken from there)")
	joinTok := fl.Bool("join-token", false, "print a single-use join token for a new node or user (see -role, -name, -ttl)")
	role := fl.String("role", "blockd", "with -join-token: blockd, mount, user NAME, admin NAME, or metad HOST:PORT (a new member of the metad group)")
	name := fl.String("name", "", "with -join-token: the user or admin name, or the new metad member's address (also as an argument after -role)")
	ttl := fl.Duration("ttl", trust.DefaultJoinTTL, "with -join-token: how long the token lasts (with -ui-link: the link, default "+trust.DefaultUILinkTTL.String()+")")
	uiLink := fl.Bool("ui-link", false, "print a one-time sign-in link for metad's HTTP UI: opened in a browser, it signs in as this admin (see -ttl)")
	dt := fl.Bool("delegation-token", false, "print a delegation token naming you, for metad's HTTP port (?delegation=TOKEN or Authorization: Bearer TOKEN; see -renewer)")
	renewer := fl.String("renewer", "", "with -delegation-token: the user who may renew the token (default: you)")
	renewDT := fl.String("renew-delegation-token", "", "renew this delegation `TOKEN` (its renewer only) and print its new expiry")
	cancelDT := fl.String("cancel-delegation-token", "", "cancel this delegation `TOKEN` (its owner or renewer)")
	decom := fl.String("decommission", "", "decommission the blockd `NODE` (its storage ID or data address HOST:PORT): its replicas are copied elsewhere, then it is Decommissioned")
	recom := fl.String("recommission", "", "put the blockd `NODE` back in service (out of decommissioning or maintenance)")
	maint := fl.String("maintenance", "", "put the blockd `NODE` in maintenance: only the blocks that would keep fewer than metad's --maintenance-min-replication live replicas elsewhere are copied, then it is In maintenance and may be switched off without its replicas being copied elsewhere (see -expire)")
	expire := fl.Duration("expire", 0, "with -maintenance: end the maintenance by itself after this long (default: at -recommission only)")
	members := fl.Bool("metad-members", false, "print the members of the metad group (--peers), as the metad answering sees them: address, Raft address, voter, leader")
	addMetad := fl.String("add-metad", "", "add the metad at RPC address `HOST:PORT` to the group (its Raft transport at PORT+1); it catches up from the leader's log or a snapshot")
	removeMetad := fl.String("remove-metad", "", "remove the metad at RPC address `HOST:PORT` from the group")
	refresh := fl.Bool("refreshNodes", false, "make metad read its --hosts-exclude file again and decommission (or put back in service) the blockds it names")
	timeout := fl.Duration("timeout", 5*time.Minute, "give up after this long")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cairn admin [--metad HOST:PORT] -report | -printTopology | -checkpoint DIR | -safemode get|enter|leave|wait | -join-token [-role blockd|mount|user NAME|admin NAME|metad HOST:PORT] [-ttl 1h] | -ui-link [-ttl 5m] | -decommission NODE | -maintenance NODE [-expire 4h] | -recommission NODE | -refreshNodes | -metad-members | -add-metad HOST:PORT | -remove-metad HOST:PORT | -delegation-token [-renewer NAME] | -renew-delegation-token TOKEN | -cancel-delegation-token TOKEN\n\nAdministers the cluster, as hdfs dfsadmin does.\n\n")
		fl.PrintDefaults()
	}
	pos, code, ok := daemon.ParseFlags(fl, args, -1, stderr)
	if !ok {
		return code
	}
	if *name == "" && len(pos) == 1 && *joinTok {
		*name, pos = pos[0], nil
	}
	if len(pos) > 0 {
		return daemon.Usage(stderr, "cairn admin", fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	if n := countTrue(*report, *topology, *ckpt != "", *safemode != "", *joinTok, *uiLink, *dt, *renewDT != "", *cancelDT != "", *decom != "", *recom != "", *maint != "", *refresh, *members, *addMetad != "", *removeMetad != ""); n != 1 {
		return daemon.Usage(stderr, "cairn admin", "give one of -report, -printTopology, -checkpoint DIR, -safemode ACTION, -join-token, -ui-link, "+
			"-delegation-token, -renew-delegation-token TOKEN, -cancel-delegation-token TOKEN, -decommission NODE, -maintenance NODE, -recommission NODE, -refreshNodes, -metad-members, -add-metad HOST:PORT and -remove-metad HOST:PORT")
	}
	if *expire != 0 && (*maint == "" || *expire < 0) {
		return daemon.Usage(stderr, "cairn admin", "-expire takes a positive duration, with -maintenance NODE only")
	}
	if *uiLink && !ttlSet(fl) {
		*ttl = trust.DefaultUILinkTTL
	}
	action, waitOff := cairn.SafeModeGet, false
	switch *safemode {
	case "", "get":
	case "enter":
		action = cairn.SafeModeEnter
	case "leave":
		action = cairn.SafeModeLeave
	case "wait":
		waitOff = true
	default:
		return daemon.Usage(stderr, "cairn admin", fmt.Sprintf("-safemode %q: give get, enter, leave or wait", *safemode))
	}
	c, err := client.Dial(client.MetadAddr(*metad), client.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "cairn admin: %v\n", err)
		return 1
	}
	defer c.Close()
	// The client asserts this process's user and groups (simple mode).
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	switch {
	case *report:
		err = runReport(ctx, c, stdout)
	case *topology:
		var rep cairn.ClusterReport
		if rep, err = c.NS.Report(ctx); err == nil {
			WriteTopology(stdout, rep, lookupHostname(ctx))
		}
	case *ckpt != "":
		err = runCheckpoint(ctx, c, *ckpt, stdout)
	case *joinTok:
		err = runJoinToken(ctx, c, trust.Role(*role), *name, *ttl, stdout)
	case *uiLink:
		err = runUILink(ctx, c, client.MetadAddr(*metad), *ttl, stdout)
	case *dt:
		err = runDelegationToken(ctx, c, *renewer, stdout)
	case *renewDT != "":
		err = runRenewDelegationToken(ctx, c, *renewDT, stdout)
	case *cancelDT != "":
		err = c.Delegations().CancelDelegationToken(ctx, strings.TrimSpace(*cancelDT))
	case *decom != "":
		err = runNodeAdmin(ctx, c, *decom, cairn.NodeDecommission, 0, stdout)
	case *maint != "":
		err = runNodeAdmin(ctx, c, *maint, cairn.NodeMaintenance, *expire, stdout)
	case *recom != "":
		err = runNodeAdmin(ctx, c, *recom, cairn.NodeRecommission, 0, stdout)
	case *refresh:
		err = runRefreshNodes(ctx, c, stdout)
	case *members:
		err = runMetadMembers(ctx, c, stdout)
	case *addMetad != "":
		if err = c.Group().AddMetad(ctx, *addMetad); err == nil {
			fmt.Fprintf(stdout, "Added metad %s to the group\n", *addMetad)
		}
	case *removeMetad != "":
		if err = c.Group().RemoveMetad(ctx, *removeMetad); err == nil {
			fmt.Fprintf(stdout, "Removed metad %s from the group\n", *removeMetad)
		}
	default:
		err = runSafeMode(ctx, c, action, waitOff, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "cairn admin: %v\n", err)
		if (errors.Is(err, cairn.ErrPermission) || errors.Is(err, cairn.ErrAccess)) && strings.Contains(err.Error(), "certificate") {
			fmt.Fprintf(stderr, "(admin operations need an admin certificate: cairn cert issue --ca METAD-DATA/trust --role admin --name NAME --out ~/.cairn/certs on metad's machine)\n")
		}
		return 1
	}
	return 0
}

func countTrue(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func runReport(ctx context.Context, c *client.Client, w io.Writer) error {
	rep, err := c.NS.Report(ctx)
	if err != nil {
		return err
	}
	st, err := c.NS.Statfs(ctx)
	if err != nil {
		return err
	}
	WriteReport(w, st, rep)
	return nil
}

func runCheckpoint(ctx context.Context, c *client.Client, dir string, w io.Writer) error {
	start := time.Now()
	if err := c.NS.Checkpoint(ctx, dir); err != nil {
		return err
	}
	fmt.Fprintf(w, "Checkpoint written to %s on metad's machine in %v\n", dir, time.Since(start).Round(time.Millisecond))
	return nil
}

func runJoinToken(ctx context.Context, c *client.Client, role trust.Role, name string, ttl time.Duration, w io.Writer) error {
	tok, _, err := c.Trust().IssueJoinToken(ctx, role, name, ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, tok)
	return nil
}

// runDelegationToken prints a delegation token naming this command's
// user, and a line saying until when it works.
func runDelegationToken(ctx context.Context, c *client.Client, renewer string, w io.Writer) error {
	tok, exp, maxDate, err := c.Delegations().GetDelegationToken(ctx, renewer)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, tok)
	fmt.Fprintf(w, "(works until %s unless renewed; never after %s)\n", exp.Format(time.RFC3339), maxDate.Format(time.RFC3339))
	return nil
}

// runRenewDelegationToken renews tok and prints its new expiry.
func runRenewDelegationToken(ctx context.Context, c *client.Client, tok string, w io.Writer) error {
	exp, err := c.Delegations().RenewDelegationToken(ctx, strings.TrimSpace(tok))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "renewed until %s\n", exp.Format(time.RFC3339))
	return nil
}

// runUILink prints a sign-in link to metad's HTTP port: its bound
// address, with the host this command reached metad at when metad is
// bound to every interface.
func runUILink(ctx context.Context, c *client.Client, metad string, ttl time.Duration, w io.Writer) error {
	tok, exp, addr, err := c.Trust().IssueUILink(ctx, ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, UILinkURL(metad, addr, tok))
	fmt.Fprintf(w, "(works once, until %s)\n", exp.Format(time.RFC3339))
	return nil
}

// UILinkURL is the sign-in link for the token tok of a metad reached at
// metad whose HTTP port is bound to httpAddr.
func UILinkURL(metad, httpAddr, tok string) string {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return "https://" + httpAddr + trust.UILoginPath + "?token=" + url.QueryEscape(tok)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if mh, _, err := net.SplitHostPort(metad); err == nil {
			host = mh
		}
	}
	u := url.URL{Scheme: "https", Host: net.JoinHostPort(host, port), Path: trust.UILoginPath, RawQuery: url.Values{"token": {tok}}.Encode()}
	return u.String()
}

func ttlSet(fl *flag.FlagSet) bool {
	set := false
	fl.Visit(func(f *flag.Flag) { set = set || f.Name == "ttl" })
	return set
}

// runSafeMode prints metad's safe mode as `hdfs dfsadmin -safemode` does
// ("Safe mode is ON"/"OFF"), with metad's reason on a second line while
// it is on; wait polls until it is off.
func runSafeMode(ctx context.Context, c *client.Client, action cairn.SafeModeAction, waitOff bool, w io.Writer) error {
	for {
		st, err := c.NS.SafeMode(ctx, action)
		if err != nil {
			return err
		}
		if !st.On {
			fmt.Fprintln(w, "Safe mode is OFF")
			return nil
		}
		if !waitOff {
			fmt.Fprintln(w, "Safe mode is ON")
			fmt.Fprintln(w, st.Message)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("metad is still in safe mode: %s: %w", st.Message, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// runNodeAdmin decommissions, puts in maintenance or recommissions a
// blockd and prints its state: "Decommission Status : Decommission in
// progress" for NODE, and when a maintenance expires.
func runNodeAdmin(ctx context.Context, c *client.Client, node string, action cairn.NodeAdminAction, expire time.Duration, w io.Writer) error {
	n, err := c.NS.SetNodeAdmin(ctx, node, action, expire)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s (%s): Decommission Status : %s\n", n.DataAddr, n.StorageID, n.AdminState)
	if !n.MaintenanceExpires.IsZero() {
		fmt.Fprintf(w, "Maintenance expires: %s\n", n.MaintenanceExpires.Format(contactLayout))
	}
	return nil
}

// runRefreshNodes prints "Refresh nodes successful", as dfsadmin does, and
// each blockd whose state changed.
func runRefreshNodes(ctx context.Context, c *client.Client, w io.Writer) error {
	changed, err := c.NS.RefreshNodes(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "Refresh nodes successful")
	for _, n := range changed {
		fmt.Fprintf(w, "%s (%s): Decommission Status : %s\n", n.DataAddr, n.StorageID, n.AdminState)
	}
	return nil
}
