package admin

import (
	"context"
	"fmt"
	"io"

	"cairn/client"
)

// runMetadMembers prints the metad group as the member answering sees
// it: a line about that member, then one line per member, tab-separated:
// RPC address, Raft address, voter or nonvoter, leader or follower.
func runMetadMembers(ctx context.Context, c *client.Client, w io.Writer) error {
	g, err := c.Group().MetadMembers(ctx)
	if err != nil {
		return err
	}
	if !g.Replicated {
		fmt.Fprintln(w, "A single metad, not replicated (started without --peers)")
		return nil
	}
	fmt.Fprintf(w, "Answered by %s (%s), applied index %d, commit index %d\n", g.Self, g.State, g.AppliedIndex, g.CommitIndex)
	for _, m := range g.Members {
		suffrage, role := "nonvoter", "follower"
		if m.Voter {
			suffrage = "voter"
		}
		if m.Leader {
			role = "leader"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", m.ID, m.RaftAddr, suffrage, role)
	}
	return nil
}
