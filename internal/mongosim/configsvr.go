package mongosim

import (
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// asConfigServer makes a member its cluster's config server, as
// NewShardedCluster starts it (--configsvr). The cluster's metadata lives
// in the router's catalog (package mongos), not in this member's data, so
// the config database is not readable here: a command on it is refused
// with NotImplemented, pointing to mongos, where find reads it. What a
// config server member is used for directly, as a real one is by the
// drivers' test harnesses, works: hello, ping, appendOplogNote.
func asConfigServer(c *config) { c.configServer = true }

// refuseConfigDB refuses a command on the config database of a config
// server member.
func (s *Server) refuseConfigDB(cc *cmdCtx) error {
	if s.cfg.configServer && cc.db == "config" {
		return notImplemented("the config database on the config server member (the catalog stands in for it: read config.* through mongos)")
	}
	return nil
}

// handleAppendOplogNote writes a no-op entry carrying data to the oplog,
// which moves the member's cluster time on, as the server's does
// (src/mongo/db/commands/oplog_note.cpp): on the admin database, with a
// data document. maxClusterTime, which writes only if the cluster time
// is behind it, is refused.
func handleAppendOplogNote(cc *cmdCtx) (bsoncore.Document, error) {
	if cc.db != "admin" {
		return nil, cmdErr(13, "appendOplogNote may only be run against the admin database.")
	}
	if _, ok := cc.field("maxClusterTime"); ok {
		return nil, notImplemented("appendOplogNote with maxClusterTime")
	}
	v, ok := cc.field("data")
	if !ok {
		return nil, cmdErr(codeNoSuchKey, "Missing expected field \"data\"")
	}
	raw, isDoc := v.DocumentOK()
	if !isDoc {
		return nil, cmdErr(codeTypeMismatch, "\"data\" had the wrong type. Expected object, found %s", v.Type)
	}
	data, err := decodeDoc(raw)
	if err != nil {
		return nil, err
	}
	st := cc.s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	st.appendLocked(&oplogEntry{op: opNoop, opDesc: bson.D{{Key: "msg", Value: data}}})
	return nil, nil
}
