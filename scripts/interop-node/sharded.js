// Drives a cmd/mongosim sharded cluster (-shards 2 -mongos 2) with the
// official Node.js driver, through both mongos: a collection sharded on
// {sku: 1}, split at 50 with the upper chunk moved to shard1; a change
// stream with updateLookup; writes to both shards and a chunk moved back
// under the stream. Every write must arrive once, in order, with the shard
// key in its documentKey and no event from the migration; a stream resumed
// on the other mongos from the third event's token must give exactly the
// rest. Run with `make interop-node`.
const { MongoClient } = require('mongodb');
(async () => {
  const uri = process.argv[2];
  const hosts = uri.replace('mongodb://', '').replace(/\/.*$/, '').split(',');
  if (hosts.length < 2) throw new Error(`want two mongos in ${uri}`);
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 10000 });
  await client.connect();
  const hello = await client.db('admin').command({ hello: 1 });
  if (hello.msg !== 'isdbgrid') throw new Error(`not a mongos: ${JSON.stringify(hello)}`);
  const admin = client.db('admin');
  const db = client.db('nodesharded');
  await db.createCollection('c');
  await admin.command({ shardCollection: 'nodesharded.c', key: { sku: 1 } });
  await admin.command({ split: 'nodesharded.c', middle: { sku: 50 } });
  await admin.command({ moveChunk: 'nodesharded.c', find: { sku: 60 }, to: 'shard1', _waitForDelete: true });
  const coll = db.collection('c');
  const cs = coll.watch([], { fullDocument: 'updateLookup' });
  await cs.tryNext(); // the Node driver opens a stream lazily
  await coll.insertOne({ _id: 1, sku: 10 });
  await coll.insertOne({ _id: 2, sku: 60 });
  await coll.insertOne({ _id: 3, sku: 20 });
  await admin.command({ moveChunk: 'nodesharded.c', find: { sku: 60 }, to: 'shard0', _waitForDelete: true });
  await coll.updateOne({ sku: 60 }, { $set: { moved: true } });
  await coll.deleteOne({ sku: 10 });
  const want = ['insert 10/1', 'insert 60/2', 'insert 20/3', 'update 60/2', 'delete 10/1'];
  const got = [];
  const tokens = [];
  let lookedUp;
  while (got.length < want.length) {
    const ev = await cs.next();
    got.push(`${ev.operationType} ${ev.documentKey.sku}/${ev.documentKey._id}`);
    tokens.push(ev._id);
    if (ev.operationType === 'update') lookedUp = ev.fullDocument;
    const keys = Object.keys(ev.documentKey).join(',');
    if (keys !== 'sku,_id') throw new Error(`documentKey fields ${keys}, want sku,_id`);
  }
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`events ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
  if (!lookedUp || lookedUp.moved !== true) throw new Error(`updateLookup gave ${JSON.stringify(lookedUp)}`);
  await cs.close();
  await client.close();

  const other = new MongoClient(`mongodb://${hosts[1]}/?directConnection=true`, { serverSelectionTimeoutMS: 10000 });
  await other.connect();
  const resumed = other.db('nodesharded').collection('c').watch([], { resumeAfter: tokens[2] });
  const rest = [];
  while (rest.length < 2) {
    const ev = await resumed.next();
    rest.push(`${ev.operationType} ${ev.documentKey.sku}/${ev.documentKey._id}`);
  }
  await resumed.close();
  await other.close();
  if (JSON.stringify(rest) !== JSON.stringify(want.slice(3))) {
    throw new Error(`resumed on the other mongos: ${JSON.stringify(rest)}, want ${JSON.stringify(want.slice(3))}`);
  }
  console.log(`ok: ${got.length} events through 2 mongos, shard key in each documentKey, none from 2 migrations; resumed on the other mongos with exactly the rest`);
  process.exit(0);
})().catch(e => { console.error('FAIL', e); process.exit(1); });
