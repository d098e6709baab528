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

  // Running transactions by id: Python refers to them by id only, so that a
  // transaction costs no JavaScript proxy.
  txs: new Map(),

  // sink(txId, -1, null) on commit, sink(txId, -2, error) on abort.
  begin(db, stores, mode, sink, txId) {
    const tx = db.transaction(stores, mode, { durability: "strict" });
    this.txs.set(txId, tx);
    tx.oncomplete = () => {
      this.txs.delete(txId);
      sink(txId, -1, null);
    };
    // A null error (an abort we asked for) is passed as undefined, which is None in Python.
    tx.onabort = () => {
      this.txs.delete(txId);
      sink(txId, -2, tx.error ?? undefined);
    };
    return tx;
  },

  abort(txId) {
    this.txs.get(txId)?.abort();
  },

  // Issues the requests that Python queued in one synchronous step of transaction
  // `txId` (its body, or the callbacks of one batch of results), in order, with one
  // call. `ops` is JSON text (`text` true: see IndexedDBTransaction._flush; nulls in
  // records become undefined, as to_js makes None) or the same list made by to_js.
  // The first step begins the transaction: its first op is ["begin", stores, mode]
  // and `db` is the connection. The results of the reads go back to Python
  // together, once the last one succeeded: sink(txId, batch, [result per read]). A
  // request that fails is not handled here: it aborts the transaction, whose abort
  // event reports the error. A request that throws aborts the transaction too,
  // and the error is rethrown. `values`: the arrays of records that "put_js" ops
  // name by position (records made in JavaScript, see IndexedDBTransaction.put_js).
  run(db, txId, ops, text, sink, batch, values) {
    const nulls = text && ops.includes("null");
    if (text) ops = JSON.parse(ops);
    let tx = this.txs.get(txId);
    try {
      let i = 0;
      if (tx === undefined) {
        const [, stores, mode] = ops[i++];
        tx = this.begin(db, stores, mode, sink, txId);
      }
      const out = [];
      let left = 0;
      let source = null;
      const expect = (r, slot, into = out) => {
        left++;
        r.onsuccess = () => {
          into[slot] = r.result;
          if (--left === 0) sink(txId, batch, out);
        };
      };
      for (; i < ops.length; i++) {
        const op = ops[i];
        const store = tx.objectStore(op[1]);
        switch (op[0]) {
          case "put":
            if (nulls) this.undefineNulls(op[2]);
            for (const value of op[2]) store.put(value);
            break;
          case "put_js": {
            const records = values[op[2]];
            for (const i of op[3]) store.put(records[i]);
            break;
          }
          case "delete":
            for (const key of op[2]) store.delete(key);
            break;
          case "clear":
            store.clear();
            break;
          case "get": {
            const keys = op[2];
            const records = new Array(keys.length);
            out.push(records);
            this.probed(store, keys, records, expect, (key, k) =>
              expect(store.get(key), k, records),
            );
            source = store;
            break;
          }
          case "lookup": {
            const index = store.index(op[2]);
            const keys = op[3];
            // op[4]: only the primary keys of the matches (lookup_keys).
            const read = op[4] ? index.getAllKeys.bind(index) : index.getAll.bind(index);
            const groups = new Array(keys.length);
            out.push(groups);
            this.probed(index, keys, groups, expect, (key, k) =>
              expect(read(IDBKeyRange.only(key)), k, groups),
            );
            source = store;
            break;
          }
          case "keys":
            source = store;
            // getAllKeys takes a count of 0 as "no limit".
            if (op[3] === 0) out.push([]);
            else {
              out.push(undefined);
              expect(store.getAllKeys(this.range(op[2]), op[3] ?? undefined), out.length - 1);
            }
            break;
          case "count":
            source = op[2] == null ? store : store.index(op[2]);
            out.push(undefined);
            expect(source.count(this.range(op[3])), out.length - 1);
            break;
          case "query":
            source = op[2] == null ? store : store.index(op[2]);
            out.push(undefined);
            this.query(source, this.range(op[3]), op[4], op[5], op[6], out, out.length - 1, expect);
            break;
          default:
            throw new Error(`pysync: unknown store operation ${op[0]}`);
        }
      }
      // Reads whose results were known in advance (no keys, limit 0) still
      // arrive through a request, after what the transaction did before.
      if (source !== null && left === 0) {
        source.count(IDBKeyRange.only(0)).onsuccess = () => sink(txId, batch, out);
      }
      // No reads: no callback will make another request, so the transaction can
      // commit as soon as these are done, without waiting for their results to
      // come back here first. A request that fails still aborts it.
      if (batch == null && typeof tx.commit === "function") tx.commit();
    } catch (error) {
      if (tx !== undefined && this.txs.has(txId)) tx.abort();
      throw error;
    }
  },

  // Reads many keys of a store (or an index), `read(key, k)` each, but first asks in
  // one cheap request which keys between the smallest and the largest asked for
  // exist (getAllKeys, up to twice as many): a record absent from a store, or a key
  // without entries in an index, is answered without a request of its own (`into[k]`
  // is `undefined` for a store, `[]` for an index). So a transaction writing new
  // records, or records without outbox entries, reads in one request instead of one
  // per record. Keys spread over a fuller range (more than twice as many between
  // them) are all read, as without the probe. Fewer than 4 keys: no probe.
  probed(source, keys, into, expect, read) {
    if (keys.length < 4) {
      keys.forEach(read);
      return;
    }
    const cmp = (a, b) => indexedDB.cmp(a, b);
    let low = keys[0];
    let high = keys[0];
    for (const key of keys) {
      if (cmp(key, low) < 0) low = key;
      if (cmp(key, high) > 0) high = key;
    }
    const limit = 2 * keys.length + 1;
    const request = source.getAllKeys(IDBKeyRange.bound(low, high), limit);
    // One pending read stands for the probe and the reads it leads to (those are
    // expected before the probe's own success is counted).
    const probe = { onsuccess: null, result: undefined };
    expect(probe, 0, []);
    request.onsuccess = () => {
      const found = request.result;
      const index = source instanceof IDBIndex;
      if (found.length === limit || (index && found.length > 0)) {
        // A dense range; or entries of an index, which only give their primary keys.
        keys.forEach(read);
      } else if (index) {
        keys.forEach((_, k) => (into[k] = []));
      } else {
        // The primary keys come in key order: a binary search finds each.
        const exists = (key) => {
          let a = 0;
          let b = found.length;
          while (a < b) {
            const m = (a + b) >> 1;
            const c = cmp(found[m], key);
            if (c === 0) return true;
            if (c < 0) a = m + 1;
            else b = m;
          }
          return false;
        };
        keys.forEach((key, k) => (exists(key) ? read(key, k) : (into[k] = undefined)));
      }
      probe.onsuccess();
    };
  },

  // Records sent by Python as JSON. None must be undefined, as to_js makes it: a
  // stored null reads back as JsNull, not None.
  undefineNulls(value) {
    const keys = Array.isArray(value) ? value.keys() : Object.keys(value);
    for (const key of keys) {
      const item = value[key];
      if (item === null) value[key] = undefined;
      else if (typeof item === "object") this.undefineNulls(item);
    }
  },

  // [lower, upper, lowerOpen, upperOpen, hasLower, hasUpper], or null for all keys.
  range(range) {
    if (range == null) return null;
    const [lower, upper, lowerOpen, upperOpen, hasLower, hasUpper] = range;
    if (hasLower && hasUpper) return IDBKeyRange.bound(lower, upper, lowerOpen, upperOpen);
    if (hasLower) return IDBKeyRange.lowerBound(lower, lowerOpen);
    if (hasUpper) return IDBKeyRange.upperBound(upper, upperOpen);
    return null;
  },

  // Puts the matching records into out[slot]: getAll where it can, else a cursor.
  query(source, range, reverse, offset, limit, out, slot, expect) {
    if (limit === 0) {
      out[slot] = [];
      return;
    }
    if (!reverse && offset === 0) {
      expect(source.getAll(range, limit == null ? undefined : limit), slot);
      return;
    }
    const rows = [];
    let skipped = offset === 0;
    const request = source.openCursor(range, reverse ? "prev" : "next");
    const walk = { onsuccess: null, result: rows };
    expect(walk, slot);
    request.onsuccess = () => {
      const cursor = request.result;
      if (cursor === null) return walk.onsuccess();
      if (!skipped) {
        skipped = true;
        return cursor.advance(offset);
      }
      rows.push(cursor.value);
      if (limit != null && rows.length >= limit) return walk.onsuccess();
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
