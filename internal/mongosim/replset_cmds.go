package mongosim

import (
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// The replica-set administration commands: replSetGetStatus (what
// mongosh's rs.status() shows), replSetStepDown and replSetFreeze.

// handleReplSetGetStatus reports every member as this member sees it.
func handleReplSetGetStatus(cc *cmdCtx) (bsoncore.Document, error) {
	if cc.db != "admin" {
		return nil, cmdErr(13, "replSetGetStatus may only be run against the admin database.")
	}
	now := time.Now()
	s := cc.s
	type row struct {
		name    string
		up      bool
		state   int32 // 1 PRIMARY, 2 SECONDARY, 8 DOWN
		optime  oplogPos
		started time.Time
	}
	var rows []row
	var term int64
	var commit oplogPos
	if m := s.member; m != nil {
		rs := m.rs
		rs.mu.Lock()
		term, commit = rs.term, rs.commit
		for i, ms := range rs.members {
			r := row{name: ms.addr, up: ms.member.up, state: 2, optime: rs.appliedLocked(i).pos, started: ms.started}
			if i == rs.primary {
				r.state = 1
			}
			if !r.up {
				r.state = 8
			}
			rows = append(rows, r)
		}
		rs.mu.Unlock()
	} else {
		st := s.store
		st.mu.Lock()
		term, commit = st.term, st.commit
		rows = []row{{name: s.addr, up: true, state: 1, optime: st.lastPosLocked(), started: s.started}}
		st.mu.Unlock()
	}
	stateStr := map[int32]string{1: "PRIMARY", 2: "SECONDARY", 8: "(not reachable/healthy)"}
	opTime := func(p oplogPos) bson.D { return bson.D{{Key: "ts", Value: p.ts}, {Key: "t", Value: term}} }
	members := bson.A{}
	var self row
	for i, r := range rows {
		health := 1.0
		if !r.up {
			health = 0
		}
		d := bson.D{{Key: "_id", Value: int32(i)}, {Key: "name", Value: r.name}, {Key: "health", Value: health},
			{Key: "state", Value: r.state}, {Key: "stateStr", Value: stateStr[r.state]}}
		if r.up {
			d = append(d, bson.E{Key: "uptime", Value: int32(now.Sub(r.started).Seconds())}, bson.E{Key: "optime", Value: opTime(r.optime)})
		}
		if r.name == s.addr {
			self = r
			d = append(d, bson.E{Key: "self", Value: true})
		}
		members = append(members, d)
	}
	return marshalDoc(bson.D{
		{Key: "set", Value: s.cfg.replSetName},
		{Key: "date", Value: now},
		{Key: "myState", Value: self.state},
		{Key: "term", Value: term},
		{Key: "heartbeatIntervalMillis", Value: int64(2000)},
		{Key: "optimes", Value: bson.D{{Key: "lastCommittedOpTime", Value: opTime(commit)}, {Key: "appliedOpTime", Value: opTime(self.optime)}, {Key: "durableOpTime", Value: opTime(self.optime)}}},
		{Key: "members", Value: members},
	})
}

// handleReplSetStepDown is replSetStepDown: {replSetStepDown: stepDownSecs,
// secondaryCatchUpPeriodSecs, force}.
func handleReplSetStepDown(cc *cmdCtx) (bsoncore.Document, error) {
	if cc.db != "admin" {
		return nil, cmdErr(13, "replSetStepDown may only be run against the admin database.")
	}
	m := cc.s.member
	if m == nil {
		return nil, notImplemented("replSetStepDown on a server started with NewServer; start a ReplicaSet")
	}
	secs, present, err := cc.int64Arg("replSetStepDown")
	if err != nil {
		return nil, err
	}
	o := StepDownOptions{StepDownPeriod: DefaultStepDownPeriod}
	if present {
		o.StepDownPeriod = time.Duration(secs) * time.Second
	}
	if catch, ok, err := cc.int64Arg("secondaryCatchUpPeriodSecs"); err != nil {
		return nil, err
	} else if ok {
		o.CatchUpPeriod = time.Duration(catch) * time.Second
		if catch == 0 {
			// Named and 0: no wait at all, where StepDownOptions' zero
			// value means the default.
			o.CatchUpPeriod = time.Nanosecond
		}
	}
	if o.Force, _, err = cc.boolArg("force"); err != nil {
		return nil, err
	}
	if err := m.rs.stepDown(cc.ctx, m.idx, o); err != nil {
		return nil, err
	}
	return nil, nil
}

// handleReplSetFreeze is replSetFreeze: {replSetFreeze: seconds}, 0 to
// unfreeze.
func handleReplSetFreeze(cc *cmdCtx) (bsoncore.Document, error) {
	if cc.db != "admin" {
		return nil, cmdErr(13, "replSetFreeze may only be run against the admin database.")
	}
	m := cc.s.member
	if m == nil {
		return nil, notImplemented("replSetFreeze on a server started with NewServer; start a ReplicaSet")
	}
	secs, _, err := cc.int64Arg("replSetFreeze")
	if err != nil {
		return nil, err
	}
	if err := m.rs.Freeze(m.idx, time.Duration(secs)*time.Second); err != nil {
		return nil, err
	}
	return nil, nil
}
