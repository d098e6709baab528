// The plain-JavaScript IndexedDB baseline of bench/bench_store.py, written the way
// an application would: one readwrite transaction, a loop of put(), resolve on
// `complete`; one readonly transaction with getAll() to read back.
// Durability is "strict", as pysync's transactions (_idb_helpers.js `begin`) use.
"use strict";

window.storeBaseline = {
  // The same records as bench_store.py's `make_records`, built before timing.
  makeRecords(n) {
    const records = new Array(n);
    for (let i = 0; i < n; i++) {
      records[i] = {
        id: "r" + String(i).padStart(6, "0"),
        title: `Item ${i} title text`,
        n: i,
        done: false,
        tags: ["a", "b"],
        score: 1.5,
      };
    }
    return records;
  },

  deleteDatabase(name) {
    return new Promise((resolve, reject) => {
      const request = indexedDB.deleteDatabase(name);
      request.onsuccess = () => resolve();
      request.onerror = () => reject(request.error);
      request.onblocked = () => reject(new Error(`deleting ${name} is blocked`));
    });
  },

  open(name) {
    return new Promise((resolve, reject) => {
      const request = indexedDB.open(name, 1);
      request.onupgradeneeded = () => request.result.createObjectStore("items", { keyPath: "id" });
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  },

  // Resolves when the transaction committed.
  done(tx) {
    return new Promise((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onabort = () => reject(tx.error ?? new Error("transaction aborted"));
    });
  },

  // Resolves with the time the put() loop itself took (the rest is the commit).
  async putAll(db, records, durability) {
    const tx = db.transaction("items", "readwrite", { durability });
    const store = tx.objectStore("items");
    const t0 = performance.now();
    for (const record of records) store.put(record);
    const loop = performance.now() - t0;
    await this.done(tx);
    return loop;
  },

  // Resolves with the records once the (readonly) transaction completed, as
  // pysync's db.query() does.
  async getAll(db) {
    const tx = db.transaction("items", "readonly");
    const request = tx.objectStore("items").getAll();
    await this.done(tx);
    return request.result;
  },

  // One run: a fresh database, N records written (timed), read back (timed), deleted.
  async run(name, n, durability) {
    await this.deleteDatabase(name);
    const db = await this.open(name);
    const records = this.makeRecords(n);
    if (window.gc) window.gc();
    const t0 = performance.now();
    const loop = await this.putAll(db, records, durability);
    const t1 = performance.now();
    if (window.gc) window.gc();
    const t2 = performance.now();
    const back = await this.getAll(db);
    const t3 = performance.now();
    if (back.length !== n || back[7].title !== records[7].title) throw new Error("read back differs");
    db.close();
    await this.deleteDatabase(name);
    return { write_ms: t1 - t0, read_ms: t3 - t2, put_loop_ms: loop };
  },
};
