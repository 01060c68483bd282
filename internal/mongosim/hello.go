package mongosim

import (
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// handleHello answers hello and isMaster as the primary of a one-member
// replica set. topologyVersion is left out on purpose: with it the driver
// switches to streaming hello, which an instant answer would turn into a
// flood. compression is left out so that OP_COMPRESSED never arrives.
func handleHello(cc *cmdCtx) (bsoncore.Document, error) {
	if client, ok, err := cc.docArg("client"); err == nil && ok {
		if v, err := client.LookupErr("application", "name"); err == nil {
			if name, ok := v.StringValueOK(); ok {
				cc.conn.setAppName(name)
			}
		}
	}
	s := cc.s
	dst := make([]byte, 0, 512)
	idx, dst := bsoncore.AppendDocumentStart(dst)
	if cc.name == "hello" {
		dst = bsoncore.AppendBooleanElement(dst, "isWritablePrimary", true)
	} else {
		dst = bsoncore.AppendBooleanElement(dst, "ismaster", true)
	}
	dst = bsoncore.AppendBooleanElement(dst, "helloOk", true)
	if !s.cfg.standalone {
		dst = appendReplSetFields(dst, s)
	}
	dst = bsoncore.AppendInt32Element(dst, "maxBsonObjectSize", maxBSONObjectSize)
	dst = bsoncore.AppendInt32Element(dst, "maxMessageSizeBytes", maxMessageSizeBytes)
	dst = bsoncore.AppendInt32Element(dst, "maxWriteBatchSize", maxWriteBatchSize)
	dst = bsoncore.AppendDateTimeElement(dst, "localTime", time.Now().UnixMilli())
	dst = bsoncore.AppendInt32Element(dst, "logicalSessionTimeoutMinutes", 30)
	dst = bsoncore.AppendInt64Element(dst, "connectionId", cc.conn.id)
	dst = bsoncore.AppendInt32Element(dst, "minWireVersion", 0)
	dst = bsoncore.AppendInt32Element(dst, "maxWireVersion", MaxWireVersion)
	dst = bsoncore.AppendBooleanElement(dst, "readOnly", false)
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst, nil
}

// appendReplSetFields appends what a replica-set member's hello says about
// its set, which a standalone leaves out.
func appendReplSetFields(dst []byte, s *Server) []byte {
	host := s.addr
	dst = bsoncore.AppendStringElement(dst, "setName", s.cfg.replSetName)
	dst = bsoncore.AppendInt32Element(dst, "setVersion", 1)
	dst = bsoncore.BuildArrayElement(dst, "hosts", bsoncore.Value{Type: bsoncore.TypeString, Data: bsoncore.AppendString(nil, host)})
	dst = bsoncore.AppendStringElement(dst, "primary", host)
	dst = bsoncore.AppendStringElement(dst, "me", host)
	dst = bsoncore.AppendBooleanElement(dst, "secondary", false)
	idx, dst := bsoncore.AppendDocumentElementStart(dst, "lastWrite")
	ts := s.store.clusterTime()
	oidx, dst := bsoncore.AppendDocumentElementStart(dst, "opTime")
	dst = bsoncore.AppendTimestampElement(dst, "ts", ts.T, ts.I)
	dst = bsoncore.AppendInt64Element(dst, "t", 1)
	dst, _ = bsoncore.AppendDocumentEnd(dst, oidx)
	dst = bsoncore.AppendDateTimeElement(dst, "lastWriteDate", int64(ts.T)*1000)
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst
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
	dst = bsoncore.AppendInt32Element(dst, "maxBsonObjectSize", maxBSONObjectSize)
	dst = bsoncore.BuildArrayElement(dst, "storageEngines", bsoncore.Value{Type: bsoncore.TypeString, Data: bsoncore.AppendString(nil, "inMemory")})
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst, nil
}

// handleGetParameter answers the parameters test tooling asks for.
func handleGetParameter(cc *cmdCtx) (bsoncore.Document, error) {
	var dst []byte
	idx, dst := bsoncore.AppendDocumentStart(dst)
	if _, ok := cc.field("featureCompatibilityVersion"); ok {
		fidx, d := bsoncore.AppendDocumentElementStart(dst, "featureCompatibilityVersion")
		d = bsoncore.AppendStringElement(d, "version", "8.0")
		dst, _ = bsoncore.AppendDocumentEnd(d, fidx)
	}
	if _, ok := cc.field(paramTxnLifetime); ok {
		st := cc.s.store
		st.mu.Lock()
		lifetime := st.txnLifetime
		st.mu.Unlock()
		dst = bsoncore.AppendInt32Element(dst, paramTxnLifetime, int32(lifetime/time.Second))
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst, nil
}

// handleServerStatus reports the few fields tests read.
func handleServerStatus(cc *cmdCtx) (bsoncore.Document, error) {
	var dst []byte
	idx, dst := bsoncore.AppendDocumentStart(dst)
	dst = bsoncore.AppendStringElement(dst, "host", cc.s.addr)
	dst = bsoncore.AppendStringElement(dst, "version", ServerVersion)
	dst = bsoncore.AppendStringElement(dst, "process", "mongod")
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst, nil
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
