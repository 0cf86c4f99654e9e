// The dashboard's only way to the server: JSON calls with the key, file blobs, and the live event stream.

const KEY_STORAGE = "litejobs.api_key";

export class ApiError extends Error {
  constructor(status, code, message, details = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

function stored() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

/** How often, and for how long at most each time, a request answered `429 rate_limited` is sent again. */
const RATE_LIMIT_TRIES = 3;
const RATE_LIMIT_WAIT_MAX_S = 10;

/**
 * fetch(), sent again after the Retry-After of a `429 rate_limited` (a key's request rate, which a
 * burst of page loads can exceed): a few times, then the 429 is the answer. Other 429s (a full queue)
 * are answers at once: the caller decides about those.
 */
async function patientFetch(path, init) {
  for (let tries = 1; ; tries += 1) {
    let response;
    try {
      response = await fetch(path, init);
    } catch (exc) {
      throw new ApiError(0, "network_error", `The server did not answer (${exc.message}).`);
    }
    if (response.status !== 429 || tries >= RATE_LIMIT_TRIES || !(await isRateLimited(response))) return response;
    await new Promise((resolve) => setTimeout(resolve, retryAfterMs(response.headers.get("Retry-After"))));
  }
}

async function isRateLimited(response) {
  try {
    const data = await response.clone().json();
    return Boolean(data && data.error && data.error.code === "rate_limited");
  } catch {
    return false;
  }
}

/** Retry-After (seconds, or an HTTP date) in ms, within (0, RATE_LIMIT_WAIT_MAX_S]; 1 s when absent. */
function retryAfterMs(header) {
  let seconds = Number(header);
  if (header === null || header === "" || Number.isNaN(seconds)) {
    const at = Date.parse(header ?? "");
    seconds = Number.isNaN(at) ? 1 : (at - Date.now()) / 1000;
  }
  return Math.min(RATE_LIMIT_WAIT_MAX_S, Math.max(0.1, seconds)) * 1000;
}

export class Api {
  constructor() {
    this.key = stored();
    /** called with the ApiError of any 401, so the page can ask for a key again */
    this.onUnauthorized = null;
  }

  setKey(key) {
    this.key = key;
    try {
      localStorage.setItem(KEY_STORAGE, key);
    } catch {
      // storage may be disabled: the key then lasts as long as the page
    }
  }

  forgetKey() {
    this.key = "";
    try {
      localStorage.removeItem(KEY_STORAGE);
    } catch {
      // nothing stored
    }
  }

  headers(extra = {}) {
    return this.key ? { ...extra, Authorization: `Bearer ${this.key}` } : extra;
  }

  async request(method, path, body, { key } = {}) {
    const headers = { Accept: "application/json" };
    const presented = key ?? this.key;
    if (presented) headers.Authorization = `Bearer ${presented}`;
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await patientFetch(path, init);
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      const err = (data && data.error) || {};
      const error = new ApiError(
        response.status,
        err.code || `http_${response.status}`,
        err.message || response.statusText || "request failed",
        err.details || [],
      );
      if (response.status === 401 && key === undefined && this.onUnauthorized) this.onUnauthorized(error);
      throw error;
    }
    return data;
  }

  get(path) {
    return this.request("GET", path);
  }

  post(path, body) {
    return this.request("POST", path, body);
  }

  del(path) {
    return this.request("DELETE", path);
  }

  /** A stored file (a screenshot, a PDF) as a Blob: fetched with the key header, never a key in a URL. */
  async file(path) {
    if (!path.startsWith("/") || path.startsWith("//")) throw new ApiError(0, "bad_path", "not a file of this server");
    const response = await patientFetch(path, { headers: this.headers(), cache: "no-store" });
    if (!response.ok) throw new ApiError(response.status, `http_${response.status}`, `could not load ${path}`);
    return response.blob();
  }

  /** A stored file as an object URL (an inline data:image URL as it is). */
  async objectUrl(path) {
    if (path.startsWith("data:image/")) return path;
    return URL.createObjectURL(await this.file(path));
  }

  /** EventSource cannot send headers: the stream takes the key as ?api_key= (the server accepts it). */
  eventsUrl(path, lastEventId) {
    const params = new URLSearchParams();
    if (this.key) params.set("api_key", this.key);
    if (lastEventId) params.set("last_event_id", String(lastEventId));
    const query = params.toString();
    return query ? `${path}?${query}` : path;
  }
}

/**
 * GET /v1/events: every change of the caller's jobs. EventSource reconnects by itself (sending
 * Last-Event-ID); when it gives up (a 401, a restart that refused it) a new one starts after a pause,
 * from the last event seen. `onState` hears "live", "reconnecting" or "offline".
 */
export class LiveFeed {
  constructor(api, { onJob, onState }) {
    this.api = api;
    this.onJob = onJob;
    this.onState = onState;
    this.source = null;
    this.lastId = 0;
    this.retryTimer = null;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.source) this.source.close();
    this.source = null;
  }

  open() {
    if (this.stopped) return;
    const source = new EventSource(this.api.eventsUrl("/v1/events", this.lastId));
    this.source = source;
    const receive = (event) => {
      const id = Number(event.lastEventId);
      if (id > this.lastId) this.lastId = id;
      let job;
      try {
        job = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onJob(job, event.type);
    };
    source.addEventListener("status", receive);
    source.addEventListener("progress", receive);
    source.addEventListener("open", () => this.onState("live"));
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        this.onState("offline");
        source.close();
        if (!this.stopped) this.retryTimer = setTimeout(() => this.open(), 5000);
      } else {
        this.onState("reconnecting");
      }
    });
  }
}

/** A tiny event bus: views subscribe to "job" and "stats" and unsubscribe when they go. */
export class Bus {
  constructor() {
    this.handlers = new Map();
  }

  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(handler);
    return () => this.handlers.get(type).delete(handler);
  }

  emit(type, value) {
    for (const handler of [...(this.handlers.get(type) || [])]) {
      try {
        handler(value);
      } catch (exc) {
        console.error(exc);
      }
    }
  }
}
