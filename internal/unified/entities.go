package unified

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/changestream-go/changestream/internal/testclient"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// entityMap holds a test's named entities: clients, databases, collections,
// sessions, change streams, and values saved with saveResultAsEntity. It
// lives for one test and closes what it holds at the end.
type entityMap struct {
	uri      string
	entities map[string]any
	order    []string // creation order, closed in reverse
}

func newEntityMap(uri string) *entityMap {
	return &entityMap{uri: uri, entities: make(map[string]any)}
}

func (em *entityMap) add(id string, v any) error {
	if id == "" {
		return fmt.Errorf("entity without an id")
	}
	if _, dup := em.entities[id]; dup {
		return fmt.Errorf("entity %q already exists", id)
	}
	em.entities[id] = v
	em.order = append(em.order, id)
	return nil
}

func (em *entityMap) get(id string) (any, error) {
	v, ok := em.entities[id]
	if !ok {
		return nil, fmt.Errorf("no entity %q", id)
	}
	return v, nil
}

func entityAs[T any](em *entityMap, id string) (T, error) {
	var zero T
	v, err := em.get(id)
	if err != nil {
		return zero, err
	}
	t, ok := v.(T)
	if !ok {
		return zero, fmt.Errorf("entity %q is a %T, not a %T", id, v, zero)
	}
	return t, nil
}

// value returns a BSON entity (a saved result) for $$matchesEntity.
func (em *entityMap) value(id string) (bson.RawValue, error) {
	return entityAs[bson.RawValue](em, id)
}

// sessionLsid returns the lsid of a session entity, for $$sessionLsid.
func (em *entityMap) sessionLsid(id string) (bson.Raw, error) {
	s, err := entityAs[*sessionEntity](em, id)
	if err != nil {
		return nil, err
	}
	return s.lsid, nil
}

// close releases every entity in reverse creation order: change streams
// first, then sessions, then clients.
func (em *entityMap) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := len(em.order) - 1; i >= 0; i-- {
		switch v := em.entities[em.order[i]].(type) {
		case changeStreamUnderTest:
			_ = v.Close(ctx)
		case *sessionEntity:
			v.sess.EndSession(ctx)
		}
	}
	for i := len(em.order) - 1; i >= 0; i-- {
		if c, ok := em.entities[em.order[i]].(*clientEntity); ok {
			_ = c.client.Disconnect(ctx)
		}
	}
}

// stopRecording stops every client from recording events, so that the
// commands the runner sends while cleaning up are not compared.
func (em *entityMap) stopRecording() {
	for _, v := range em.entities {
		if c, ok := v.(*clientEntity); ok {
			c.rec.stop()
		}
	}
}

// sessionEntity is a session with the lsid it had when it was started, which
// stays readable after the session ends.
type sessionEntity struct {
	sess *mongo.Session
	lsid bson.Raw
}

// createEntity builds one entry of createEntities.
func (em *entityMap) createEntity(spec bson.Raw) error {
	elems, err := spec.Elements()
	if err != nil || len(elems) != 1 {
		return fmt.Errorf("an entity is a document with one key: %s", spec)
	}
	kind, body := elems[0].Key(), elems[0].Value().Document()
	a := newArgs(body)
	id := a.str("id")
	switch kind {
	case "client":
		c, err := em.newClient(id, a)
		if err != nil {
			return fmt.Errorf("client %q: %w", id, err)
		}
		return em.add(id, c)
	case "database":
		c, err := entityAs[*clientEntity](em, a.str("client"))
		if err != nil {
			return err
		}
		name := a.str("databaseName")
		var opts []options.Lister[options.DatabaseOptions]
		if o, ok := a.doc("databaseOptions"); ok {
			rc, wc, rp, err := collOptions(o)
			if err != nil {
				return fmt.Errorf("database %q: %w", id, err)
			}
			opts = append(opts, options.Database().SetReadConcern(rc).SetWriteConcern(wc).SetReadPreference(rp))
		}
		if err := a.done(); err != nil {
			return fmt.Errorf("database %q: %w", id, err)
		}
		return em.add(id, c.client.Database(name, opts...))
	case "collection":
		db, err := entityAs[*mongo.Database](em, a.str("database"))
		if err != nil {
			return err
		}
		name := a.str("collectionName")
		var opts []options.Lister[options.CollectionOptions]
		if o, ok := a.doc("collectionOptions"); ok {
			rc, wc, rp, err := collOptions(o)
			if err != nil {
				return fmt.Errorf("collection %q: %w", id, err)
			}
			opts = append(opts, options.Collection().SetReadConcern(rc).SetWriteConcern(wc).SetReadPreference(rp))
		}
		if err := a.done(); err != nil {
			return fmt.Errorf("collection %q: %w", id, err)
		}
		return em.add(id, db.Collection(name, opts...))
	case "session":
		c, err := entityAs[*clientEntity](em, a.str("client"))
		if err != nil {
			return err
		}
		sopts := options.Session()
		if o, ok := a.doc("sessionOptions"); ok {
			oa := newArgs(o)
			if v, ok := oa.boolean("causalConsistency"); ok {
				sopts.SetCausalConsistency(v)
			}
			if v, ok := oa.boolean("snapshot"); ok {
				sopts.SetSnapshot(v)
			}
			if err := oa.done(); err != nil {
				return fmt.Errorf("session %q: %w", id, err)
			}
		}
		if err := a.done(); err != nil {
			return fmt.Errorf("session %q: %w", id, err)
		}
		sess, err := c.client.StartSession(sopts)
		if err != nil {
			return err
		}
		return em.add(id, &sessionEntity{sess: sess, lsid: append(bson.Raw(nil), sess.ID()...)})
	}
	return fmt.Errorf("unsupported entity type %q", kind)
}

