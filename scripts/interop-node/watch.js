// Drives cmd/mongosim with the official Node.js driver, as a user of
// another language would: a change stream with updateLookup, inserts,
// updates, a replacement and a delete, a failCommand fail point that forces
// a resume, then find, count and listDatabases. Run with `make interop-node`.
const { MongoClient } = require('mongodb');
(async () => {
  const uri = process.argv[2];
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 5000 });
  await client.connect();
  const coll = client.db('nodedb').collection('c');
  const cs = coll.watch([], { fullDocument: 'updateLookup' });
  const events = [];
  const reader = (async () => {
    for await (const ev of cs) {
      events.push(ev.operationType + ':' + JSON.stringify(ev.documentKey));
      console.log('event', ev.operationType, JSON.stringify(ev.fullDocument));
      if (events.length === 5) break;
    }
  })();
  await new Promise(r => setTimeout(r, 300));
  await coll.insertOne({ _id: 1, a: 1 });
  await coll.updateOne({ _id: 1 }, { $set: { a: 2 } });
  // inject a resumable error on the next getMore
  await client.db('admin').command({ configureFailPoint: 'failCommand', mode: { times: 1 },
    data: { failCommands: ['getMore'], errorCode: 10107, errorLabels: ['ResumableChangeStreamError'] } });
  await coll.insertOne({ _id: 2, a: 3 });
  await coll.replaceOne({ _id: 2 }, { a: 4 });
  await coll.deleteOne({ _id: 1 });
  await reader;
  await cs.close();
  console.log('find:', JSON.stringify(await coll.find({}).toArray()));
  console.log('count:', await coll.countDocuments());
  console.log('dbs:', JSON.stringify((await client.db().admin().listDatabases()).databases.map(d => d.name)));
  await client.close();
  if (events.length !== 5) throw new Error(`expected 5 events, got ${events.length}`);
  console.log('ok: 5 events through a forced resume');
})().catch(e => { console.error('FAILED', e); process.exit(1); });
