// The dashboard's composition root: the key, the live feed, stats polling, and the route → view table.

import { Api, Bus, LiveFeed } from "./api.js";
import { fill, h, refreshTimes, toast } from "./dom.js";
import { JobDetail } from "./jobdetail.js";
import { JobList, newer } from "./joblist.js";
import { RateMeter, renderOverview } from "./overview.js";
import { SubmitForm } from "./submit.js";

const STATS_EVERY_MS = 4000;
const SEEN_LIMIT = 2000;

const api = new Api();
const bus = new Bus();
const rate = new RateMeter();
let seen = new Map();
const filters = { status: "", kind: "", q: "" };
let stats = null;
let live = "connecting";
/** whether this feed has been live: only a later return to "live" follows a gap worth catching up on */
let wasLive = false;
let feed = null;
let current = null;
let highlight = null;
let asking = null;

const main = () => document.getElementById("main");

// -- views -----------------------------------------------------------------------------------------

function jobsView(root) {
  const overview = h("section", { class: "card overview", id: "overview" });
  const list = h("section", { class: "card", id: "jobs" });
  fill(root, overview, list);
  const drawOverview = () =>
    renderOverview(overview, stats, rate.perMinute(seen.values()), {
      activeStatus: filters.status,
      allKeys: Boolean(api.key), // a key sees its own jobs in the list, and every key's in the counts
      onStatus: (status) => {
        jobList.setStatus(status);
        drawOverview();
      },
    });
  const jobList = new JobList(list, {
    api,
    seen,
    filters,
    highlight,
    navigate,
    onFilter: () => drawOverview(),
    onLoaded: () => drawOverview(), // jobs/min starts from the finish times of the loaded jobs
  });
  highlight = null;
  jobList.load();
  drawOverview();
  const offs = [
    bus.on("job", (job) => jobList.offer(job)),
    bus.on("stats", drawOverview),
    bus.on("resync", () => jobList.load({ merge: true })),
  ];
  return () => offs.forEach((off) => off());
}

function detailView(root, id) {
  const detail = new JobDetail(root, { api, seen }, id);
  detail.load();
  const offs = [bus.on("job", (job) => detail.offer(job)), bus.on("resync", () => detail.load())];
  return () => {
    offs.forEach((off) => off());
    detail.destroy();
  };
}

function submitView(root) {
  new SubmitForm(root, {
    api,
    onSubmitted: (job) => {
      seen.set(job.job_id, job);
      highlight = job.job_id;
      toast(`Submitted ${job.job_id}`, "ok");
      navigate("#/");
      bus.emit("job", job);
    },
  });
  return () => {};
}

function notFoundView(root) {
  fill(root, h("section", { class: "card" }, h("h2", {}, "Nothing here"), h("a", { href: "#/" }, "Back to the jobs")));
  return () => {};
}

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  if (current) current();
  window.scrollTo(0, 0);
  const root = main();
  const match = hash.match(/^\/jobs\/([\w-]+)$/);
  let name = "jobs";
  if (hash === "/") current = jobsView(root);
  else if (hash === "/new") {
    name = "new";
    current = submitView(root);
  } else if (match) {
    name = "detail";
    current = detailView(root, match[1]);
  } else {
    name = "none";
    current = notFoundView(root);
  }
  document.body.dataset.view = name;
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("on", a.dataset.nav === name);
}

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

// -- live data -------------------------------------------------------------------------------------

async function refreshStats() {
  try {
    stats = await api.get("/v1/stats");
  } catch (exc) {
    if (exc.status !== 401 && exc.code !== "rate_limited") setLive("offline");
    return;
  }
  rate.add(stats);
  bus.emit("stats", stats);
}

let statsSoon = null;
function statsSoonish() {
  // a burst of job events asks for stats once
  if (statsSoon) return;
  statsSoon = setTimeout(() => {
    statsSoon = null;
    refreshStats();
  }, 400);
}

const LIVE_LABELS = {
  live: "live",
  connecting: "connecting…",
  reconnecting: "reconnecting…",
  offline: "offline · polling",
  locked: "needs a key",
};

function setLive(state) {
  live = state;
  const el = document.getElementById("live");
  el.className = `live l-${state}`;
  el.dataset.state = state;
  el.textContent = LIVE_LABELS[state] || state;
  el.title =
    state === "live"
      ? "Updates arrive as they happen (GET /v1/events)"
      : "The event stream is down; the page polls every few seconds";
}

