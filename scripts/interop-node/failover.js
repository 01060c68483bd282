// Drives a three-member cmd/mongosim set (-members 3) with the official
// Node.js driver: a change stream, an insert, replSetStepDown on the
// primary, then a write that goes to the new primary, twice. The
// stream must deliver every write once and in order across the elections.
// Run with `make interop-node`.
const { MongoClient } = require('mongodb');
(async () => {
  const uri = process.argv[2];
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 10000 });
  await client.connect();
  const coll = client.db('nodefailover').collection('c');
  const cs = coll.watch();
  await cs.tryNext(); // the Node driver opens a stream lazily
  const want = [];
  // Two rounds: a stepped-down member may not stand again for
  // stepDownSecs, so a third step-down of three members would wait for one.
  for (let round = 0; round < 2; round++) {
    const id = want.length;
    await coll.insertOne({ _id: id });
    want.push(id);
    const before = (await client.db('admin').command({ hello: 1 })).primary;
    await client.db('admin').command({ replSetStepDown: 10 });
    await coll.insertOne({ _id: id + 1 }); // retried on the new primary
    want.push(id + 1);
    const after = (await client.db('admin').command({ hello: 1 })).primary;
    if (before === after) throw new Error(`round ${round}: the primary did not change (${before})`);
    console.log(`step-down ${round + 1}: primary ${before} -> ${after}`);
  }
  const got = [];
  while (got.length < want.length) {
    const ev = await cs.next();
    got.push(ev.documentKey._id);
  }
  await cs.close();
  await client.close();
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`events ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
  console.log(`ok: ${got.length} events, once each and in order, through 2 step-downs`);
  // A closed client's monitor may still wait out an awaitable hello
  // (up to heartbeatFrequencyMS) before Node lets the process end.
  process.exit(0);
})().catch(e => { console.error('FAIL', e); process.exit(1); });
