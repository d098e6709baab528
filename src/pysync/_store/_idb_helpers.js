// Small JavaScript helpers for pysync's IndexedDB backend (_indexeddb.py).
// They keep loops over many requests, and the event wiring, on the JavaScript
// side: one call from Python issues a whole batch, and every request reports to
// a single Python "sink" (one proxy per database) instead of one proxy each.
({
  // Resolves with the open connection; `upgrade(db, tx, oldVersion)` runs in
  // the versionchange transaction and must issue its requests synchronously.
  open(name, version, upgrade) {
    return new Promise((resolve, reject) => {
      const request = indexedDB.open(name, version);
      request.onupgradeneeded = (event) =>
        upgrade(request.result, request.transaction, event.oldVersion);
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
      request.onblocked = () => console.warn(`pysync: opening ${name} waits for other tabs to close it`);
    });
  },

  deleteDatabase(name) {
    return new Promise((resolve, reject) => {
      const request = indexedDB.deleteDatabase(name);
      request.onsuccess = () => resolve();
      request.onerror = () => reject(request.error);
    });
  },

  // sink(txId, -1, null) on commit, sink(txId, -2, error) on abort.
  begin(db, stores, mode, sink, txId) {
    const tx = db.transaction(stores, mode, { durability: "strict" });
    tx.oncomplete = () => sink(txId, -1, null);
    // A null error (an abort we asked for) is passed as undefined, which is None in Python.
    tx.onabort = () => sink(txId, -2, tx.error ?? undefined);
    return tx;
  },

  source(tx, store, index) {
    const objectStore = tx.objectStore(store);
    return index === undefined || index === null ? objectStore : objectStore.index(index);
  },

  // Records sent by Python as one JSON text (see _records_to_js). None must be
  // undefined, as to_js makes it: a stored null reads back as JsNull, not None.
  parseRecords(text) {
    const values = JSON.parse(text);
    if (text.includes("null")) this.undefineNulls(values);
    return values;
  },

  undefineNulls(value) {
    const keys = Array.isArray(value) ? value.keys() : Object.keys(value);
    for (const key of keys) {
      const item = value[key];
      if (item === null) value[key] = undefined;
      else if (typeof item === "object") this.undefineNulls(item);
    }
  },

  putAll(store, values) {
    for (const value of values) store.put(value);
  },

  deleteAll(store, keys) {
    for (const key of keys) store.delete(key);
  },

  // A failing request is not handled here: it aborts the transaction, whose
  // abort event reports the error.
  // One request per key (made by `request(key)`); reports the results, in key
  // order, once the last one succeeded.
  gather(source, keys, request, sink, txId, requestId) {
    const out = new Array(keys.length);
    let left = keys.length;
    if (left === 0) return this.later(source, out, sink, txId, requestId);
    keys.forEach((key, i) => {
      const r = request(key);
      r.onsuccess = () => {
        out[i] = r.result;
        if (--left === 0) sink(txId, requestId, out);
      };
    });
  },

  // A missing record is undefined, which Python reads as None.
  getMany(store, keys, sink, txId, requestId) {
    this.gather(store, keys, (key) => store.get(key), sink, txId, requestId);
  },

  lookup(source, keys, sink, txId, requestId) {
    const all = (key) => source.getAll(IDBKeyRange.only(key));
    this.gather(source, keys, all, sink, txId, requestId);
  },

  count(source, range, sink, txId, requestId) {
    const request = source.count(range);
    request.onsuccess = () => sink(txId, requestId, request.result);
  },

  // Delivers a result known in advance through a request, so that it still
  // arrives in request order.
  later(source, value, sink, txId, requestId) {
    const request = source.count(IDBKeyRange.only(0));
    request.onsuccess = () => sink(txId, requestId, value);
  },

  query(source, range, reverse, offset, limit, sink, txId, requestId) {
    if (limit === 0) return this.later(source, [], sink, txId, requestId);
    if (!reverse && offset === 0) {
      const request = source.getAll(range, limit === null ? undefined : limit);
      request.onsuccess = () => sink(txId, requestId, request.result);
      return;
    }
    const out = [];
    let skipped = offset === 0;
    const request = source.openCursor(range, reverse ? "prev" : "next");
    request.onsuccess = () => {
      const cursor = request.result;
      if (cursor === null) return sink(txId, requestId, out);
      if (!skipped) {
        skipped = true;
        return cursor.advance(offset);
      }
      out.push(cursor.value);
      if (limit !== null && out.length >= limit) return sink(txId, requestId, out);
      cursor.continue();
    };
  },

  // Describes the stored schema, to compare it with the declared one.
  describe(tx, stores) {
    return stores.map((name) => {
      const store = tx.objectStore(name);
      const indexes = Array.from(store.indexNames).map((indexName) => {
        const index = store.index(indexName);
        return [indexName, index.keyPath, index.unique, index.multiEntry];
      });
      return [name, store.keyPath, indexes];
    });
  },
})
