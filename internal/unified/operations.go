package unified

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
)

// operation is one entry of a test's operations.
type operation struct {
	Name                 string        `bson:"name"`
	Object               string        `bson:"object"`
	Arguments            bson.Raw      `bson:"arguments"`
	ExpectError          bson.Raw      `bson:"expectError"`
	ExpectResult         bson.RawValue `bson:"expectResult"`
	SaveResultAsEntity   string        `bson:"saveResultAsEntity"`
	IgnoreResultAndError bool          `bson:"ignoreResultAndError"`
}

// opTimeout bounds one operation, so that a stream that never sees the
// event a test waits for fails the test instead of hanging it.
const opTimeout = 30 * time.Second

// runOperation executes op and checks its outcome against expectError or
// expectResult, then saves the result when asked.
func (r *testRun) runOperation(op operation) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	result, opErr, err := r.execute(ctx, op)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", op.Name, op.Object, err)
	}
	switch {
	case op.ExpectError != nil:
		if opErr == nil {
			return fmt.Errorf("%s on %s: expected an error %s, got none (result %v)", op.Name, op.Object, op.ExpectError, result)
		}
		if err := checkError(r.matcher, op.ExpectError, opErr); err != nil {
			return fmt.Errorf("%s on %s: %w (the error: %v)", op.Name, op.Object, err, opErr)
		}
		return nil
	case op.IgnoreResultAndError:
		return nil
	case opErr != nil:
		return fmt.Errorf("%s on %s: unexpected error: %w", op.Name, op.Object, opErr)
	}
	if op.ExpectResult.Type != 0 {
		rv, _ := result.(bson.RawValue)
		if err := r.matcher.matchRoot(op.ExpectResult, rv); err != nil {
			return fmt.Errorf("%s on %s: result: %w\nactual result: %s", op.Name, op.Object, err, show(rv))
		}
	}
	if op.SaveResultAsEntity != "" {
		if err := r.entities.add(op.SaveResultAsEntity, result); err != nil {
			return err
		}
	}
	return nil
}

// execute runs op. It returns the operation's result (a bson.RawValue, a
// change stream, or nil), the error the operation itself returned, and an
// error of the runner (an unknown operation or argument).
func (r *testRun) execute(ctx context.Context, op operation) (any, error, error) {
	a := newArgs(op.Arguments)
	if op.Object == "testRunner" {
		err := r.runnerOperation(ctx, op.Name, a)
		if err == nil {
			err = a.done()
		}
		return nil, nil, err
	}
	target, err := r.entities.get(op.Object)
	if err != nil {
		return nil, nil, err
	}
	if id := a.str("session"); id != "" {
		s, err := entityAs[*sessionEntity](r.entities, id)
		if err != nil {
			return nil, nil, err
		}
		ctx = mongo.NewSessionContext(ctx, s.sess)
	}
	if op.Name == "createChangeStream" {
		sa, err := readStreamArgs(a)
		if err == nil {
			err = a.done()
		}
		if err != nil {
			return nil, nil, err
		}
		cs, opErr := openStream(ctx, target, sa, r.driverWatch)
		if opErr != nil {
			return nil, opErr, nil
		}
		return cs, nil, nil
	}
	var fn func() (any, error)
	switch t := target.(type) {
	case changeStreamUnderTest:
		fn, err = streamOperation(ctx, t, op.Name)
	case *mongo.Collection:
		fn, err = collectionOperation(ctx, t, op.Name, a)
	case *mongo.Database:
		fn, err = databaseOperation(ctx, t, op.Name, a)
	case *clientEntity:
		fn, err = clientOperation(ctx, t, op.Name, a)
	case *sessionEntity:
		fn, err = sessionOperation(ctx, t, op.Name)
	default:
		err = fmt.Errorf("entity %q (%T) has no operations", op.Object, target)
	}
	if err == nil {
		err = a.done()
	}
	if err != nil {
		return nil, nil, err
	}
	res, opErr := fn()
	if opErr != nil {
		return nil, opErr, nil
	}
	if res == nil {
		return nil, nil, nil
	}
	if rv, ok := res.(bson.RawValue); ok {
		return rv, nil, nil
	}
	rv, err := toValue(res)
	return rv, nil, err
}

