// Decodes every resume token cmd/mongosim issues with MongoDB's own decoder
// (npm mongodb-resumetoken-decoder) and checks each field against the event
// it came from: cluster time, version 2, tokenType 128 for events and 0 for
// high-water marks, txnOpIndex, fromInvalidate, collection UUID and the
// eventIdentifier ({operationType, documentKey} for CRUD events,
// {operationType, operationDescription} for DDL). It also runs
// `changestream token -json` (the path in argv[3]) on every token and checks
// that it reads the same fields as MongoDB's decoder. Run with
// `make interop-node`.
const { execFileSync } = require('child_process');
const { MongoClient, Long, Double, Int32 } = require('mongodb');
const { decodeResumeToken } = require('mongodb-resumetoken-decoder');

function check(cond, what) {
  if (!cond) throw new Error('token check failed: ' + what);
}

(async () => {
  const uri = process.argv[2];
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 5000 });
  await client.connect();
  const db = client.db('tokdb');
  const coll = db.collection('c');
  await coll.insertOne({ _id: 'seed' });
  const uuid = (await db.listCollections({ name: 'c' }).next()).info.uuid.toHexString().replace(/-/g, '');
  const cs = db.watch([], { showExpandedEvents: true });
  await cs.tryNext(); // opens the cursor before the writes
  const ids = [new Int32(1), Long.fromNumber(2), new Double(3.0), 'four', { a: 5, b: [6, 'x'] }, new Date(0)];
  for (const id of ids) await coll.insertOne({ _id: id, v: 1 });
  await coll.updateOne({ _id: 'four' }, { $set: { v: 2 } });
  await coll.deleteOne({ _id: new Int32(1) });
  await coll.createIndex({ v: 1 });
  // dropDatabase drops the collection (a drop event) and then the
  // database, which invalidates the database stream.
  await db.dropDatabase();

  let n = 0;
  for (;;) {
    const ev = await cs.next();
    const tok = decodeResumeToken(ev._id._data);
    check(tok.timestamp.equals(ev.clusterTime), `${ev.operationType}: timestamp`);
    check(tok.version === 2, `${ev.operationType}: version ${tok.version}`);
    check(tok.tokenType === 128, `${ev.operationType}: tokenType ${tok.tokenType}`);
    check(tok.txnOpIndex === 0, `${ev.operationType}: txnOpIndex`);
    check(tok.fromInvalidate === (ev.operationType === 'invalidate'), `${ev.operationType}: fromInvalidate`);
    const id = tok.eventIdentifier;
    if (ev.operationType === 'dropDatabase') {
      check(tok.uuid === undefined && id === undefined, 'dropDatabase carries no UUID');
    } else if (ev.operationType !== 'invalidate') {
      check(tok.uuid && tok.uuid.toHexString().replace(/-/g, '') === uuid, `${ev.operationType}: uuid ${tok.uuid}`);
      check(id.operationType === ev.operationType, `${ev.operationType}: eventIdentifier.operationType`);
      if (ev.documentKey) {
        check(JSON.stringify(id.documentKey) === JSON.stringify(ev.documentKey, (k, v) => v),
          `${ev.operationType}: documentKey ${JSON.stringify(id.documentKey)} vs ${JSON.stringify(ev.documentKey)}`);
      }
    }
    const ours = JSON.parse(execFileSync(process.argv[3], ['token', '-json', ev._id._data]).toString());
    check(ours.clusterTime.t === tok.timestamp.high && ours.clusterTime.i === tok.timestamp.low, `${ev.operationType}: changestream token: cluster time`);
    check(ours.tokenType === tok.tokenType && ours.txnOpIndex === tok.txnOpIndex && ours.fromInvalidate === tok.fromInvalidate,
      `${ev.operationType}: changestream token: type, txnOpIndex, fromInvalidate`);
    check((ours.uuid || '') === (tok.uuid ? tok.uuid.toHexString() : ''), `${ev.operationType}: changestream token: uuid ${ours.uuid}`);
    check((ours.eventIdentifier && ours.eventIdentifier.operationType) === (id && id.operationType),
      `${ev.operationType}: changestream token: eventIdentifier`);
    console.log('token', ev.operationType, JSON.stringify(id), ev._id._typeBits ? 'typeBits' : '');
    n++;
    if (ev.operationType === 'invalidate') break;
  }
  // An empty getMore leaves the stream at a high-water mark.
  const quiet = coll.watch();
  await quiet.tryNext();
  const hwm = decodeResumeToken(quiet.resumeToken._data);
  check(hwm.tokenType === 0 && hwm.uuid === undefined, 'high-water mark');
  await quiet.close();
  await cs.close();
  await client.close();
  console.log(`ok: ${n} event tokens and a high-water mark decoded by mongodb-resumetoken-decoder`);
})().catch(e => { console.error('FAILED', e); process.exit(1); });
