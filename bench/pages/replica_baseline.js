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
  async openPysyncShape(name, design = "today") {
    await this.deleteDatabase(name);
    const db = await new Promise((resolve, reject) => {
      const request = indexedDB.open(name, 1);
      request.onupgradeneeded = () => {
        const d = request.result;
        d.createObjectStore("items", { keyPath: "id" }).createIndex("by_n", "_ix.by_n");
        const outbox = d.createObjectStore("_outbox", { keyPath: "n" });
        if (design === "entry per document") {
          // pysync's layout 1: an entry per row, indexed by record and by state.
          outbox.createIndex("by_record", ["collection", "id"]);
          outbox.createIndex("by_state", "state");
        } else {
          // Layout 2 (today): a row lists its records, and its rejected entries (sparse).
          outbox.createIndex("by_record", "records", { multiEntry: true });
          outbox.createIndex("by_rejected", "rejected", { multiEntry: true });
        }
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
  // the records, the outbox and the clock, read the clock, each record and each
  // record's outbox entries (from 4 documents on, as _idb_helpers.js `probed` does:
  // one getAllKeys over the records' key range and one over the outbox entries'
  // range, which answer new documents at once); once answered, put the outbox
  // entries (today: one row for a transaction's, listing their records), the records
  // (with their index field) and the clock, and commit. `group` is the transaction's
  // group id (null for a single put). Resolves at `complete`.
  pysyncTransaction(db, docs, group, design = "today") {
    const tx = db.transaction(["items", "_outbox", "_meta"], "readwrite", { durability: "strict" });
    const items = tx.objectStore("items");
    const outbox = tx.objectStore("_outbox");
    const meta = tx.objectStore("_meta");
    const clock = meta.get("clock");
    const byRecord = outbox.index("by_record");
    let last;
    const old = design === "entry per document";
    if (docs.length < 4) {
      for (const doc of docs) items.get(doc.id);
      for (const doc of docs) last = byRecord.getAll(IDBKeyRange.only(["items", doc.id]));
    } else {
      const [low, high] = [docs[0].id, docs[docs.length - 1].id];
      const limit = 2 * docs.length + 1;
      items.getAllKeys(IDBKeyRange.bound(low, high), limit);
      last = byRecord.getAllKeys(IDBKeyRange.bound(["items", low], ["items", high]), limit);
    }
    last.onsuccess = () => {
      const wall = String(Date.now()).padStart(15, "0");
      let n = clock.result?.n ?? 0;
      let hlc;
      const entries = docs.map((doc) => {
        n += 1;
        hlc = `${wall}-${String(n).padStart(6, "0")}-0123456789abcdef`;
        return this.entry(n, doc, hlc, group);
      });
      if (old) {
        for (const entry of entries) outbox.put(entry);
      } else if (group) {
        const row = entries[0].n;
        for (const entry of entries) entry.row = row;
        outbox.put({ n: row, entries, records: docs.map((doc) => ["items", doc.id]) });
      } else {
        for (const entry of entries) outbox.put({ ...entry, records: [["items", entry.id]] });
      }
      for (const doc of docs) items.put({ ...doc, _ix: { by_n: doc.n } });
      meta.put({ key: "clock", hlc, n });
      tx.commit();
    };
    return this.done(tx);
  },

  // An outbox entry of pysync's shape for a new document.
  entry(n, doc, hlc, group) {
    return {
      n, mid: crypto.randomUUID().replaceAll("-", ""), collection: "items", id: doc.id,
      op: "put", value: doc, set: {}, inc: {}, base: undefined, base_v: undefined,
      base_m: undefined, follows: undefined, new: true, hlc, group: group ?? undefined,
      state: "pending", error: undefined,
    };
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

  // What one transaction of `per` new documents costs IndexedDB under different outbox
  // designs, plain JS, each design on a database of its own, the designs taking turns
  // transaction by transaction (order flipped every round), `rounds` transactions each:
  // "records alone" (the JS baseline), "today" (pysync's requests: one outbox row per
  // transaction), "entry per document" (pysync's layout 1: an outbox row per document,
  // indexed by record and by state). ms per transaction.
  async outboxDesigns(rounds, per) {
    const designs = ["records alone", "today", "entry per document"];
    const dbs = {};
    for (const design of designs) {
      const name = `bench-design-${designs.indexOf(design)}`;
      dbs[design] = design === "records alone" ? await this.open(name) : await this.openPysyncShape(name, design);
    }
    const times = Object.fromEntries(designs.map((d) => [d, []]));
    for (let round = 0; round < rounds; round++) {
      const docs = this.makeDocs(per, round * per);
      for (const design of round % 2 ? designs : [...designs].reverse()) {
        const t0 = performance.now();
        if (design === "records alone") {
          const tx = dbs[design].transaction("items", "readwrite", { durability: "strict" });
          const store = tx.objectStore("items");
          for (const doc of docs) store.put(doc);
          await this.done(tx);
        } else {
          await this.pysyncTransaction(dbs[design], docs, `g${round}`, design);
        }
        times[design].push(performance.now() - t0);
      }
    }
    for (const design of designs) await this.drop(`bench-design-${designs.indexOf(design)}`);
    return times;
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
