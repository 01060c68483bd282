package mongosim

import (
	"encoding/binary"
	"strconv"
	"strings"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/wire"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// handleHello answers hello and isMaster as the server's member of its
// replica set reports itself (a Server on its own is the primary of a
// one-member set). An awaitable hello (topologyVersion with
// maxAwaitTimeMS) waits for the topology to change, as on the server;
// compression is left out so that OP_COMPRESSED never arrives.
func handleHello(cc *cmdCtx) (bsoncore.Document, error) {
	if client, ok, err := cc.docArg("client"); err == nil && ok {
		if v, err := client.LookupErr("application", "name"); err == nil {
			if name, ok := v.StringValueOK(); ok {
				cc.conn.setAppName(name)
			}
		}
	}
	seen, maxAwait, await, err := awaitArgs(cc)
	if err != nil {
		return nil, err
	}
	var wait *topologyVersion
	if await {
		wait = &seen
	}
	doc, _ := cc.s.answerHello(cc, wait, maxAwait)
	if doc == nil {
		return nil, errCloseConnection
	}
	return doc, nil
}

// answerHello builds hello's answer and returns it with the
// topologyVersion it reports. With seen set, it first waits until the
// topologyVersion differs from seen or maxAwait has passed; a wait cut
// short by the server shutting down or the connection closing returns no
// answer (nil), since a server going away sends none that says it is
// still primary. Answering then made a driver that had just marked the
// closed server Unknown take it back as primary.
func (s *Server) answerHello(cc *cmdCtx, seen *topologyVersion, maxAwait time.Duration) (bsoncore.Document, topologyVersion) {
	if seen != nil {
		s.topo.awaitChange(cc.ctx, *seen, maxAwait)
		if cc.ctx.Err() != nil {
			return nil, *seen
		}
	}
	tv, _ := s.topo.current()
	view := s.memberView()
	dst := make([]byte, 0, 512)
	idx, dst := bsoncore.AppendDocumentStart(dst)
	if cc.name == "hello" {
		dst = bsoncore.AppendBooleanElement(dst, "isWritablePrimary", view.primary)
	} else {
		dst = bsoncore.AppendBooleanElement(dst, "ismaster", view.primary)
	}
	dst = appendTopologyVersion(dst, tv)
	dst = bsoncore.AppendBooleanElement(dst, "helloOk", true)
	if !s.cfg.standalone {
		dst = appendReplSetFields(dst, s, view)
	}
	dst = bsoncore.AppendInt32Element(dst, "maxBsonObjectSize", wire.MaxBSONObjectSize)
	dst = bsoncore.AppendInt32Element(dst, "maxMessageSizeBytes", wire.MaxMessageSizeBytes)
	dst = bsoncore.AppendInt32Element(dst, "maxWriteBatchSize", wire.MaxWriteBatchSize)
	dst = bsoncore.AppendDateTimeElement(dst, "localTime", time.Now().UnixMilli())
	dst = bsoncore.AppendInt32Element(dst, "logicalSessionTimeoutMinutes", 30)
	dst = bsoncore.AppendInt64Element(dst, "connectionId", cc.conn.id)
	dst = bsoncore.AppendInt32Element(dst, "minWireVersion", 0)
	dst = bsoncore.AppendInt32Element(dst, "maxWireVersion", MaxWireVersion)
	dst = bsoncore.AppendBooleanElement(dst, "readOnly", false)
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst, tv
}

// appendReplSetFields appends what a replica-set member's hello says about
// its set, which a standalone leaves out.
func appendReplSetFields(dst []byte, s *Server, v memberView) []byte {
	dst = bsoncore.AppendStringElement(dst, "setName", s.cfg.replSetName)
	dst = bsoncore.AppendInt32Element(dst, "setVersion", 1)
	if s.cfg.configServer {
		// A config server says so (repl/hello/hello_response.cpp).
		dst = bsoncore.AppendInt32Element(dst, "configsvr", 2)
	}
	hosts := make([]bsoncore.Value, len(v.hosts))
	for i, h := range v.hosts {
		hosts[i] = bsoncore.Value{Type: bsoncore.TypeString, Data: bsoncore.AppendString(nil, h)}
	}
	dst = bsoncore.BuildArrayElement(dst, "hosts", hosts...)
	if v.primaryHost != "" {
		dst = bsoncore.AppendStringElement(dst, "primary", v.primaryHost)
	}
	dst = bsoncore.AppendStringElement(dst, "me", s.addr)
	dst = bsoncore.AppendBooleanElement(dst, "secondary", !v.primary)
	if v.primary {
		dst = bsoncore.AppendObjectIDElement(dst, "electionId", electionID(v.term))
	}
	st := s.store
	st.mu.Lock()
	last, commit := st.lastEntryLocked(), st.commit
	st.mu.Unlock()
	idx, dst := bsoncore.AppendDocumentElementStart(dst, "lastWrite")
	dst = appendOpTime(dst, "opTime", last.ts, last.term)
	dst = bsoncore.AppendDateTimeElement(dst, "lastWriteDate", last.wall.UnixMilli())
	dst = appendOpTime(dst, "majorityOpTime", commit.ts, v.term)
	dst = bsoncore.AppendDateTimeElement(dst, "majorityWriteDate", int64(commit.ts.T)*1000)
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst
}

func appendOpTime(dst []byte, key string, ts bson.Timestamp, term int64) []byte {
	idx, dst := bsoncore.AppendDocumentElementStart(dst, key)
	dst = bsoncore.AppendTimestampElement(dst, "ts", ts.T, ts.I)
	dst = bsoncore.AppendInt64Element(dst, "t", term)
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst
}

// electionID is the electionId a primary reports for its term: 0x7fffffff
// then the term, big-endian (the server's OID::fromTerm), so that a newer
// term's id compares greater.
func electionID(term int64) bson.ObjectID {
	var id bson.ObjectID
	binary.BigEndian.PutUint32(id[:4], 0x7fffffff)
	binary.BigEndian.PutUint64(id[4:], uint64(term))
	return id
}

// memberView is what hello reports of the server's place in its set.
type memberView struct {
	primary     bool
	primaryHost string
	hosts       []string
	term        int64
}

func (s *Server) memberView() memberView {
	m := s.member
	if m == nil {
		s.store.mu.Lock()
		term := s.store.term
		s.store.mu.Unlock()
		return memberView{primary: true, primaryHost: s.addr, hosts: []string{s.addr}, term: term}
	}
	rs := m.rs
	rs.mu.Lock()
	defer rs.mu.Unlock()
	v := memberView{primary: rs.primary == m.idx, term: rs.term}
	for _, ms := range rs.members {
		v.hosts = append(v.hosts, ms.addr)
	}
	if rs.primary >= 0 {
		v.primaryHost = rs.members[rs.primary].addr
	}
	return v
}

// handleBuildInfo reports ServerVersion, consistent with MaxWireVersion.
func handleBuildInfo(*cmdCtx) (bsoncore.Document, error) {
	parts := strings.Split(ServerVersion, ".")
	vals := make([]bsoncore.Value, 0, 4)
	for _, p := range parts {
		n, _ := strconv.Atoi(p)
		vals = append(vals, bsoncore.Value{Type: bsoncore.TypeInt32, Data: bsoncore.AppendInt32(nil, int32(n))})
	}
	vals = append(vals, bsoncore.Value{Type: bsoncore.TypeInt32, Data: bsoncore.AppendInt32(nil, 0)})
	var dst []byte
	idx, dst := bsoncore.AppendDocumentStart(dst)
	dst = bsoncore.AppendStringElement(dst, "version", ServerVersion)
	dst = bsoncore.AppendStringElement(dst, "gitVersion", "mongosim")
	dst = bsoncore.BuildArrayElement(dst, "versionArray", vals...)
	dst = bsoncore.AppendInt32Element(dst, "bits", 64)
	dst = bsoncore.AppendBooleanElement(dst, "debug", false)
	dst = bsoncore.AppendInt32Element(dst, "maxBsonObjectSize", wire.MaxBSONObjectSize)
	dst = bsoncore.BuildArrayElement(dst, "storageEngines", bsoncore.Value{Type: bsoncore.TypeString, Data: bsoncore.AppendString(nil, "inMemory")})
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst, nil
}

// handleGetParameter answers the parameters test tooling asks for.
func handleGetParameter(cc *cmdCtx) (bsoncore.Document, error) {
	params := cc.s.parameters()
	all := false
	if v, ok := cc.field("getParameter"); ok {
		s, isStr := v.StringValueOK()
		all = isStr && s == "*"
	}
	var dst []byte
	idx, dst := bsoncore.AppendDocumentStart(dst)
	found := 0
	for _, p := range params {
		if _, asked := cc.field(p.name); all || asked {
			dst = bsoncore.AppendValueElement(dst, p.name, p.value)
			found++
		}
	}
	if found == 0 && !all {
		// The server's words, when it has none of the parameters asked.
		return nil, cmdErr(codeInvalidOptions, "no option found to get")
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst, nil
}

// parameter is one server parameter getParameter reports.
type parameter struct {
	name  string
	value bsoncore.Value
}

// parameters are the server parameters the simulator has, with their
// values: those it models (the others a server has are not reported:
// getParameter refuses a request for them rather than inventing values).
func (s *Server) parameters() []parameter {
	st := s.store
	st.mu.Lock()
	lifetime := st.txnLifetime
	st.mu.Unlock()
	fcv := bsoncore.NewDocumentBuilder().AppendString("version", "8.0").Build()
	return []parameter{
		{"enableTestCommands", bsoncore.Value{Type: bsoncore.TypeBoolean, Data: bsoncore.AppendBoolean(nil, true)}},
		{"featureCompatibilityVersion", bsoncore.Value{Type: bsoncore.TypeEmbeddedDocument, Data: fcv}},
		{"periodicNoopIntervalSecs", bsoncore.Value{Type: bsoncore.TypeInt32, Data: bsoncore.AppendInt32(nil, int32(s.cfg.noop/time.Second))}},
		{paramTxnLifetime, bsoncore.Value{Type: bsoncore.TypeInt32, Data: bsoncore.AppendInt32(nil, int32(lifetime/time.Second))}},
	}
}

// handleServerStatus reports the few fields tests read.
func handleServerStatus(cc *cmdCtx) (bsoncore.Document, error) {
	var dst []byte
	idx, dst := bsoncore.AppendDocumentStart(dst)
	dst = bsoncore.AppendStringElement(dst, "host", cc.s.addr)
	dst = bsoncore.AppendStringElement(dst, "version", ServerVersion)
	dst = bsoncore.AppendStringElement(dst, "process", "mongod")
	if v, ok := cc.field("oplog"); ok && truthy(v) && !cc.s.cfg.standalone {
		// The section a replica-set member adds when asked for it
		// ({serverStatus: 1, oplog: 1}): its newest and oldest oplog
		// entries' times (src/mongo/db/repl/replication_info.cpp,
		// OplogInfoServerStatus, not included by default).
		st := cc.s.store
		st.mu.Lock()
		var earliest, latest bson.Timestamp
		if n := len(st.oplog.entries); n > 0 {
			earliest, latest = st.oplog.entries[0].ts, st.oplog.entries[n-1].ts
		}
		st.mu.Unlock()
		sub := bsoncore.NewDocumentBuilder().AppendTimestamp("latestOptime", latest.T, latest.I).
			AppendTimestamp("earliestOptime", earliest.T, earliest.I).Build()
		dst = bsoncore.AppendDocumentElement(dst, "oplog", sub)
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst, nil
}

// truthy is a command option's value read as a boolean, as the server
// reads {section: 1} or {section: true}.
func truthy(v bsoncore.Value) bool {
	switch v.Type {
	case bsoncore.TypeBoolean:
		return v.Boolean()
	case bsoncore.TypeInt32, bsoncore.TypeInt64, bsoncore.TypeDouble:
		f, _ := v.AsFloat64OK()
		return f != 0
	}
	return false
}

// versionAtLeast reports whether version ("8.0.4") is at least
// major.minor.patch, for behaviour that changed within a release series.
func versionAtLeast(version string, major, minor, patch int) bool {
	want := []int{major, minor, patch}
	parts := strings.Split(version, ".")
	for i, w := range want {
		n := 0
		if i < len(parts) {
			n, _ = strconv.Atoi(parts[i])
		}
		if n != w {
			return n > w
		}
	}
	return true
}