// toValue turns a result into a BSON value for matching.
func toValue(v any) (bson.RawValue, error) {
	t, data, err := bson.MarshalValue(v)
	if err != nil {
		return bson.RawValue{}, fmt.Errorf("encoding the result: %w", err)
	}
	return bson.RawValue{Type: t, Value: data}, nil
}

// runnerOperation runs an operation on the "testRunner" object.
func (r *testRun) runnerOperation(ctx context.Context, name string, a *args) error {
	switch name {
	case "failPoint", "targetedFailPoint":
		// One server: a targeted fail point lands where the session is pinned.
		var c *clientEntity
		if name == "targetedFailPoint" {
			s, err := entityAs[*sessionEntity](r.entities, a.str("session"))
			if err != nil {
				return err
			}
			c = r.clientOfSession(s)
		} else {
			var err error
			if c, err = entityAs[*clientEntity](r.entities, a.str("client")); err != nil {
				return err
			}
		}
		fp, ok := a.doc("failPoint")
		if !ok || c == nil {
			return fmt.Errorf("failPoint needs a client and a failPoint document")
		}
		if err := c.client.Database("admin").RunCommand(ctx, fp).Err(); err != nil {
			return fmt.Errorf("configureFailPoint: %w", err)
		}
		fpName, _ := fp.Lookup("configureFailPoint").StringValueOK()
		r.failPoints = append(r.failPoints, enabledFailPoint{client: c.client, name: fpName})
		return nil
	case "assertCollectionExists", "assertCollectionNotExists":
		db, coll := a.str("databaseName"), a.str("collectionName")
		names, err := r.internal.Database(db).ListCollectionNames(ctx, bson.D{{Key: "name", Value: coll}})
		if err != nil {
			return err
		}
		if exists := len(names) > 0; exists != (name == "assertCollectionExists") {
			return fmt.Errorf("%s: %s.%s exists: %v", name, db, coll, exists)
		}
		return nil
	case "assertIndexExists", "assertIndexNotExists":
		db, coll, index := a.str("databaseName"), a.str("collectionName"), a.str("indexName")
		specs, err := r.internal.Database(db).Collection(coll).Indexes().ListSpecifications(ctx)
		if err != nil {
			return err
		}
		exists := false
		for _, s := range specs {
			exists = exists || s.Name == index
		}
		if exists != (name == "assertIndexExists") {
			return fmt.Errorf("%s: index %s on %s.%s exists: %v", name, index, db, coll, exists)
		}
		return nil
	case "wait":
		ms, _ := a.int64("ms")
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-ctx.Done():
		}
		return nil
	case "createEntities":
		specs, _ := a.docs("entities")
		for _, s := range specs {
			if err := r.entities.createEntity(s); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unsupported testRunner operation %q", name)
}

// clientOfSession finds the client entity a session belongs to.
func (r *testRun) clientOfSession(s *sessionEntity) *clientEntity {
	for _, v := range r.entities.entities {
		if c, ok := v.(*clientEntity); ok && s.sess.Client() == c.client {
			return c
		}
	}
	return nil
}

func streamOperation(ctx context.Context, cs changeStreamUnderTest, name string) (func() (any, error), error) {
	switch name {
	case "iterateUntilDocumentOrError":
		return func() (any, error) {
			if cs.Next(ctx) {
				return docValue(cs.Current()), nil
			}
			if err := cs.Err(); err != nil {
				return nil, err
			}
			return nil, errors.New("the change stream ended without a document or an error")
		}, nil
	case "iterateOnce":
		return func() (any, error) {
			if cs.TryNext(ctx) {
				return docValue(cs.Current()), nil
			}
			return nil, cs.Err()
		}, nil
	case "close":
		return func() (any, error) { return nil, cs.Close(ctx) }, nil
	}
	return nil, fmt.Errorf("unsupported change stream operation %q", name)
}

func sessionOperation(ctx context.Context, s *sessionEntity, name string) (func() (any, error), error) {
	switch name {
	case "endSession":
		return func() (any, error) { s.sess.EndSession(ctx); return nil, nil }, nil
	case "startTransaction":
		return func() (any, error) { return nil, s.sess.StartTransaction() }, nil
	case "commitTransaction":
		return func() (any, error) { return nil, s.sess.CommitTransaction(ctx) }, nil
	case "abortTransaction":
		return func() (any, error) { return nil, s.sess.AbortTransaction(ctx) }, nil
	}
	return nil, fmt.Errorf("unsupported session operation %q", name)
}

func clientOperation(ctx context.Context, c *clientEntity, name string, a *args) (func() (any, error), error) {
	switch name {
	case "listDatabases", "listDatabaseNames":
		filter := filterArg(a)
		if name == "listDatabaseNames" {
			return func() (any, error) { return c.client.ListDatabaseNames(ctx, filter) }, nil
		}
		return func() (any, error) {
			res, err := c.client.ListDatabases(ctx, filter)
			if err != nil {
				return nil, err
			}
			out := bson.A{}
			for _, d := range res.Databases {
				out = append(out, bson.D{{Key: "name", Value: d.Name}, {Key: "sizeOnDisk", Value: d.SizeOnDisk}, {Key: "empty", Value: d.Empty}})
			}
			return out, nil
		}, nil
	}
	return nil, fmt.Errorf("unsupported client operation %q", name)
}

func databaseOperation(ctx context.Context, db *mongo.Database, name string, a *args) (func() (any, error), error) {
	switch name {
	case "runCommand":
		cmd, ok := a.doc("command")
		if !ok {
			return nil, errors.New("runCommand needs a command")
		}
		a.str("commandName")
		ro := options.RunCmd()
		if d, ok := a.doc("readPreference"); ok {
			mode, err := readpref.ModeFromString(d.Lookup("mode").StringValue())
			if err != nil {
				return nil, err
			}
			rp, err := readpref.New(mode)
			if err != nil {
				return nil, err
			}
			ro.SetReadPreference(rp)
		}
		return func() (any, error) {
			raw, err := db.RunCommand(ctx, cmd, ro).Raw()
			if err != nil {
				return nil, err
			}
			return docValue(raw), nil
		}, nil
	case "createCollection":
		// Sent as the create command with the arguments as its options:
		// what every driver's helper sends, for any option a test names.
		coll := a.str("collection")
		cmd := bson.D{{Key: "create", Value: coll}}
		elems, _ := a.raw.Elements()
		for _, e := range elems {
			if k := e.Key(); k != "collection" && k != "session" {
				a.get(k)
				cmd = append(cmd, bson.E{Key: k, Value: e.Value()})
			}
		}
		return func() (any, error) { return nil, db.RunCommand(ctx, cmd).Err() }, nil
	case "dropCollection":
		coll := a.str("collection")
		return func() (any, error) { return nil, db.Collection(coll).Drop(ctx) }, nil
	case "listCollections", "listCollectionNames":
		filter := filterArg(a)
		if name == "listCollectionNames" {
			return func() (any, error) { return db.ListCollectionNames(ctx, filter) }, nil
		}
		return func() (any, error) {
			cur, err := db.ListCollections(ctx, filter)
			if err != nil {
				return nil, err
			}
			return allDocs(ctx, cur)
		}, nil
	case "aggregate":
		pipeline, _ := a.docs("pipeline")
		return func() (any, error) {
			cur, err := db.Aggregate(ctx, toA(pipeline))
			if err != nil {
				return nil, err
			}
			return allDocs(ctx, cur)
		}, nil
	}
	return nil, fmt.Errorf("unsupported database operation %q", name)
}

func collectionOperation(ctx context.Context, coll *mongo.Collection, name string, a *args) (func() (any, error), error) {
	switch name {
	case "insertOne":
		doc, ok := a.doc("document")
		if !ok {
			return nil, errors.New("insertOne needs a document")
		}
		o := options.InsertOne()
		if b, ok := a.boolean("bypassDocumentValidation"); ok {
			o.SetBypassDocumentValidation(b)
		}
		if v, ok := a.get("comment"); ok {
			o.SetComment(v)
		}
		return func() (any, error) {
			res, err := coll.InsertOne(ctx, doc, o)
			if err != nil {
				return nil, err
			}
			return bson.D{{Key: "insertedId", Value: res.InsertedID}}, nil
		}, nil
	case "insertMany":
		docs, _ := a.docs("documents")
		o := options.InsertMany()
		if b, ok := a.boolean("ordered"); ok {
			o.SetOrdered(b)
		}
		if v, ok := a.get("comment"); ok {
			o.SetComment(v)
		}
		return func() (any, error) {
			res, err := coll.InsertMany(ctx, docs, o)
			if err != nil {
				return nil, err
			}
			ids := bson.D{}
			for i, id := range res.InsertedIDs {
				ids = append(ids, bson.E{Key: fmt.Sprint(i), Value: id})
			}
			return bson.D{{Key: "insertedIds", Value: ids}}, nil
		}, nil
	case "updateOne", "updateMany", "replaceOne":
		filter := filterArg(a)
		var update any
		if name == "replaceOne" {
			update, _ = a.doc("replacement")
		} else {
			v, ok := a.get("update")
			if !ok {
				return nil, fmt.Errorf("%s needs an update", name)
			}
			update = updateValue(v)
		}
		upsert, hasUpsert := a.boolean("upsert")
		comment, hasComment := a.get("comment")
		arrayFilters, hasAF := a.docs("arrayFilters")
		hint, hasHint := a.get("hint")
		coll8n, hasColl8n := a.doc("collation")
		var c *options.Collation
		if hasColl8n {
			var err error
			if c, err = decodeCollation(coll8n); err != nil {
				return nil, err
			}
		}
		shared := updateSettings{collation: c}
		if hasUpsert {
			shared.upsert = &upsert
		}
		if hasComment {
			shared.comment = comment
		}
		if hasHint {
			shared.hint = hint
		}
		return func() (any, error) {
			var res *mongo.UpdateResult
			var err error
			switch name {
			case "replaceOne":
				res, err = coll.ReplaceOne(ctx, filter, update, applyUpdateSettings(options.Replace(), shared))
			case "updateOne":
				o := applyUpdateSettings(options.UpdateOne(), shared)
				if hasAF {
					o.SetArrayFilters(rawsToAny(arrayFilters))
				}
				res, err = coll.UpdateOne(ctx, filter, update, o)
			default:
				o := applyUpdateSettings(options.UpdateMany(), shared)
				if hasAF {
					o.SetArrayFilters(rawsToAny(arrayFilters))
				}
				res, err = coll.UpdateMany(ctx, filter, update, o)
			}
			if err != nil {
				return nil, err
			}
			out := bson.D{{Key: "matchedCount", Value: res.MatchedCount}, {Key: "modifiedCount", Value: res.ModifiedCount},
				{Key: "upsertedCount", Value: res.UpsertedCount}}
			if res.UpsertedID != nil {
				out = append(out, bson.E{Key: "upsertedId", Value: res.UpsertedID})
			}
			return out, nil
		}, nil
	case "deleteOne", "deleteMany":
		filter := filterArg(a)
		comment, hasComment := a.get("comment")
		return func() (any, error) {
			var res *mongo.DeleteResult
			var err error
			if name == "deleteOne" {
				o := options.DeleteOne()
				if hasComment {
					o.SetComment(comment)
				}
				res, err = coll.DeleteOne(ctx, filter, o)
			} else {
				o := options.DeleteMany()
				if hasComment {
					o.SetComment(comment)
				}
				res, err = coll.DeleteMany(ctx, filter, o)
			}
			if err != nil {
				return nil, err
			}
			return bson.D{{Key: "deletedCount", Value: res.DeletedCount}}, nil
		}, nil
	case "find":
		filter := filterArg(a)
		o := options.Find()
		if d, ok := a.doc("sort"); ok {
			o.SetSort(d)
		}
		if d, ok := a.doc("projection"); ok {
			o.SetProjection(d)
		}
		if n, ok := a.int64("limit"); ok {
			o.SetLimit(n)
		}
		if n, ok := a.int64("skip"); ok {
			o.SetSkip(n)
		}
		if n, ok := a.int64("batchSize"); ok {
			o.SetBatchSize(int32(n))
		}
		if v, ok := a.get("comment"); ok {
			o.SetComment(v)
		}
		return func() (any, error) {
			cur, err := coll.Find(ctx, filter, o)
			if err != nil {
				return nil, err
			}
			return allDocs(ctx, cur)
		}, nil
	case "aggregate":
		pipeline, _ := a.docs("pipeline")
		o := options.Aggregate()
		if n, ok := a.int64("batchSize"); ok {
			o.SetBatchSize(int32(n))
		}
		if v, ok := a.get("comment"); ok {
			o.SetComment(v)
		}
		return func() (any, error) {
			cur, err := coll.Aggregate(ctx, toA(pipeline), o)
			if err != nil {
				return nil, err
			}
			return allDocs(ctx, cur)
		}, nil
	case "countDocuments":
		filter := filterArg(a)
		return func() (any, error) { return coll.CountDocuments(ctx, filter) }, nil
	case "estimatedDocumentCount":
		return func() (any, error) { return coll.EstimatedDocumentCount(ctx) }, nil
	case "distinct":
		field := a.str("fieldName")
		filter := filterArg(a)
		return func() (any, error) {
			res := coll.Distinct(ctx, field, filter)
			raw, err := res.Raw()
			if err != nil {
				return nil, err
			}
			return bson.RawValue{Type: bson.TypeArray, Value: raw}, nil
		}, nil
	case "findOneAndUpdate", "findOneAndReplace", "findOneAndDelete":
		filter := filterArg(a)
		var update any
		if v, ok := a.get("update"); ok {
			update = updateValue(v)
		}
		if d, ok := a.doc("replacement"); ok {
			update = d
		}
		after := a.str("returnDocument") == "After"
		upsert, hasUpsert := a.boolean("upsert")
		sort, hasSort := a.doc("sort")
		return func() (any, error) {
			var res *mongo.SingleResult
			switch name {
			case "findOneAndUpdate":
				o := options.FindOneAndUpdate()
				if after {
					o.SetReturnDocument(options.After)
				}
				if hasUpsert {
					o.SetUpsert(upsert)
				}
				if hasSort {
					o.SetSort(sort)
				}
				res = coll.FindOneAndUpdate(ctx, filter, update, o)
			case "findOneAndReplace":
				o := options.FindOneAndReplace()
				if after {
					o.SetReturnDocument(options.After)
				}
				if hasUpsert {
					o.SetUpsert(upsert)
				}
				if hasSort {
					o.SetSort(sort)
				}
				res = coll.FindOneAndReplace(ctx, filter, update, o)
			default:
				o := options.FindOneAndDelete()
				if hasSort {
					o.SetSort(sort)
				}
				res = coll.FindOneAndDelete(ctx, filter, o)
			}
			raw, err := res.Raw()
			if errors.Is(err, mongo.ErrNoDocuments) {
				return bson.RawValue{Type: bson.TypeNull}, nil
			}
			if err != nil {
				return nil, err
			}
			return docValue(raw), nil
		}, nil
	case "createIndex":
		keys, ok := a.doc("keys")
		if !ok {
			return nil, errors.New("createIndex needs keys")
		}
		o := options.Index()
		if s := a.str("name"); s != "" {
			o.SetName(s)
		}
		if b, ok := a.boolean("unique"); ok {
			o.SetUnique(b)
		}
		return func() (any, error) {
			return coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: keys, Options: o})
		}, nil
	case "dropIndex":
		index := a.str("name")
		return func() (any, error) { return nil, coll.Indexes().DropOne(ctx, index) }, nil
	case "dropIndexes":
		return func() (any, error) { return nil, coll.Indexes().DropAll(ctx) }, nil
	case "listIndexes":
		return func() (any, error) {
			cur, err := coll.Indexes().List(ctx)
			if err != nil {
				return nil, err
			}
			return allDocs(ctx, cur)
		}, nil
	case "drop":
		return func() (any, error) { return nil, coll.Drop(ctx) }, nil
	case "rename":
		// The v2 driver has no rename helper: send the command the other
		// drivers' helpers send, on admin.
		to := a.str("to")
		cmd := bson.D{
			{Key: "renameCollection", Value: coll.Database().Name() + "." + coll.Name()},
			{Key: "to", Value: coll.Database().Name() + "." + to},
		}
		if b, ok := a.boolean("dropTarget"); ok {
			cmd = append(cmd, bson.E{Key: "dropTarget", Value: b})
		}
		admin := coll.Database().Client().Database("admin")
		return func() (any, error) { return nil, admin.RunCommand(ctx, cmd).Err() }, nil
	}
	return nil, fmt.Errorf("unsupported collection operation %q", name)
}

