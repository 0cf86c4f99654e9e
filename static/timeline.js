// A job's timeline, built from its attempts (attempts_detail): each attempt's own start and end.

import { TERMINAL, absTime, duration, fill, h, parseTime, relTime, timeAgo } from "./dom.js";

/** Outcomes of an attempt that ended without the job's result (`retry`: it failed and a retry was due). */
const FAILED_OUTCOMES = new Set(["failed", "retry", "lost"]);

/**
 * The timeline of `job` into `box`. `attempts` is the last attempts_detail read (null before any): the
 * job's own fields say only when its run's first attempt started, so the times of the later attempts,
 * and of the backoffs between them, come from there.
 */
export function renderTimeline(box, job, attempts) {
  const all = attempts || [];
  const run = currentRun(job, all);
  const rows = [step("Submitted", job.created_at, `priority ${job.priority}`, "done")];
  const runAt = parseTime(job.run_at);
  const created = parseTime(job.created_at);
  if (!run.length && !job.error && runAt !== null && created !== null && runAt - created > 1000) {
    rows.push(step("Scheduled", job.run_at, `due ${relTime(runAt)}`, job.status === "delayed" ? "now" : "done"));
  }
  if (run.length) rows.push(...run.flatMap((attempt, n) => attemptSteps(job, attempt, run[n - 1])));
  else rows.push(...withoutAttempts(job));
  if (job.status === "delayed" && job.error) {
    rows.push(step("Retry scheduled", job.run_at, `due ${relTime(runAt)}`, "now"));
  }
  if (TERMINAL.has(job.status)) {
    const last = run[run.length - 1];
    const ran = last && last.ended_at ? `ran ${duration(parseTime(last.ended_at) - parseTime(last.started_at))}` : "";
    const many = run.length > 1 ? ` (attempt ${last.attempt} of ${run.length})` : "";
    const tone = { completed: "ok", cancelled: "muted", failed: "bad" }[job.status] || "warn";
    rows.push(step(job.status[0].toUpperCase() + job.status.slice(1), job.completed_at, ran + (ran ? many : ""), tone));
  } else if (job.updated_at && job.updated_at !== job.created_at) {
    rows.push(step("Last update", job.updated_at, (job.progress && job.progress.message) || job.status, "muted"));
  }
  if (job.expires_at) rows.push(step("Expires", job.expires_at, "deleted with its result and files", "muted"));
  fill(box, h("h3", {}, "Timeline"), h("ol", { class: "timeline" }, rows), everyAttempt(all));
}

/**
 * The attempts of the job's current run. A retry (by hand) starts a new run with no attempt and no
 * started_at; its first attempt sets started_at again, which names the run among the recorded ones.
 */
function currentRun(job, attempts) {
  if (!job.attempts || !attempts.length) return [];
  const started = parseTime(job.started_at);
  const first = attempts.find((a) => parseTime(a.started_at) === started);
  if (!first) return [];
  return attempts.filter((a) => a.run === first.run);
}

function attemptSteps(job, attempt, previous) {
  const started = parseTime(attempt.started_at);
  let detail = "";
  if (previous && previous.ended_at) detail = `after ${duration(started - parseTime(previous.ended_at))} of backoff`;
  else if (attempt.run === 1) detail = `waited ${duration(started - parseTime(job.created_at))} in the queue`;
  else detail = `run ${attempt.run} (retried)`;
  const label = attempt.attempt === 1 ? "Started" : `Attempt ${attempt.attempt} started`;
  const rows = [step(label, attempt.started_at, detail, attempt.ended_at ? "done" : "now")];
  if (attempt.ended_at && FAILED_OUTCOMES.has(attempt.outcome)) {
    const what = attempt.outcome === "lost" ? "lost (its worker died)" : "failed";
    rows.push(step(`Attempt ${attempt.attempt} ${what}`, attempt.ended_at, errorLine(attempt.error), "bad"));
  }
  return rows;
}

/** Before the attempts are read (or after a retry, before they are read again): what the job says. */
function withoutAttempts(job) {
  const rows = [];
  const started = parseTime(job.started_at);
  if (started !== null) {
    const created = parseTime(job.created_at);
    const waited = created !== null && job.attempts <= 1 ? `waited ${duration(started - created)} in the queue` : "";
    rows.push(step("Started", job.started_at, waited, job.status === "active" ? "now" : "done"));
  }
  if (job.error) {
    const at = job.completed_at || job.updated_at;
    rows.push(step(`Attempt ${job.error.attempt ?? job.attempts} failed`, at, errorLine(job.error), "bad"));
  }
  return rows;
}

/** Every attempt of every run, when there was more than one. */
function everyAttempt(attempts) {
  if (attempts.length < 2) return null;
  return h(
    "ol",
    { class: "timeline attempts" },
    attempts.map((a) =>
      step(
        `${a.run > 1 ? `Run ${a.run}, attempt` : "Attempt"} ${a.attempt}: ${a.outcome || "running"}`,
        a.started_at,
        a.error ? errorLine(a.error) : a.ended_at ? `ran ${duration(parseTime(a.ended_at) - parseTime(a.started_at))}` : "",
        a.outcome === "completed" ? "ok" : a.error ? "bad" : "muted",
      ),
    ),
  );
}

function errorLine(error) {
  if (!error) return "";
  if (typeof error === "string") return error;
  return h("span", {}, h("code", {}, error.code || "error"), " ", error.message || "");
}

function step(label, iso, detail, tone) {
  const ms = parseTime(iso);
  return h(
    "li",
    { class: `step t-${tone}` },
    h("span", { class: "step-dot" }),
    h("div", { class: "step-main" }, h("span", { class: "step-label" }, label), h("span", { class: "step-detail" }, detail)),
    h(
      "div",
      { class: "step-time", title: absTime(ms) },
      ms === null ? "—" : absTime(ms).slice(11),
      " ",
      h("span", { class: "muted" }, timeAgo(iso)),
    ),
  );
}