// newClient connects a client entity, with the URI options given and a
// recorder for the events it observes.
func (em *entityMap) newClient(id string, a *args) (*clientEntity, error) {
	uri := em.uri
	ownHeartbeat := false
	if o, ok := a.doc("uriOptions"); ok {
		var err error
		if uri, err = withURIOptions(uri, o); err != nil {
			return nil, err
		}
		_, err = o.LookupErr("heartbeatFrequencyMS")
		ownHeartbeat = err == nil
	}
	if multi, ok := a.boolean("useMultipleMongoses"); ok {
		var err error
		if uri, err = mongosesFor(uri, multi); err != nil {
			return nil, err
		}
	}
	rec := newRecorder()
	if obs, ok := a.strings("observeEvents"); ok {
		for _, e := range obs {
			rec.observe[e] = true
		}
	}
	if ign, ok := a.strings("ignoreCommandMonitoringEvents"); ok {
		for _, n := range ign {
			rec.ignore[n] = true
		}
	}
	if v, ok := a.boolean("observeSensitiveCommands"); ok {
		rec.sensitive = v
	}
	if _, ok := a.get("serverApi"); ok {
		return nil, fmt.Errorf("serverApi is not supported")
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	opts := options.Client().ApplyURI(uri).SetMonitor(rec.commandMonitor()).SetPoolMonitor(rec.poolMonitor())
	if !ownHeartbeat {
		// A short heartbeat unless the test sets one, as the driver's own
		// runner does for tests with fail points: it bounds the driver
		// races that testclient.Heartbeat describes.
		opts.SetHeartbeatInterval(testclient.Heartbeat)
	}
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, err
	}
	return &clientEntity{id: id, client: client, rec: rec}, nil
}

// mongosesFor applies a client's useMultipleMongoses to a sharded
// cluster's connection string (one without replicaSet), as the Unified
// Test Format says: false keeps the first mongos only, so that a fail
// point set through the client is on the server its cursors use; true
// keeps them all (the runner's simulated clusters have two). A replica
// set's URI names one deployment whatever its hosts, and is kept.
func mongosesFor(uri string, multi bool) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", err
	}
	if multi || u.Query().Has("replicaSet") || u.Query().Has("directConnection") {
		return uri, nil
	}
	u.Host, _, _ = strings.Cut(u.Host, ",")
	return u.String(), nil
}

// clientEntity is a client and the events it recorded.
type clientEntity struct {
	id     string
	client *mongo.Client
	rec    *recorder
}

// withURIOptions adds the entity's uriOptions to the connection string.
func withURIOptions(uri string, o bson.Raw) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", err
	}
	q := u.Query()
	elems, err := o.Elements()
	if err != nil {
		return "", err
	}
	for _, e := range elems {
		v := e.Value()
		var s string
		switch v.Type {
		case bson.TypeString:
			s = v.StringValue()
		case bson.TypeBoolean:
			s = fmt.Sprint(v.Boolean())
		case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble:
			s = fmt.Sprint(asFloat(v))
		case bson.TypeEmbeddedDocument:
			// authMechanismProperties: k1:v1,k2:v2
			pe, _ := v.Document().Elements()
			parts := make([]string, 0, len(pe))
			for _, p := range pe {
				parts = append(parts, p.Key()+":"+strings.Trim(p.Value().String(), `"`))
			}
			s = strings.Join(parts, ",")
		default:
			return "", fmt.Errorf("uriOptions.%s: unsupported type %s", e.Key(), v.Type)
		}
		q.Set(e.Key(), s)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// collOptions reads readConcern, writeConcern and readPreference from a
// databaseOptions or collectionOptions document.
func collOptions(o bson.Raw) (*readconcern.ReadConcern, *writeconcern.WriteConcern, *readpref.ReadPref, error) {
	a := newArgs(o)
	var rc *readconcern.ReadConcern
	var wc *writeconcern.WriteConcern
	var rp *readpref.ReadPref
	if d, ok := a.doc("readConcern"); ok {
		if lvl, err := d.LookupErr("level"); err == nil {
			rc = &readconcern.ReadConcern{Level: lvl.StringValue()}
		}
	}
	if d, ok := a.doc("writeConcern"); ok {
		wc = &writeconcern.WriteConcern{}
		if w, err := d.LookupErr("w"); err == nil {
			if s, ok := w.StringValueOK(); ok {
				wc.W = s
			} else {
				wc.W = int(asFloat(w))
			}
		}
		if j, err := d.LookupErr("journal"); err == nil {
			b := j.Boolean()
			wc.Journal = &b
		}
	}
	if d, ok := a.doc("readPreference"); ok {
		mode, _ := d.LookupErr("mode")
		m, err := readpref.ModeFromString(mode.StringValue())
		if err != nil {
			return nil, nil, nil, err
		}
		if rp, err = readpref.New(m); err != nil {
			return nil, nil, nil, err
		}
	}
	a.get("timeoutMS")
	return rc, wc, rp, a.done()
}