// updateValue turns an update argument, a document of operators or an
// aggregation pipeline, into a value the driver accepts for either.
func updateValue(v bson.RawValue) any {
	if arr, ok := v.ArrayOK(); ok {
		vals, _ := arr.Values()
		out := bson.A{}
		for _, st := range vals {
			out = append(out, st.Document())
		}
		return out
	}
	return v.Document()
}

// filterArg reads the filter argument; a missing filter matches everything.
func filterArg(a *args) any {
	if d, ok := a.doc("filter"); ok {
		return d
	}
	return bson.D{}
}

func toA(docs []bson.Raw) bson.A {
	out := make(bson.A, 0, len(docs))
	for _, d := range docs {
		out = append(out, d)
	}
	return out
}

func rawsToAny(docs []bson.Raw) []any {
	out := make([]any, 0, len(docs))
	for _, d := range docs {
		out = append(out, d)
	}
	return out
}

func allDocs(ctx context.Context, cur *mongo.Cursor) (any, error) {
	defer cur.Close(context.WithoutCancel(ctx))
	out := bson.A{}
	for cur.Next(ctx) {
		out = append(out, append(bson.Raw(nil), cur.Current...))
	}
	return out, cur.Err()
}

// checkError matches an operation's error with expectError.
func checkError(m *matcher, spec bson.Raw, opErr error) error {
	a := newArgs(spec)
	var ce mongo.CommandError
	var we mongo.WriteException
	var bwe mongo.BulkWriteException
	isServer := (errors.As(opErr, &ce) && ce.Code != 0) || errors.As(opErr, &we) || errors.As(opErr, &bwe)
	a.boolean("isError")
	if b, ok := a.boolean("isClientError"); ok && b == isServer {
		if b {
			return errors.New("expected a client error, got a server error")
		}
		return errors.New("expected a server error, got a client error")
	}
	if b, ok := a.boolean("isTimeoutError"); ok && b != mongo.IsTimeout(opErr) {
		return fmt.Errorf("expected isTimeoutError %v", b)
	}
	if s := a.str("errorContains"); s != "" && !strings.Contains(strings.ToLower(opErr.Error()), strings.ToLower(s)) {
		return fmt.Errorf("expected the error to contain %q", s)
	}
	if code, ok := a.int64("errorCode"); ok {
		var se mongo.ServerError
		if !errors.As(opErr, &se) || !se.HasErrorCode(int(code)) {
			return fmt.Errorf("expected error code %d", code)
		}
	}
	if name := a.str("errorCodeName"); name != "" {
		got := ce.Name
		if got == "" && we.WriteConcernError != nil {
			got = we.WriteConcernError.Name
		}
		if got != name {
			return fmt.Errorf("expected code name %q, got %q", name, got)
		}
	}
	var le mongo.LabeledError
	hasLabels := errors.As(opErr, &le)
	if labels, ok := a.strings("errorLabelsContain"); ok {
		for _, l := range labels {
			if !hasLabels || !le.HasErrorLabel(l) {
				return fmt.Errorf("expected error label %q", l)
			}
		}
	}
	if labels, ok := a.strings("errorLabelsOmit"); ok {
		for _, l := range labels {
			if hasLabels && le.HasErrorLabel(l) {
				return fmt.Errorf("expected no error label %q", l)
			}
		}
	}
	if v, ok := a.get("errorResponse"); ok {
		if ce.Raw == nil {
			return errors.New("expected a server response to match errorResponse")
		}
		if err := m.matchRoot(v, docValue(bson.Raw(ce.Raw))); err != nil {
			return fmt.Errorf("errorResponse: %w", err)
		}
	}
	a.get("expectResult") // partial results of bulk writes: none of our operations has them
	return a.done()
}

// updateSettings are the options updateOne, updateMany and replaceOne share;
// unset ones stay nil so that the driver leaves them out of the command.
type updateSettings struct {
	upsert    *bool
	comment   any
	hint      any
	collation *options.Collation
}

// updateBuilder is what the driver's three option builders have in common.
type updateBuilder[B any] interface {
	SetUpsert(bool) B
	SetComment(any) B
	SetHint(any) B
	SetCollation(*options.Collation) B
}

// applyUpdateSettings sets the shared options on any of the three builders.
func applyUpdateSettings[B updateBuilder[B]](o B, s updateSettings) B {
	if s.upsert != nil {
		o.SetUpsert(*s.upsert)
	}
	if s.comment != nil {
		o.SetComment(s.comment)
	}
	if s.hint != nil {
		o.SetHint(s.hint)
	}
	if s.collation != nil {
		o.SetCollation(s.collation)
	}
	return o
}
