// The plain-JavaScript IndexedDB baseline of bench/bench_replica.py, written the way
// an application would: a store "items" (keyPath "id") with an index "by_n" on "n";
// writes resolve on the transaction's `complete`. Only the records are written: no
// outbox, no clock (pysync writes both in the same transaction).
"use strict";

window.replicaBaseline = {
  // The same documents as bench_replica.py's `make_docs`, built before timing.
  makeDocs(n, start = 0) {
    const docs = new Array(n);
    for (let i = 0; i < n; i++) {
      const k = start + i;
      docs[i] = {
        id: "r" + String(k).padStart(6, "0"),
        title: `Item ${k} title text`,
        n: k,
        done: false,
        tags: ["a", "b"],
        score: 1.5,
      };
    }
    return docs;
  },

  dbs: new Map(),

  deleteDatabase(name) {
    return new Promise((resolve, reject) => {
      const request = indexedDB.deleteDatabase(name);
      request.onsuccess = () => resolve();
      request.onerror = () => reject(request.error);
      request.onblocked = () => reject(new Error(`deleting ${name} is blocked`));
    });
  },

  async open(name) {
    await this.deleteDatabase(name);
    const db = await new Promise((resolve, reject) => {
      const request = indexedDB.open(name, 1);
      request.onupgradeneeded = () => {
        const store = request.result.createObjectStore("items", { keyPath: "id" });
        store.createIndex("by_n", "n");
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    this.dbs.set(name, db);
    return db;
  },

  async drop(name) {
    const db = this.dbs.get(name);
    if (db) db.close();
    this.dbs.delete(name);
    await this.deleteDatabase(name);
  },

  done(tx) {
    return new Promise((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onabort = () => reject(tx.error ?? new Error("transaction aborted"));
    });
  },

  // One single-record put transaction of document k (a new record), from put()
  // until `complete`; its latency in ms. The database is opened by open().
  async putOne(name, k, durability) {
    const [doc] = this.makeDocs(1, k);
    const db = this.dbs.get(name);
    const t0 = performance.now();
    const tx = db.transaction("items", "readwrite", { durability });
    tx.objectStore("items").put(doc);
    await this.done(tx);
    return performance.now() - t0;
  },

  // N records in transactions of `per` records each, one after the other, on a fresh
  // database (kept open for queries); ms.
  async bulk(name, n, durability, per) {
    const db = await this.open(name);
    const docs = this.makeDocs(n);
    if (window.gc) window.gc();
    const t0 = performance.now();
    for (let start = 0; start < n; start += per) {
      const tx = db.transaction("items", "readwrite", { durability });
      const store = tx.objectStore("items");
      for (const doc of docs.slice(start, start + per)) store.put(doc);
      await this.done(tx);
    }
    return performance.now() - t0;
  },

  // A database with the stores and indexes pysync creates for the same schema.
  async openPysyncShape(name) {
    await this.deleteDatabase(name);
    const db = await new Promise((resolve, reject) => {
      const request = indexedDB.open(name, 1);
      request.onupgradeneeded = () => {
        const d = request.result;
        d.createObjectStore("items", { keyPath: "id" }).createIndex("by_n", "_ix.by_n");
        const outbox = d.createObjectStore("_outbox", { keyPath: "n" });
        outbox.createIndex("by_record", ["collection", "id"]);
        outbox.createIndex("by_state", "state");
        d.createObjectStore("_meta", { keyPath: "key" });
        d.createObjectStore("_conflicts", { keyPath: "cid" }).createIndex("by_record", ["collection", "id"]);
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    this.dbs.set(name, db);
    return db;
  },

  // The IndexedDB requests of pysync writing `docs` (new documents) in one transaction,
  // made by plain JS (its floor), in pysync's order: in one strict transaction over
  // the records, the outbox and the clock, read the clock, count the outbox twice (all
  // entries and the rejected ones, for the status), read each record and each record's
  // outbox entries; once answered, put the outbox entries, the records (with their
  // index field) and the clock, and commit. `group` is the transaction's group id (null
  // for a single put). Resolves at `complete`.
  pysyncTransaction(db, docs, group) {
    const tx = db.transaction(["items", "_outbox", "_meta"], "readwrite", { durability: "strict" });
    const items = tx.objectStore("items");
    const outbox = tx.objectStore("_outbox");
    const meta = tx.objectStore("_meta");
    const clock = meta.get("clock");
    outbox.count();
    outbox.index("by_state").count(IDBKeyRange.only("rejected"));
    for (const doc of docs) items.get(doc.id);
    let last;
    for (const doc of docs) last = outbox.index("by_record").getAll(IDBKeyRange.only(["items", doc.id]));
    last.onsuccess = () => {
      const wall = String(Date.now()).padStart(15, "0");
      let n = clock.result?.n ?? 0;
      let hlc;
      for (const doc of docs) {
        n += 1;
        hlc = `${wall}-${String(n).padStart(6, "0")}-0123456789abcdef`;
        outbox.put({
          n, mid: crypto.randomUUID().replaceAll("-", ""), collection: "items", id: doc.id,
          op: "put", value: doc, set: {}, inc: {}, base: undefined, base_v: undefined,
          follows: undefined, new: true, hlc, group: group ?? undefined, state: "pending",
          error: undefined,
        });
      }
      for (const doc of docs) items.put({ ...doc, _ix: { by_n: doc.n } });
      meta.put({ key: "clock", hlc, n });
      tx.commit();
    };
    return this.done(tx);
  },

  // One pysync put of document k, as plain JS (see pysyncTransaction). The database is
  // opened by openPysyncShape(); latency in ms.
  async putOnePysyncShape(name, k) {
    const docs = this.makeDocs(1, k);
    const db = this.dbs.get(name);
    const t0 = performance.now();
    await this.pysyncTransaction(db, docs, null);
    return performance.now() - t0;
  },

  // What pysync's bulk rows ask of IndexedDB, as plain JS (its floor): N new documents
  // in transactions of `per`, one after the other, each as pysyncTransaction does it,
  // on a fresh database of pysync's shape; ms.
  async pysyncWrites(name, n, per) {
    const db = await this.openPysyncShape(name);
    const docs = this.makeDocs(n);
    if (window.gc) window.gc();
    const t0 = performance.now();
    for (let start = 0; start < n; start += per) {
      const group = crypto.randomUUID().replaceAll("-", "");
      await this.pysyncTransaction(db, docs.slice(start, start + per), group);
    }
    const ms = performance.now() - t0;
    await this.drop(name);
    return ms;
  },

  // index.getAll over [low, high] in a readonly transaction, resolved at `complete`
  // (as pysync's query resolves); [ms, number of records].
  async rangeQuery(name, low, high) {
    const db = this.dbs.get(name);
    if (window.gc) window.gc();
    const t0 = performance.now();
    const tx = db.transaction("items", "readonly");
    const request = tx.objectStore("items").index("by_n").getAll(IDBKeyRange.bound(low, high));
    await this.done(tx);
    const ms = performance.now() - t0;
    const rows = request.result;
    if (rows.length && rows[0].n !== low) throw new Error("range query returned the wrong rows");
    return [ms, rows.length];
  },
};
