// pysync's service worker: the app starts with no network after its first visit.
//
// Registered by loader.js as `sw.js?v=<build>` (scope: this directory), where <build> is
// the id in /pyodide/build.json that scripts/build_dist.py writes. A new build is a new
// script URL, so a new worker: its `install` precaches that build into its own cache,
// `pysync-offline-<layout>-<build>`, and `activate` deletes the caches of older builds.
//
// What it caches, and how it answers:
//   /pyodide/*.json (the lock, build.json)     network first, the cache when offline
//   other /pyodide/ files (runtime, wheels)    cache first: immutable within a build
//   the app shell (SHELL), page navigations,   network first, the cache when offline
//   other same-origin static files
// Never: other origins, non-GET requests, the API (API_PATHS) and anything else.
//
// Network first gives up on the network after NETWORK_TIMEOUT_MS when a cached copy
// exists (a connection that hangs is as good as none); the late response still
// refreshes the cache. See docs/offline.md.

const LAYOUT = 1; // bump when what the caches hold changes shape
const BUILD = new URL(self.location.href).searchParams.get("v") || "unversioned";
const PREFIX = "pysync-offline-";
const CACHE = `${PREFIX}${LAYOUT}-${BUILD}`;
const SCOPE = new URL(self.registration.scope);
const PYODIDE = new URL("/pyodide/", self.location.href);
const BUILD_INFO = new URL("build.json", PYODIDE).href;
// The page itself: precached so the second visit works offline.
const SHELL = ["./", "index.html", "loader.js", "app.py", "style.css"].map(
  (path) => new URL(path, SCOPE).href,
);
const API_PATHS = ["/dynamodb", "/changes", "/healthz", "/dev/"];
const STATIC = /\.(html|js|mjs|css|py|json|wasm|zip|whl|svg|png|ico|webp|woff2?|txt)$/;
const NETWORK_TIMEOUT_MS = 8000;
// Header of precached responses: the sha256 of the body, so a new build reuses the
// files an older one already holds instead of downloading them again.
const SHA_HEADER = "x-pysync-sha256";
// The server's responses vary on Origin (CORS), which same-origin module scripts send
// and plain fetches do not: one cached copy serves both.
const MATCH = { ignoreVary: true };

self.addEventListener("install", (event) => {
  event.waitUntil(
    precache().then(
      () => self.skipWaiting(),
      (error) => {
        // The page cannot see why an install failed: tell it (loader.js warns with it).
        postToPages({ type: "pysync-precache", build: BUILD, error: String(error?.message || error) });
        throw error;
      },
    ),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) =>
        Promise.all(
          names
            .filter((name) => name.startsWith(PREFIX) && name !== CACHE)
            .map((name) => caches.delete(name)),
        ),
      ),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET" || request.headers.has("range")) return;
  if (request.cache === "only-if-cached" && request.mode !== "same-origin") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (API_PATHS.some((path) => url.pathname === path || url.pathname.startsWith(path))) return;
  if (url.pathname.startsWith(PYODIDE.pathname)) {
    const mutable = url.pathname.endsWith(".json");
    event.respondWith(mutable ? networkFirst(event) : cacheFirst(event));
  } else if (request.mode === "navigate" || SHELL.includes(url.href) || STATIC.test(url.pathname)) {
    event.respondWith(networkFirst(event));
  }
});

function cacheable(response) {
  return response.ok && response.type === "basic" && !response.redirected;
}

async function cacheFirst(event) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(event.request, MATCH);
  if (cached) return cached;
  const response = await fetch(event.request);
  if (cacheable(response)) event.waitUntil(cache.put(event.request, response.clone()));
  return response;
}

async function networkFirst(event) {
  const request = event.request;
  const cache = await caches.open(CACHE);
  // Navigations to the page with another query string are the same page.
  const cached = cache.match(request, { ...MATCH, ignoreSearch: request.mode === "navigate" });
  const network = fetch(request).then((response) => {
    if (cacheable(response)) event.waitUntil(cache.put(request, response.clone()));
    return response;
  });
  event.waitUntil(network.catch(() => {}));
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(resolve, NETWORK_TIMEOUT_MS);
  });
  try {
    const response = await Promise.race([network, timeout.then(() => cached)]);
    if (response) return response;
  } catch {
    // no network: the cached copy, if any
  } finally {
    clearTimeout(timer);
  }
  return (await cached) || network;
}

// Download the build's files (or reuse them from an older build's cache), check them
// against build.json, and store them with the shell in this build's cache.
async function precache() {
  const infoResponse = await fetch(BUILD_INFO, { cache: "no-cache" });
  if (!infoResponse.ok) throw new Error(`${BUILD_INFO}: HTTP ${infoResponse.status}`);
  const info = await infoResponse.clone().json();
  const cache = await caches.open(CACHE);
  const older = (await caches.keys()).filter((name) => name.startsWith(PREFIX));
  const progress = new Progress(info.precache.reduce((sum, file) => sum + file.size, 0));
  await Promise.all(
    info.precache.map(async (file) => {
      const url = new URL(file.url, PYODIDE).href;
      const copy = await findCopy(older, url, file.sha256);
      if (copy) {
        progress.add(file.size);
        if (copy.cacheName !== CACHE) await cache.put(url, copy.response);
      } else {
        await cache.put(url, await download(url, file.sha256, progress));
      }
    }),
  );
  await Promise.all(
    SHELL.map(async (url) => {
      const response = await fetch(url, { cache: "no-cache" });
      if (cacheable(response)) await cache.put(url, response);
      else console.warn(`pysync service worker: not precached: ${url}: HTTP ${response.status}`);
    }),
  );
  await cache.put(BUILD_INFO, infoResponse);
  progress.done();
}

async function findCopy(cacheNames, url, sha256) {
  for (const cacheName of cacheNames) {
    const response = await (await caches.open(cacheName)).match(url, MATCH);
    if (response && response.headers.get(SHA_HEADER) === sha256) return { cacheName, response };
  }
  return null;
}

async function download(url, sha256, progress) {
  const response = await fetch(url, { cache: "no-cache" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${response.statusText}`);
  const chunks = [];
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    progress.add(value.byteLength);
  }
  const body = await new Blob(chunks).arrayBuffer();
  const digest = await crypto.subtle.digest("SHA-256", body);
  const actual = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  if (actual !== sha256) {
    throw new Error(`${url} does not match build.json (sha256 ${actual}, not ${sha256})`);
  }
  const headers = new Headers(response.headers);
  headers.set(SHA_HEADER, sha256);
  return new Response(body, { status: response.status, statusText: response.statusText, headers });
}

// Tells the pages (loader.js shows it while it waits for an update) how far precaching is.
class Progress {
  constructor(total) {
    this.total = total;
    this.loaded = 0;
    this.posted = 0;
  }

  add(bytes) {
    this.loaded += bytes;
    if (this.loaded - this.posted >= 256 * 1024) this.post();
  }

  done() {
    this.loaded = this.total;
    this.post();
  }

  post() {
    this.posted = this.loaded;
    postToPages({ type: "pysync-precache", build: BUILD, loaded: this.loaded, total: this.total });
  }
}

async function postToPages(message) {
  const pages = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  for (const page of pages) page.postMessage(message);
}
