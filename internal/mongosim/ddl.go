package mongosim

import (
	"slices"
	"sort"
	"strings"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// genericFields are command fields every command may carry; they are not
// collection options.
var genericFields = []string{"writeConcern", "lsid", "$db", "$clusterTime", "txnNumber", "autocommit",
	"startTransaction", "comment", "maxTimeMS", "readConcern", "apiVersion", "apiStrict",
	"apiDeprecationErrors", "$readPreference", "$audit", "mayBypassWriteBlocking", "$client"}

// commandOptions returns the command's fields other than its name and the
// generic ones, as a copy.
func (cc *cmdCtx) commandOptions() (bson.D, error) {
	all, err := decodeDoc(cc.cmd)
	if err != nil {
		return nil, err
	}
	out := bson.D{}
	for _, e := range all[1:] {
		if !slices.Contains(genericFields, e.Key) {
			out = append(out, e)
		}
	}
	return out, nil
}

func uuidValue(u [16]byte) bson.Binary {
	return bson.Binary{Subtype: 4, Data: append([]byte(nil), u[:]...)}
}

var idIndexSpec = bson.D{{Key: "v", Value: int32(2)}, {Key: "key", Value: bson.D{{Key: "_id", Value: int32(1)}}}, {Key: "name", Value: "_id_"}}

func handleCreate(cc *cmdCtx) (bsoncore.Document, error) {
	coll, err := cc.collName()
	if err != nil {
		return nil, err
	}
	opts, err := cc.commandOptions()
	if err != nil {
		return nil, err
	}
	if v, ok := query.Lookup(opts, "viewOn"); ok {
		if _, isStr := v.(string); !isStr {
			return nil, cmdErr(codeTypeMismatch, "BSON field 'create.viewOn' is the wrong type '%s', expected type 'string'", query.TypeName(v))
		}
		if p, ok := query.Lookup(opts, "pipeline"); ok {
			if _, isArr := p.(bson.A); !isArr {
				return nil, cmdErr(codeTypeMismatch, "BSON field 'create.pipeline' is the wrong type '%s', expected type 'array'", query.TypeName(p))
			}
		} else {
			opts = append(opts, bson.E{Key: "pipeline", Value: bson.A{}})
		}
	}
	if v, ok := query.Lookup(opts, "changeStreamPreAndPostImages"); ok {
		if _, isDoc := v.(bson.D); !isDoc {
			return nil, cmdErr(codeTypeMismatch, "BSON field 'create.changeStreamPreAndPostImages' is the wrong type '%s', expected type 'object'", query.TypeName(v))
		}
	}
	if len(opts) == 0 {
		opts = nil
	}
	st := cc.s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	if c := st.collLocked(cc.db, coll); c != nil {
		if query.Identical(c.options, opts) || (len(c.options) == 0 && len(opts) == 0) {
			return nil, nil
		}
		return nil, cmdErr(codeNamespaceExists, "namespace %s.%s already exists, but with different options: %s",
			cc.db, coll, query.FormatDoc(append(bson.D{{Key: "uuid", Value: uuidValue(c.uuid)}}, c.options...)))
	}
	if err := checkCollectionOptions(opts); err != nil {
		return nil, err
	}
	st.createCollLocked(cc.db, coll, opts)
	return nil, nil
}

// dropCollLocked removes a collection and logs the drop.
func (st *store) dropCollLocked(c *collection) {
	delete(st.dbs[c.db].colls, c.name)
	st.appendLocked(&oplogEntry{op: opDrop, db: c.db, coll: c.name, collUUID: c.uuid})
}

func handleDrop(cc *cmdCtx) (bsoncore.Document, error) {
	coll, err := cc.collName()
	if err != nil {
		return nil, err
	}
	st := cc.s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	c := st.collLocked(cc.db, coll)
	if c == nil {
		// Since 7.0 dropping a missing collection succeeds.
		return nil, nil
	}
	n := int32(len(c.indexes) + 1)
	st.dropCollLocked(c)
	if len(st.dbs[cc.db].colls) == 0 {
		delete(st.dbs, cc.db)
	}
	return marshalDoc(bson.D{{Key: "nIndexesWas", Value: n}, {Key: "ns", Value: cc.db + "." + coll}})
}

func handleDropDatabase(cc *cmdCtx) (bsoncore.Document, error) {
	st := cc.s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	d := st.dbs[cc.db]
	if d == nil || len(d.colls) == 0 {
		delete(st.dbs, cc.db)
		return nil, nil
	}
	for _, name := range d.sortedCollNames() {
		st.dropCollLocked(d.colls[name])
	}
	st.appendLocked(&oplogEntry{op: opDropDatabase, db: cc.db})
	delete(st.dbs, cc.db)
	return marshalDoc(bson.D{{Key: "dropped", Value: cc.db}})
}

func splitNS(ns string) (string, string, bool) {
	db, coll, ok := strings.Cut(ns, ".")
	return db, coll, ok && db != "" && coll != ""
}

func handleRenameCollection(cc *cmdCtx) (bsoncore.Document, error) {
	if cc.db != "admin" {
		return nil, cmdErr(13, "renameCollection may only be run against the admin database.")
	}
	from, _, err := cc.stringArg("renameCollection")
	if err != nil {
		return nil, err
	}
	to, present, err := cc.stringArg("to")
	if err != nil {
		return nil, err
	}
	if !present {
		return nil, cmdErr(40414, "BSON field 'renameCollection.to' is missing but a required field")
	}
	dropTarget, _, err := cc.boolArg("dropTarget")
	if err != nil {
		return nil, err
	}
	fdb, fcoll, ok := splitNS(from)
	if !ok {
		return nil, cmdErr(codeInvalidNamespace, "Invalid source namespace: %s", from)
	}
	tdb, tcoll, ok := splitNS(to)
	if !ok || strings.ContainsAny(tcoll, "$\x00") {
		return nil, cmdErr(codeInvalidNamespace, "Invalid target namespace: %s", to)
	}
	if from == to {
		return nil, cmdErr(codeIllegalOperation, "Can't rename a collection to itself")
	}
	st := cc.s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	src := st.collLocked(fdb, fcoll)
	if src == nil {
		return nil, cmdErr(codeNamespaceNotFound, "Source collection %s does not exist", from)
	}
	if _, _, isView := src.viewOn(); isView {
		return nil, cmdErr(166, "cannot rename view: %s", from)
	}
	desc := bson.D{{Key: "to", Value: bson.D{{Key: "db", Value: tdb}, {Key: "coll", Value: tcoll}}}}
	if dst := st.collLocked(tdb, tcoll); dst != nil {
		if !dropTarget {
			return nil, cmdErr(codeNamespaceExists, "target namespace exists")
		}
		desc = append(desc, bson.E{Key: "dropTarget", Value: uuidValue(dst.uuid)})
		delete(st.dbs[tdb].colls, tcoll)
	}
	moved := *src
	moved.db, moved.name = tdb, tcoll
	delete(st.dbs[fdb].colls, fcoll)
	if len(st.dbs[fdb].colls) == 0 {
		delete(st.dbs, fdb)
	}
	st.dbLocked(tdb, true).colls[tcoll] = &moved
	st.appendLocked(&oplogEntry{op: opRename, db: fdb, coll: fcoll, collUUID: src.uuid, toDB: tdb, toColl: tcoll, opDesc: desc})
	return nil, nil
}

// systemDatabases are the databases every replica set member has.
var systemDatabases = []string{"admin", "config", "local"}

func handleListDatabases(cc *cmdCtx) (bsoncore.Document, error) {
	if cc.db != "admin" {
		return nil, cmdErr(13, "listDatabases may only be run against the admin database.")
	}
	nameOnly, _, err := cc.boolArg("nameOnly")
	if err != nil {
		return nil, err
	}
	filter, _, err := cc.docFieldD("filter")
	if err != nil {
		return nil, err
	}
	match, err := query.CompileFilter(filter)
	if err != nil {
		return nil, err
	}
	st := cc.s.store
	st.mu.Lock()
	sizes := make(map[string]int64)
	for name, d := range st.dbs {
		if len(d.colls) == 0 {
			continue
		}
		size := int64(0)
		for _, c := range d.colls {
			size += 8192 + int64(len(c.indexes))*4096 + int64(c.docs.len())*64
		}
		sizes[name] = size
	}
	st.mu.Unlock()
	for _, name := range systemDatabases {
		if _, ok := sizes[name]; !ok {
			sizes[name] = 40960
		}
	}
	names := make([]string, 0, len(sizes))
	for n := range sizes {
		names = append(names, n)
	}
	sort.Strings(names)
	dbs := bson.A{}
	total := int64(0)
	for _, n := range names {
		entry := bson.D{{Key: "name", Value: n}, {Key: "sizeOnDisk", Value: sizes[n]}, {Key: "empty", Value: false}}
		if !match(entry) {
			continue
		}
		total += sizes[n]
		if nameOnly {
			entry = entry[:1]
		}
		dbs = append(dbs, entry)
	}
	reply := bson.D{{Key: "databases", Value: dbs}}
	if !nameOnly {
		reply = append(reply, bson.E{Key: "totalSize", Value: total}, bson.E{Key: "totalSizeMb", Value: total >> 20})
	}
	return marshalDoc(reply)
}

// cursorBatchSize reads cursor.batchSize, the first batch size of commands
// answering with a cursor.
func (cc *cmdCtx) cursorBatchSize() (int, error) {
	opts, ok, err := cc.docArg("cursor")
	if err != nil || !ok {
		return findDefaultBatch, err
	}
	v, err := opts.LookupErr("batchSize")
	if err != nil {
		return findDefaultBatch, nil
	}
	n, ok := numberAsInt64(v)
	if !ok {
		return 0, typeMismatch(cc.name, "cursor.batchSize", v.Type, "long")
	}
	if n < 0 {
		return 0, cmdErr(51024, "BSON field 'batchSize' value must be >= 0, actual value '%d'", n)
	}
	return int(n), nil
}

func handleListCollections(cc *cmdCtx) (bsoncore.Document, error) {
	filter, _, err := cc.docFieldD("filter")
	if err != nil {
		return nil, err
	}
	nameOnly, _, err := cc.boolArg("nameOnly")
	if err != nil {
		return nil, err
	}
	first, err := cc.cursorBatchSize()
	if err != nil {
		return nil, err
	}
	match, err := query.CompileFilter(filter)
	if err != nil {
		return nil, err
	}
	st := cc.s.store
	if err := cc.lockRead(st); err != nil {
		return nil, err
	}
	var docs []bson.D
	if d := st.dbs[cc.db]; d != nil {
		for _, name := range d.sortedCollNames() {
			c := d.colls[name]
			var entry bson.D
			if _, _, isView := c.viewOn(); isView {
				entry = bson.D{{Key: "name", Value: name}, {Key: "type", Value: "view"},
					{Key: "options", Value: query.CloneDoc(c.options)}, {Key: "info", Value: bson.D{{Key: "readOnly", Value: true}}}}
			} else {
				opts := query.CloneDoc(c.options)
				if opts == nil {
					opts = bson.D{}
				}
				entry = bson.D{{Key: "name", Value: name}, {Key: "type", Value: "collection"}, {Key: "options", Value: opts},
					{Key: "info", Value: bson.D{{Key: "readOnly", Value: false}, {Key: "uuid", Value: uuidValue(c.uuid)}}},
					{Key: "idIndex", Value: idIndexSpec}}
			}
			if !match(entry) {
				continue
			}
			if nameOnly {
				entry = entry[:2]
			}
			docs = append(docs, entry)
		}
	}
	st.mu.Unlock()
	return cc.openCursor("$cmd.listCollections", cc.db+".$cmd.listCollections", &findSource{docs: docs, first: first}, first)
}

// collForDDL returns an existing collection (not a view) for an index or
// collMod command.
func (st *store) collForDDL(db, coll string) (*collection, error) {
	c := st.collLocked(db, coll)
	if c == nil {
		return nil, cmdErr(codeNamespaceNotFound, "ns does not exist: %s.%s", db, coll)
	}
	return c, nil
}

func handleListIndexes(cc *cmdCtx) (bsoncore.Document, error) {
	coll, err := cc.collName()
	if err != nil {
		return nil, err
	}
	first, err := cc.cursorBatchSize()
	if err != nil {
		return nil, err
	}
	st := cc.s.store
	st.mu.Lock()
	c, err := st.collForDDL(cc.db, coll)
	var docs []bson.D
	if err == nil {
		if _, _, isView := c.viewOn(); isView {
			err = cmdErr(166, "Namespace %s.%s is a view, not a collection", cc.db, coll)
		}
		docs = append([]bson.D{idIndexSpec}, c.indexes...)
	}
	st.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return cc.openCursor(coll, cc.db+"."+coll, &findSource{docs: docs, first: first}, first)
}

func handleCreateIndexes(cc *cmdCtx) (bsoncore.Document, error) {
	coll, err := cc.collName()
	if err != nil {
		return nil, err
	}
	raw, present, err := cc.arrayArg("indexes")
	if err != nil {
		return nil, err
	}
	if !present {
		return nil, cmdErr(40414, "BSON field 'createIndexes.indexes' is missing but a required field")
	}
	v, err := decodeValue(bsoncore.Value{Type: bsoncore.TypeArray, Data: raw})
	if err != nil {
		return nil, err
	}
	specs := v.(bson.A)
	if len(specs) == 0 {
		return nil, cmdErr(codeBadValue, "Must specify at least one index to create")
	}
	var wanted []bson.D
	for _, s := range specs {
		d, ok := s.(bson.D)
		if !ok {
			return nil, cmdErr(codeTypeMismatch, "The elements of the 'indexes' array must be objects, but found a %s", query.TypeName(s))
		}
		key, _ := query.Lookup(d, "key")
		kd, ok := key.(bson.D)
		if !ok || len(kd) == 0 {
			return nil, cmdErr(codeFailedToParse, "Error in specification %s :: caused by :: The 'key' field is a required property of an index specification", query.FormatDoc(d))
		}
		name, ok := query.MustLookup(d, "name").(string)
		if !ok || name == "" {
			return nil, cmdErr(codeFailedToParse, "Error in specification %s :: caused by :: The 'name' field is a required property of an index specification", query.FormatDoc(d))
		}
		spec := bson.D{{Key: "v", Value: int32(2)}, {Key: "key", Value: kd}, {Key: "name", Value: name}}
		for _, e := range d {
			if e.Key != "key" && e.Key != "name" && e.Key != "v" {
				spec = append(spec, e)
			}
		}
		if err := checkIndexSpec(spec); err != nil {
			return nil, err
		}
		wanted = append(wanted, spec)
	}
	st := cc.s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	c := st.collLocked(cc.db, coll)
	if err := checkWritable(c); err != nil {
		return nil, err
	}
	created := c == nil
	c = st.implicitCollLocked(cc.db, coll)
	before := int32(len(c.indexes) + 1)
	var added []bson.D
	for _, spec := range wanted {
		name := spec[2].Value.(string)
		key := spec[1].Value.(bson.D)
		if name == "_id_" || (len(key) == 1 && key[0].Key == "_id" && query.NumberFloat(key[0].Value) == 1) {
			continue
		}
		exists := false
		for _, ix := range append(slices.Clone(c.indexes), added...) {
			ixName := ix[2].Value.(string)
			ixKey := ix[1].Value.(bson.D)
			switch {
			case ixName == name && query.Identical(ixKey, key):
				exists = true
			case ixName == name:
				return nil, cmdErr(86, "An existing index has the same name as the requested index. When index names are not specified, they are auto generated and can cause conflicts. Please refer to our documentation. Requested index: %s, existing index: %s",
					query.FormatDoc(spec), query.FormatDoc(ix))
			case query.Identical(ixKey, key):
				return nil, cmdErr(85, "Index already exists with a different name: %s", ixName)
			}
		}
		if !exists {
			added = append(added, spec)
		}
	}
	// On a collection with documents the server builds the indexes of one
	// command together and commits them in one oplog entry
	// (commitIndexBuild), so one event lists them all; on an empty one it
	// creates each at once and logs one entry apiece
	// (index_builds_coordinator.cpp, createIndexesOnEmptyCollection).
	var together bson.A
	for _, spec := range added {
		c.indexes = append(slices.Clip(c.indexes), spec)
		if c.docs.len() > 0 {
			together = append(together, spec)
			continue
		}
		st.appendLocked(&oplogEntry{op: opCreateIndexes, db: cc.db, coll: coll, collUUID: c.uuid,
			opDesc: bson.D{{Key: "indexes", Value: bson.A{spec}}}})
	}
	if len(together) > 0 {
		st.appendLocked(&oplogEntry{op: opCreateIndexes, db: cc.db, coll: coll, collUUID: c.uuid,
			opDesc: bson.D{{Key: "indexes", Value: together}}})
	}
	reply := bson.D{{Key: "numIndexesBefore", Value: before}, {Key: "numIndexesAfter", Value: int32(len(c.indexes) + 1)}}
	if len(added) == 0 {
		reply = append(reply, bson.E{Key: "note", Value: "all indexes already exist"})
	}
	reply = append(reply, bson.E{Key: "createdCollectionAutomatically", Value: created})
	return marshalDoc(reply)
}

func handleDropIndexes(cc *cmdCtx) (bsoncore.Document, error) {
	coll, err := cc.collName()
	if err != nil {
		return nil, err
	}
	iv, ok := cc.field("index")
	if !ok {
		return nil, cmdErr(40414, "BSON field 'dropIndexes.index' is missing but a required field")
	}
	which, err := decodeValue(iv)
	if err != nil {
		return nil, err
	}
	st := cc.s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	c, err := st.collForDDL(cc.db, coll)
	if err != nil {
		return nil, cmdErr(codeNamespaceNotFound, "ns not found %s.%s", cc.db, coll)
	}
	was := int32(len(c.indexes) + 1)
	find := func(pred func(ix bson.D) bool) int { return slices.IndexFunc(c.indexes, pred) }
	var drop []int
	switch x := which.(type) {
	case string:
		if x == "*" {
			for i := range c.indexes {
				drop = append(drop, i)
			}
			break
		}
		if x == "_id_" {
			return nil, cmdErr(codeInvalidOptions, "cannot drop _id index")
		}
		i := find(func(ix bson.D) bool { return ix[2].Value == x })
		if i < 0 {
			return nil, cmdErr(27, "index not found with name [%s]", x)
		}
		drop = append(drop, i)
	case bson.A:
		for _, n := range x {
			s, _ := n.(string)
			i := find(func(ix bson.D) bool { return ix[2].Value == s })
			if i < 0 {
				return nil, cmdErr(27, "index not found with name [%s]", s)
			}
			drop = append(drop, i)
		}
	case bson.D:
		i := find(func(ix bson.D) bool { return query.Identical(ix[1].Value, x) })
		if i < 0 {
			return nil, cmdErr(27, "can't find index with key: %s", query.FormatDoc(x))
		}
		drop = append(drop, i)
	default:
		return nil, cmdErr(codeTypeMismatch, "BSON field 'dropIndexes.index' is the wrong type '%s', expected types '[string, object, array]'", query.TypeName(which))
	}
	keep := make([]bson.D, 0, len(c.indexes))
	for i, ix := range c.indexes {
		if slices.Contains(drop, i) {
			st.appendLocked(&oplogEntry{op: opDropIndexes, db: cc.db, coll: coll, collUUID: c.uuid,
				opDesc: bson.D{{Key: "indexes", Value: bson.A{ix}}}})
			continue
		}
		keep = append(keep, ix)
	}
	c.indexes = keep
	reply := bson.D{{Key: "nIndexesWas", Value: was}}
	if s, ok := which.(string); ok && s == "*" {
		reply = append(reply, bson.E{Key: "msg", Value: "non-_id indexes dropped for collection"})
	}
	return marshalDoc(reply)
}

func handleCollMod(cc *cmdCtx) (bsoncore.Document, error) {
	coll, err := cc.collName()
	if err != nil {
		return nil, err
	}
	opts, err := cc.commandOptions()
	if err != nil {
		return nil, err
	}
	if err := checkCollectionOptions(opts); err != nil {
		return nil, err
	}
	for _, e := range opts {
		switch e.Key {
		case "changeStreamPreAndPostImages":
			d, ok := e.Value.(bson.D)
			if !ok {
				return nil, cmdErr(codeTypeMismatch, "BSON field 'collMod.changeStreamPreAndPostImages' is the wrong type '%s', expected type 'object'", query.TypeName(e.Value))
			}
			if _, ok := query.Lookup(d, "enabled"); !ok {
				return nil, cmdErr(40414, "BSON field 'collMod.changeStreamPreAndPostImages.enabled' is missing but a required field")
			}
		case "validator", "validationLevel", "validationAction", "viewOn", "pipeline", "expireAfterSeconds",
			"timeseries", "index", "cappedSize", "cappedMax", "dryRun":
		default:
			return nil, cmdErr(40415, "BSON field 'collMod.%s' is an unknown field.", e.Key)
		}
	}
	st := cc.s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	c, err := st.collForDDL(cc.db, coll)
	if err != nil {
		return nil, err
	}
	// A modify event carries the state the change replaced
	// (stateBeforeChange): the collection's options with its uuid, and
	// for an index change the index's previous values of what changed.
	before := bson.D{{Key: "collectionOptions", Value: append(bson.D{{Key: "uuid", Value: uuidValue(c.uuid)}}, query.CloneDoc(c.options)...)}}
	newOpts := query.CloneDoc(c.options)
	for _, e := range opts {
		switch e.Key {
		case "dryRun":
		case "index":
			prev, err := c.modifyIndex(cc.db, e.Value)
			if err != nil {
				return nil, err
			}
			before = append(before, bson.E{Key: "indexOptions", Value: prev})
		default:
			newOpts = query.SetOrAppend(newOpts, e.Key, e.Value)
		}
	}
	c.options = newOpts
	c.preAndPostImages = preAndPostImagesEnabled(newOpts)
	st.appendLocked(&oplogEntry{op: opModify, db: cc.db, coll: coll, collUUID: c.uuid, opDesc: opts, stateBefore: before,
		collOptions: newOpts, collIndexes: slices.Clone(c.indexes)})
	return nil, nil
}

// modifyIndex applies collMod's index option ({name or keyPattern, then
// the options to change}) and returns the previous values of what changed.
func (c *collection) modifyIndex(db string, v any) (bson.D, error) {
	spec, ok := v.(bson.D)
	if !ok {
		return nil, cmdErr(codeTypeMismatch, "BSON field 'collMod.index' is the wrong type '%s', expected type 'object'", query.TypeName(v))
	}
	name, hasName := query.Lookup(spec, "name")
	key, hasKey := query.Lookup(spec, "keyPattern")
	if !hasName && !hasKey {
		return nil, cmdErr(codeInvalidOptions, "no name or key pattern specified")
	}
	for i, ix := range c.indexes {
		if (hasName && query.Identical(name, query.MustLookup(ix, "name"))) || (hasKey && query.Identical(key, query.MustLookup(ix, "key"))) {
			prev := bson.D{}
			updated := query.CloneDoc(ix)
			for _, e := range spec {
				if e.Key == "name" || e.Key == "keyPattern" {
					continue
				}
				old, had := query.Lookup(ix, e.Key)
				if !had && e.Key == "hidden" {
					old, had = false, true
				}
				if had {
					prev = append(prev, bson.E{Key: e.Key, Value: old})
				}
				updated = query.SetOrAppend(updated, e.Key, e.Value)
			}
			c.indexes = append(slices.Clip(c.indexes[:i]), append([]bson.D{updated}, c.indexes[i+1:]...)...)
			return prev, nil
		}
	}
	what := name
	if !hasName {
		what = key
	}
	return nil, cmdErr(27, "cannot find index %s for ns %s.%s", query.FormatValue(what), db, c.name)
}