function startFeed() {
  if (feed) feed.stop();
  wasLive = false;
  feed = new LiveFeed(api, {
    onJob: (job, type) => {
      const newest = newer(seen.get(job.job_id), job);
      seen.delete(job.job_id); // re-inserted last: the oldest entries are dropped first
      seen.set(job.job_id, newest);
      if (seen.size > SEEN_LIMIT) seen.delete(seen.keys().next().value);
      bus.emit("job", job);
      if (type === "status") statsSoonish();
    },
    onState: (state) => {
      // the first "live" needs no catching up: the views load as they open (a second load of the
      // list at once would also spend a request of a rate-limited key for nothing)
      const recovered = state === "live" && live !== "live" && wasLive;
      if (state === "live") wasLive = true;
      setLive(state);
      if (recovered && current) bus.emit("resync"); // catch up on what the gap missed
    },
  });
  feed.start();
}

setInterval(() => {
  if (asking) return;
  refreshStats();
  if (live !== "live") bus.emit("resync");
}, STATS_EVERY_MS);
setInterval(() => refreshTimes(), 5000);

// -- the key -----------------------------------------------------------------------------------------

function renderKeyBox() {
  const box = document.getElementById("keybox");
  if (!api.key) {
    fill(box);
    return;
  }
  fill(box, 
    h("span", { class: "muted small", title: "Kept in this browser's local storage" }, `key …${api.key.slice(-4)}`),
    h("button", { type: "button", class: "btn tiny ghost", onclick: () => forgetKey() }, "Forget key"),
  );
}

function forgetKey() {
  api.forgetKey();
  clearSession();
  askForKey("The key is forgotten in this browser.").then(start);
}

/** Nothing of the last key's jobs stays on screen or in memory: the next key sees only its own. */
function clearSession() {
  if (feed) feed.stop();
  if (current) current();
  current = null;
  // a new map, not a cleared one: a request of the old views still on its way fills the old one
  seen = new Map();
  stats = null;
  highlight = null;
  rate.reset();
  Object.assign(filters, { status: "", kind: "", q: "" });
  renderKeyBox();
  fill(main(), h("p", { class: "muted" }, "Enter a key to see its jobs."));
}

/** A modal that asks for an API key, checks it against /v1/stats, and keeps it in localStorage. */
function askForKey(reason) {
  if (asking) return asking;
  setLive("locked");
  asking = new Promise((resolve) => {
    const field = h("input", {
      type: "password",
      name: "api_key",
      autocomplete: "off",
      placeholder: "API key",
      "aria-label": "API key",
      required: true,
    });
    const problem = h("div", { class: "form-problem" });
    const form = h(
      "form",
      {
        class: "modal card",
        id: "key-form",
        onsubmit: async (event) => {
          event.preventDefault();
          const key = field.value.trim();
          if (!key) return;
          try {
            stats = await api.request("GET", "/v1/stats", undefined, { key });
          } catch (exc) {
            fill(problem, exc.status === 401 ? "That key is not valid on this server." : exc.message);
            field.select();
            return;
          }
          api.setKey(key);
          overlay.remove();
          asking = null;
          renderKeyBox();
          resolve();
        },
      },
      h("h2", {}, "API key needed"),
      h("p", { class: "muted" }, reason || "This server has API keys configured. Enter yours to see and submit your jobs."),
      h("p", { class: "muted small" }, "The key is kept in this browser's local storage until you choose “Forget key”."),
      field,
      problem,
      h("div", { class: "modal-actions" }, h("button", { type: "submit", class: "btn primary" }, "Use this key")),
    );
    const overlay = h("div", { class: "overlay", id: "key-overlay" }, form);
    document.body.append(overlay);
    field.focus();
  });
  return asking;
}

api.onUnauthorized = () => {
  if (asking) return;
  if (feed) feed.stop();
  const why = api.key ? "The stored key was refused (it may have been revoked). Enter a valid key." : null;
  api.forgetKey();
  clearSession();
  askForKey(why).then(start);
};

// -- start ---------------------------------------------------------------------------------------------

async function start() {
  renderKeyBox();
  setLive("connecting");
  await refreshStats();
  if (asking) return; // the 401 handler asks, and starts again
  startFeed();
  route();
}

window.addEventListener("hashchange", route);
start();
