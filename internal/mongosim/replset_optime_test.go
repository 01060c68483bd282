package mongosim

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// A former primary's entries that the set never had are of an older term:
// they must not count toward the majority commit point, however late
// their timestamps, since the server compares OpTimes by term first.
// Counted, they let a write be acknowledged as majority-committed while
// only the new primary held it, and a later election rolled it back: a
// lost acknowledged write, which TestElectionSoak caught about once in
// 100 runs under load.
func TestCommitPointIgnoresDivergedEntries(t *testing.T) {
	rs, err := NewReplicaSet(3, nil)
	require.NoError(t, err)
	defer rs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = rs.WaitForPrimary(ctx)
	require.NoError(t, err)

	rs.mu.Lock()
	defer rs.mu.Unlock()
	p := rs.primary
	diverged, behind := rs.members[(p+1)%3], rs.members[(p+2)%3]
	diverged.member.paused, behind.member.paused = true, true
	rs.electLocked(p) // a new term; the others hold only the old one's entries

	// The diverged member holds an entry of the old term that nobody else
	// has, stamped after anything the primary will write.
	d := diverged.store
	d.mu.Lock()
	late := &oplogEntry{op: opNoop, term: rs.term - 1, ts: bson.Timestamp{T: d.clock.T + 100, I: 1}}
	d.oplog.append(late)
	d.mu.Unlock()

	st := rs.members[p].store
	st.mu.Lock()
	st.appendLocked(&oplogEntry{op: opNoop})
	written := st.lastPosLocked()
	st.mu.Unlock()

	rs.updateCommitLocked()
	require.True(t, rs.commit.less(written), "commit point %v moved to %v, which only the primary has", rs.commit, written)
}
