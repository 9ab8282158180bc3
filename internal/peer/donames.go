package peer

import (
	"context"
	"fmt"
	"sort"

	"github.com/edgevault/edgevault/internal/miniflare"
)

// DOName is one Durable Object instance found in a Miniflare state.
type DOName struct {
	HexID string
	Name  string // "" when neither __miniflare_do_name nor _meta doName has it
}

// ListDONames lists the instances of class (e.g. "DatabaseDO") with storage
// under a Miniflare root (<root>/v3/do/<worker>-<class>/<hex>.sqlite), in
// hex order, like the peer's list-do-names.sh. It reads the files the way
// edgevault's own discovery does (pkg/miniflare). For a peer, root is
// Peer.MiniflareRoot(); for the emulator, its StateDir.
func ListDONames(ctx context.Context, root, class string) ([]DOName, error) {
	insts, err := miniflare.List(ctx, root, class)
	if err != nil {
		return nil, fmt.Errorf("peer: list DO names: %w", err)
	}
	out := make([]DOName, 0, len(insts))
	for _, in := range insts {
		out = append(out, DOName{HexID: in.HexID, Name: in.Name})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].HexID < out[j].HexID })
	return out, nil
}
