// A base sync page's DynamoDB items made into pysync records in JavaScript, without
// entering Python (pysync._sync._images). Each record is exactly what the Python
// path stores (the document, _v, _m, _seq, the _ix index keys, as
// IndexedDBTransaction sends it: nulls as undefined). Whatever that path treats
// specially is not converted here: bytes, numbers that are not plain decimals of
// at most 15 integer digits, reserved or odd field names, system fields of an
// unusual type, keys that are not strings or safe integers. Then convert()
// returns undefined (None in Python) and the page takes the Python path, which stores it (or refuses it)
// as before.
({
  // page: the parsed Query response. prefix: the namespace's sort-key prefix.
  // specs: {collection: [keyPath, [[indexName, indexKeyPath], ...]]}. seq: the
  // records' _seq. Returns {records, meta} or undefined: records[i] is item i's
  // record (undefined for a tombstone or an item of no known collection); meta
  // is JSON text: {sk: [item i's sort key], gone: [the tombstones' i], hlc: the
  // largest _hlc}.
  convert(page, prefix, specs, seq) {
    specs = JSON.parse(specs);
    const items = page.Items ?? [];
    const records = new Array(items.length);
    const sks = new Array(items.length);
    const gone = [];
    let hlc = "";
    try {
      for (let i = 0; i < items.length; i++) {
        const item = items[i];
        const sk = item.sk?.S;
        if (typeof sk !== "string") return undefined;
        sks[i] = sk;
        if (!sk.startsWith(prefix)) continue;
        const hash = sk.indexOf("#", prefix.length);
        const collection = hash < 0 ? "" : sk.slice(prefix.length, hash);
        const spec = Object.hasOwn(specs, collection) ? specs[collection] : undefined;
        const values = this.map(item);
        const stamp = values._hlc;
        if (stamp !== undefined && hash >= 0) {
          if (typeof stamp !== "string" || !/^[\x00-\x7f]*$/.test(stamp)) return undefined;
          if (stamp > hlc) hlc = stamp;
        }
        const deleted = values._del;
        if (deleted !== undefined && typeof deleted !== "boolean") return undefined;
        if (deleted) gone.push(i);
        if (spec === undefined || deleted) continue;
        const record = this.record(values, seq);
        if (record === null || !this.index(record, spec)) return undefined;
        records[i] = record;
      }
    } catch (error) {
      if (error === this.odd) return undefined;
      throw error;
    }
    return { records, meta: JSON.stringify({ sk: sks, gone, hlc }) };
  },

  odd: new Error("pysync: an item for the Python path"),
  system: new Set(["pk", "sk", "_v", "_hlc", "_c", "_m", "_del", "_ttl"]),
  // Python's int() and float() agree with Number() on these, and the value is
  // an int of at most 15 digits (below 2**53) or a float.
  number: /^-?\d{1,15}(\.\d+)?$/,

  map(attrs) {
    const out = {};
    for (const name of Object.keys(attrs)) {
      if (name === "__proto__" || name === "__pysync_types__") throw this.odd;
      out[name] = this.value(attrs[name]);
    }
    return out;
  },

  value(attr) {
    const kinds = Object.keys(attr);
    if (kinds.length !== 1) throw this.odd;
    const v = attr[kinds[0]];
    switch (kinds[0]) {
      case "S":
        if (typeof v !== "string") throw this.odd;
        return v;
      case "N":
        return this.num(v);
      case "BOOL":
        if (typeof v !== "boolean") throw this.odd;
        return v;
      case "NULL":
        return undefined;
      case "M":
        if (v === null || typeof v !== "object" || Array.isArray(v)) throw this.odd;
        return this.map(v);
      case "L":
        if (!Array.isArray(v)) throw this.odd;
        return v.map((x) => this.value(x));
      case "SS":
        if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) throw this.odd;
        return v.slice();
      case "NS":
        if (!Array.isArray(v)) throw this.odd;
        return v.map((x) => this.num(x));
      default:
        throw this.odd; // bytes, or a type Python reports
    }
  },

  num(text) {
    if (typeof text !== "string" || !this.number.test(text)) throw this.odd;
    return Number(text); // "-0" is -0 here, 0 in Python: both read back as 0
  },

  // The record of a live item's values: the document, then _v, _m and _seq.
  record(values, seq) {
    const version = values._v;
    if (version !== undefined && !Number.isInteger(version)) return null;
    const mid = values._m;
    if (mid !== undefined && typeof mid !== "string") return null;
    const record = {};
    for (const name of Object.keys(values)) {
      if (!this.system.has(name)) record[name] = values[name];
    }
    record._v = version;
    record._m = mid;
    record._seq = seq;
    return record;
  },

  // Checks the primary key and sets _ix as pysync._schema.set_index_keys does.
  index(record, [keyPath, indexes]) {
    const key = this.extract(record, keyPath);
    if (!(typeof key === "string" || Number.isSafeInteger(key))) return false;
    delete record._ix;
    const keys = {};
    let any = false;
    for (const [name, path] of indexes) {
      const value = this.extract(record, path);
      if (value !== undefined) {
        keys[name] = this.indexValue(value);
        any = true;
      }
    }
    if (any) record._ix = keys;
    return true;
  },

  // pysync._store._schema.extract_key: undefined where Python has None.
  extract(value, path) {
    if (Array.isArray(path)) {
      const parts = path.map((part) => this.extract(value, part));
      return parts.includes(undefined) ? undefined : parts;
    }
    let current = value;
    for (const part of path.split(".")) {
      const plain = current !== null && typeof current === "object" && !Array.isArray(current);
      if (!plain || !Object.hasOwn(current, part)) return undefined;
      current = current[part];
    }
    return current;
  },

  indexValue(value) {
    if (value === true || value === false) return Number(value);
    if (Array.isArray(value)) return value.map((v) => this.indexValue(v));
    return value;
  },
});
