// pysync page loader.
//
// Boots Pyodide from this server's /pyodide/ (never a CDN), installs the pysync
// wheel listed in /pyodide/pyodide-lock.json, then fetches app.py and awaits its
// `main()`. Every failure is loud: a red banner with the message in the page,
// <body data-pysync="error">, and a rejected `window.pysyncBoot`.
//
// Offline: once the app runs, it registers the service worker sw.js for the build
// of /pyodide/build.json, which precaches the page, Pyodide and the wheel, so that
// the next visit starts with no network (docs/offline.md). A page still served by
// an older build's worker waits for the new one before booting, so that everything
// it loads comes from one build. Without service workers the app still runs, online.
//
// For tests and the console:
//   window.pysyncBoot        a promise: resolves with {python, pysync, wheel, build,
//                            timings} once the app runs (pysync: its __version__; wheel:
//                            the installed wheel's version; build: build.json's id;
//                            timings: ms since navigation at each boot step)
//   window.pysyncOffline     a promise: resolves with {ready: true, build} once this
//                            build is stored for offline use, or {ready: false, reason}
//                            (never rejects; the reason is also a console warning)
//   window.pysyncRun(code)   runs Python (top-level await allowed) in one shared
//                            namespace and resolves with its last expression as JSON
//                            data (dicts, lists, str, numbers, bool, None)
//   window.pyodide           the Pyodide instance, once loaded

const INDEX_URL = new URL("/pyodide/", import.meta.url).href;
const BUILD_URL = `${INDEX_URL}build.json`;
const APP_URL = new URL("app.py", import.meta.url).href;
const APP_DIR = "/home/pyodide/pysync_app";
const SW_URL = new URL("sw.js", import.meta.url).href;
const SW_SCOPE = new URL("./", import.meta.url).href;
// How long a page served by an older build waits for the new build to be stored
// before it boots anyway (from whatever the old worker and the network give it).
const UPDATE_WAIT_MS = 60000;
// The files whose download "Loading Python (x of y MB)" counts.
const COUNTED_FILES = ["pyodide.asm.wasm", "python_stdlib.zip"];
const serviceWorkers = "serviceWorker" in navigator ? navigator.serviceWorker : null;

const status = document.getElementById("boot-status");
const timings = {};
const mark = (step) => {
  timings[step] = Math.round(performance.now());
};

function setStatus(text) {
  // Never over the error banner (a download may still report progress after a failure).
  if (status && document.body.dataset.pysync !== "error") status.textContent = text;
}

const megabytes = (bytes) => (bytes / 1e6).toFixed(1);

// Replaces the status line with a red banner; creates one if the page has none.
function showError(error) {
  const message = (error && (error.message || String(error))) || "unknown error";
  let banner = document.getElementById("boot-status");
  if (!banner) {
    banner = document.createElement("div");
    banner.id = "boot-status";
    document.body.prepend(banner);
  }
  banner.className = "error-banner";
  banner.setAttribute("role", "alert");
  // Inline styles too, so the banner stays loud even if style.css did not load.
  banner.style.cssText =
    "display:block;background:#b00020;color:#fff;padding:1rem;font:14px/1.4 monospace;" +
    "white-space:pre-wrap;border-radius:4px";
  banner.replaceChildren();
  const title = document.createElement("strong");
  title.textContent = "pysync failed to start";
  const detail = document.createElement("pre");
  detail.className = "error-detail";
  detail.style.cssText = "margin:0.5rem 0 0;white-space:pre-wrap;font:inherit";
  detail.textContent = message;
  banner.append(title, detail);
  document.body.dataset.pysync = "error";
  console.error("pysync failed to start:", error);
}

async function fetchText(url) {
  const response = await fetch(url, { cache: "no-cache" });
  if (!response.ok) {
    throw new Error(`could not fetch ${url}: HTTP ${response.status} ${response.statusText}`);
  }
  return response.text();
}

// Pyodide 314 never settles loadPyodide() when pyodide.asm.wasm fails to download or
// instantiate: it only logs console.warn("wasm instantiation failed!") and then the
// error (pyodide/pyodide#6288). Turn that warning into a rejection.
function watchWasmFailure() {
  const warn = console.warn;
  let reject;
  const failed = new Promise((_, rejectFailed) => {
    reject = rejectFailed;
  });
  let seen = false;
  console.warn = function (...args) {
    warn.apply(this, args);
    if (seen) {
      reject(new Error(`WebAssembly instantiation failed: ${args.map(String).join(" ")}`));
    } else if (args[0] === "wasm instantiation failed!") {
      seen = true; // the error itself comes in the next call
    }
  };
  return { failed, stop: () => (console.warn = warn) };
}

// Why the wheel did not install, in words a developer can act on.
async function diagnoseWheel() {
  try {
    const lock = await (await fetch(`${INDEX_URL}pyodide-lock.json`)).json();
    const file = lock.packages?.pysync?.file_name;
    if (!file) return "pyodide-lock.json lists no pysync package: run ./run.sh setup.";
    const url = new URL(file, INDEX_URL).href;
    const response = await fetch(url, { method: "HEAD", cache: "no-store" });
    return response.ok
      ? `${url} is served (HTTP ${response.status}) but does not match pyodide-lock.json ` +
          "(stale or corrupt build?): run ./run.sh setup."
      : `${url}: HTTP ${response.status} ${response.statusText}: run ./run.sh setup.`;
  } catch (error) {
    return `(could not check the wheel: ${error.message})`;
  }
}

