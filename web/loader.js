// pysync page loader.
//
// Boots Pyodide from this server's /pyodide/ (never a CDN), installs the pysync
// wheel listed in /pyodide/pyodide-lock.json, then fetches app.py and awaits its
// `main()`. Every failure is loud: a red banner with the message in the page,
// <body data-pysync="error">, and a rejected `window.pysyncBoot`.
//
// For tests and the console:
//   window.pysyncBoot        a promise: resolves with {python, pysync, timings} once the
//                            app runs (timings: ms since navigation at each boot step)
//   window.pysyncRun(code)   runs Python (top-level await allowed) in one shared
//                            namespace and resolves with its last expression as JSON
//                            data (dicts, lists, str, numbers, bool, None)
//   window.pyodide           the Pyodide instance, once loaded

const INDEX_URL = new URL("/pyodide/", import.meta.url).href;
const APP_URL = new URL("app.py", import.meta.url).href;
const APP_DIR = "/home/pyodide/pysync_app";

const status = document.getElementById("boot-status");
const timings = {};
const mark = (step) => {
  timings[step] = Math.round(performance.now());
};

function setStatus(text) {
  if (status) status.textContent = text;
}

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

async function startPyodide() {
  setStatus("Loading Python…");
  let loadPyodide;
  try {
    ({ loadPyodide } = await import(`${INDEX_URL}pyodide.mjs`));
  } catch (error) {
    throw new Error(`could not load Pyodide from ${INDEX_URL}pyodide.mjs: ${error.message}`);
  }
  let pyodide;
  const wasm = watchWasmFailure();
  try {
    pyodide = await Promise.race([loadPyodide({ indexURL: INDEX_URL }), wasm.failed]);
  } catch (error) {
    throw new Error(`could not start Pyodide from ${INDEX_URL}: ${error.message}`);
  } finally {
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

const pyodideReady = startPyodide();

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
  window.pyodide = pyodide;
  setStatus("Starting the app…");
  const source = await fetchText(APP_URL);
  // A real module file, so tracebacks show app.py's lines and tests can `import app`.
  pyodide.FS.mkdirTree(APP_DIR);
  pyodide.FS.writeFile(`${APP_DIR}/app.py`, source);
  const namespace = newNamespace(pyodide);
  let info;
  try {
    info = await pyodide.runPythonAsync(
      `import sys
if ${JSON.stringify(APP_DIR)} not in sys.path:
    sys.path.insert(0, ${JSON.stringify(APP_DIR)})
import app, pysync
await app.main()
{"python": sys.version.split()[0], "pysync": pysync.__version__}`,
      { globals: namespace },
    );
  } finally {
    namespace.destroy();
  }
  mark("app");
  try {
    return { ...info.toJs({ dict_converter: Object.fromEntries }), timings };
  } finally {
    info.destroy();
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
