package checkpoint

import (
	"cmp"
	"strings"

	"github.com/changestream-go/changestream"
)

// Compare orders two positions of the same stream: -1 if a comes before b,
// 0 if they are the same point, +1 if a comes after b. Positions are
// ordered by their cluster time, then by the token's _data string, whose
// hex KeyString servers from 4.2 on write so that byte order is stream
// order (events of one transaction share a cluster time and differ in
// what follows it). A token without a readable time or _data string sorts
// as equal to any other at the same time.
func Compare(a, b changestream.Position) int {
	if c := cmp.Or(cmp.Compare(a.ClusterTime.T, b.ClusterTime.T), cmp.Compare(a.ClusterTime.I, b.ClusterTime.I)); c != 0 {
		return c
	}
	da, okA := tokenData(a)
	db, okB := tokenData(b)
	if !okA || !okB {
		return 0
	}
	return strings.Compare(da, db)
}

// tokenData returns the token's _data string.
func tokenData(p changestream.Position) (string, bool) {
	if p.Token == nil {
		return "", false
	}
	v, err := p.Token.LookupErr("_data")
	if err != nil {
		return "", false
	}
	return v.StringValueOK()
}