// build.json of the dist: {build, pysync: {version, file_name}, precache: [{url, size,
// sha256}]}, or null (with a warning) when there is none: the app then runs online only.
async function loadBuildInfo() {
  try {
    const response = await fetch(BUILD_URL, { cache: "no-cache" });
    if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`);
    return await response.json();
  } catch (error) {
    console.warn(`pysync: no ${BUILD_URL} (${error.message}): the app will not work offline`);
    return null;
  }
}

const buildOf = (worker) => (worker ? new URL(worker.scriptURL).searchParams.get("v") : null);

// Resolves once the registration's worker for `build` is activated (its install
// precached the build); rejects if it fails to install or is replaced.
function activated(registration, build, failure) {
  return new Promise((resolve, reject) => {
    let watched = null;
    const finish = (settle, value) => {
      registration.removeEventListener("updatefound", check);
      watched?.removeEventListener("statechange", check);
      settle(value);
    };
    function check() {
      const { installing, waiting, active } = registration;
      if (buildOf(active) === build && active.state === "activated") {
        finish(resolve);
        return;
      }
      const worker = [installing, waiting, active].find((w) => buildOf(w) === build);
      if (worker && worker !== watched) {
        watched?.removeEventListener("statechange", check);
        watched = worker;
        watched.addEventListener("statechange", check);
      } else if (!worker && watched?.state === "redundant") {
        const reason = failure() || "the service worker failed to install or was replaced";
        finish(reject, new Error(reason));
      }
    }
    registration.addEventListener("updatefound", check);
    check();
  });
}

// Registers sw.js for `build` and waits until it has stored the build.
async function installServiceWorker(build, onProgress) {
  let failure = null;
  const onMessage = (event) => {
    const data = event.data;
    if (data?.type !== "pysync-precache" || data.build !== build) return;
    if (data.error) failure = `the service worker could not store the app: ${data.error}`;
    else onProgress(data.loaded, data.total);
  };
  serviceWorkers.addEventListener("message", onMessage);
  serviceWorkers.startMessages();
  try {
    const url = new URL(SW_URL);
    url.searchParams.set("v", build);
    const registration = await serviceWorkers.register(url.href, {
      scope: SW_SCOPE,
      updateViaCache: "none",
    });
    await activated(registration, build, () => failure);
  } finally {
    serviceWorkers.removeEventListener("message", onMessage);
  }
}

// The page's one attempt to store this build for offline use (see window.pysyncOffline).
let offline = null;
function storeForOffline(info, onProgress = () => {}) {
  offline ??= (async () => {
    if (!serviceWorkers) throw new Error("this browser gives the page no service workers");
    if (!info) throw new Error(`no build info (${BUILD_URL})`);
    if (buildOf(serviceWorkers.controller) !== info.build) {
      await installServiceWorker(info.build, onProgress);
    }
    return { ready: true, build: info.build };
  })().catch((error) => {
    console.warn(`pysync: the app will not start offline: ${error.message}`);
    return { ready: false, reason: error.message };
  });
  return offline;
}

// A page served by an older build's worker: wait (a while) for this build's worker,
// which takes the page over once it has stored the build.
async function updateBeforeBoot(info) {
  const controller = serviceWorkers?.controller;
  if (!info || !controller || buildOf(controller) === info.build) return;
  setStatus("Updating the app…");
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(resolve, UPDATE_WAIT_MS);
  });
  const stored = storeForOffline(info, (loaded, total) =>
    setStatus(`Updating the app (${megabytes(loaded)} of ${megabytes(total)} MB)…`),
  );
  await Promise.race([stored, timeout]);
  clearTimeout(timer);
}

// Counts the bytes of Pyodide's own downloads (it fetches the wasm and the standard
// library with the global fetch) to show "Loading Python (x of y MB)" on a visit that
// downloads them. Returns the function that stops counting.
function countDownloads(info, onProgress) {
  const sizes = new Map(
    (info?.precache ?? [])
      .filter((file) => COUNTED_FILES.includes(file.url))
      .map((file) => [new URL(file.url, INDEX_URL).href, file.size]),
  );
  // From the service worker's cache there is nothing to wait for, and a wrapped Response
  // would keep Chromium from reusing the wasm it compiled last time (~0.8 s per visit).
  if (!sizes.size || navigator.serviceWorker?.controller) return () => {};
  const total = [...sizes.values()].reduce((a, b) => a + b, 0);
  let loaded = 0;
  let counting = true;
  const original = window.fetch;
  window.fetch = async function (input, init) {
    const response = await original.call(this, input, init);
    const url = new URL(input instanceof Request ? input.url : String(input), location.href).href;
    if (!sizes.has(url) || !response.ok || !response.body) return response;
    const counter = new TransformStream({
      transform(chunk, controller) {
        loaded += chunk.byteLength;
        if (counting) onProgress(Math.min(loaded, total), total);
        controller.enqueue(chunk);
      },
    });
    return new Response(response.body.pipeThrough(counter), {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };
  return () => {
    counting = false;
    window.fetch = original;
  };
}

async function startPyodide(info) {
  setStatus("Loading Python…");
  let loadPyodide;
  try {
    ({ loadPyodide } = await import(`${INDEX_URL}pyodide.mjs`));
  } catch (error) {
    throw new Error(`could not load Pyodide from ${INDEX_URL}pyodide.mjs: ${error.message}`);
  }
  let pyodide;
  const wasm = watchWasmFailure();
  const stopCounting = countDownloads(info, (loaded, total) =>
    setStatus(`Loading Python (${megabytes(loaded)} of ${megabytes(total)} MB)…`),
  );
  try {
    pyodide = await Promise.race([loadPyodide({ indexURL: INDEX_URL }), wasm.failed]);
  } catch (error) {
    throw new Error(`could not start Pyodide from ${INDEX_URL}: ${error.message}`);
  } finally {
    stopCounting();
    wasm.stop();
  }
  mark("pyodide");

  setStatus("Installing pysync…");
  // loadPackage does not reject when a download or install fails: it reports
  // through errorCallback, so collect those messages and throw them.
  const errors = [];
  await pyodide.loadPackage("pysync", {
    messageCallback: (message) => console.debug(`pyodide: ${message}`),
    errorCallback: (message) => errors.push(message),
  });
  if (errors.length || !pyodide.loadedPackages.pysync) {
    const detail = errors.length ? errors.join("\n") : "pyodide did not report it as loaded";
    throw new Error(`could not install the pysync wheel:\n${detail}\n${await diagnoseWheel()}`);
  }
  mark("pysync");
  return pyodide;
}

// A new, empty Python dict (a PyProxy the caller owns).
function newNamespace(pyodide) {
  const dict = pyodide.globals.get("dict");
  try {
    return dict();
  } finally {
    dict.destroy();
  }
}

const buildInfo = loadBuildInfo();
const pyodideReady = buildInfo.then(async (info) => {
  await updateBeforeBoot(info);
  return startPyodide(info);
});

// The namespace pysyncRun code runs in, and the converter of its results.
const runtime = pyodideReady.then((pyodide) => {
  const namespace = newNamespace(pyodide);
  const toJson = pyodide.runPython(
    "import json\n" +
      "def _to_json(value):\n" +
      "    return json.dumps(value, allow_nan=False)\n" +
      "_to_json",
  );
  return { pyodide, namespace, toJson };
});
runtime.catch(() => {}); // a failed boot is reported by pysyncBoot; pysyncRun rethrows it

async function pysyncRun(code) {
  const { pyodide, namespace, toJson } = await runtime;
  const result = await pyodide.runPythonAsync(code, { globals: namespace });
  if (result instanceof pyodide.ffi.PyProxy) {
    try {
      return JSON.parse(toJson(result));
    } finally {
      result.destroy();
    }
  }
  return result === undefined ? null : result;
}

async function startApp() {
  const pyodide = await pyodideReady;
  const info = await buildInfo;
  window.pyodide = pyodide;
  setStatus("Starting the app…");
  const source = await fetchText(APP_URL);
  // A real module file, so tracebacks show app.py's lines and tests can `import app`.
  pyodide.FS.mkdirTree(APP_DIR);
  pyodide.FS.writeFile(`${APP_DIR}/app.py`, source);
  const namespace = newNamespace(pyodide);
  let versions;
  try {
    versions = await pyodide.runPythonAsync(
      `import sys
if ${JSON.stringify(APP_DIR)} not in sys.path:
    sys.path.insert(0, ${JSON.stringify(APP_DIR)})
import app, importlib.metadata, pysync
await app.main()
{
    "python": sys.version.split()[0],
    "pysync": pysync.__version__,
    "wheel": importlib.metadata.version("pysync"),
}`,
      { globals: namespace },
    );
  } finally {
    namespace.destroy();
  }
  mark("app");
  try {
    const build = info?.build ?? null;
    return { ...versions.toJs({ dict_converter: Object.fromEntries }), build, timings };
  } finally {
    versions.destroy();
  }
}

window.pysyncRun = pysyncRun;
window.pysyncBoot = startApp().then(
  (info) => {
    if (status) status.hidden = true;
    document.body.dataset.pysync = "ready";
    return info;
  },
  (error) => {
    showError(error);
    throw error;
  },
);
// The banner and data-pysync report the failure; keep the console free of a
// second "uncaught (in promise)" for it. window.pysyncBoot itself stays rejected.
window.pysyncBoot.catch(() => {});
// Stored for offline use only once it runs (first visit: after booting, so that the
// downloads do not compete; the worker then fetches from the warm HTTP cache).
window.pysyncOffline = window.pysyncBoot.then(
  async () => storeForOffline(await buildInfo),
  (error) => ({ ready: false, reason: `the app did not start: ${error.message}` }),
);
