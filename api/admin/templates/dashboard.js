// Herald's dashboard: reads the admin JSON routes every few seconds with the credentials the page
// was opened with (the browser re-sends HTTP Basic to the same origin), and acts through them.
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("herald-config").textContent);
  const STATUSES = ["queued", "delayed", "processing", "completed", "failed", "cancelled", "suppressed"];
  const DLQ_PAGE = 50;
  const RECENT = 15;

  const state = {
    paused: false,
    timer: null,
    inflight: null,
    pending: new Set(),          // job or schedule ids with an action under way
    gone: new Map(),             // jobId -> failedAt of a dead letter redriven or discarded here
    dlq: [],
    dlqTotal: 0,
    shown: {},                   // what each table shows now, to rebuild it only on a change
    tenant: "",                  // the tenant filter ("": every tenant), sent as ?tenant= to every read
    // The jobs opened by Why, per table: jobId -> its /admin/jobs/{id} answer (null until read).
    opened: { dlq: new Map(), recent: new Map() },
    recent: null,                // the last /admin/jobs answer, to redraw it when a job is opened or closed
  };

  // ---- small helpers ---------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const enc = encodeURIComponent;
  const ns = enc(config.namespace);
  const ui = config.uiUrl;
  const runUrl = (jobId, runId) => `${ui}/namespaces/${ns}/workflows/${enc(jobId)}` + (runId ? `/${enc(runId)}/history` : "");
  const scheduleUrl = (id) => `${ui}/namespaces/${ns}/schedules/${enc(id)}`;
  const queryUrl = (query) => `${ui}/namespaces/${ns}/workflows?query=${enc(query)}`;
  const outLink = (href, text, cls) => h("a", { href, target: "_blank", rel: "noopener noreferrer", class: cls, text });
  const jobLink = (jobId, runId) => outLink(runUrl(jobId, runId), jobId);
  const pill = (word, extra) => h("span", { class: `pill pill-${word}`, text: extra || word });
  const fmt = (n) => Number(n || 0).toLocaleString();
  // A read of an admin route, filtered by the chosen tenant.
  const filtered = (path) => state.tenant ? `${path}${path.includes("?") ? "&" : "?"}tenant=${enc(state.tenant)}` : path;
  const tenantCell = (tenant) => h("td", { class: "tenant", text: tenant || "–" });

  function relative(iso) {
    if (!iso) return "–";
    const seconds = (Date.parse(iso) - Date.now()) / 1000;
    if (Number.isNaN(seconds)) return iso;
    const abs = Math.abs(seconds);
    const [value, unit] = abs < 45 ? [Math.round(abs), "s"] : abs < 2700 ? [Math.round(abs / 60), "min"]
      : abs < 129600 ? [Math.round(abs / 3600), "h"] : [Math.round(abs / 86400), "d"];
    if (unit === "s" && value < 5) return seconds < 0 ? "just now" : "in a moment";
    return seconds < 0 ? `${value} ${unit} ago` : `in ${value} ${unit}`;
  }
  const when = (iso) => h("time", { datetime: iso || "", title: iso ? new Date(iso).toLocaleString() : "", text: relative(iso) });
  // A moment written out (a decision's time stays put, so no "3 min ago" that goes stale).
  const at = (iso, cls) => h("time", { class: cls, datetime: iso, title: iso, text: new Date(iso).toLocaleString() });

  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    try { data = await response.json(); } catch (_) { /* not JSON */ }
    if (!response.ok) {
      const error = new Error((data && data.message) || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function toast(message, bad, link) {
    const node = h("div", { class: bad ? "toast bad" : "toast", role: bad ? "alert" : "status" }, message,
      link ? [" ", outLink(link.href, link.text)] : null);
    document.getElementById("toasts").append(node);
    setTimeout(() => node.remove(), bad ? 9000 : 5000);
  }

  function banner(message) {
    const node = document.getElementById("banner");
    node.hidden = !message;
    node.textContent = message || "";
  }

  // Rebuild a table body only when what it shows changed (no flicker, no lost clicks).
  function fill(tableId, key, rows, columns, emptyText) {
    const signature = JSON.stringify(key);
    if (state.shown[tableId] === signature) return false;
    state.shown[tableId] = signature;
    const body = document.querySelector(`#${tableId} tbody`);
    body.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: columns, class: "empty", text: emptyText }))]));
    return true;
  }

  // ---- counts ----------------------------------------------------------------------------------
  function renderStats(stats) {
    const types = Object.keys(stats.counts);
    const totals = Object.fromEntries(STATUSES.map((s) => [s, 0]));
    const rows = types.map((type) => {
      const counts = stats.counts[type];
      let total = 0;
      const cells = STATUSES.map((status) => {
        const n = counts[status] || 0;
        total += n;
        totals[status] += n;
        const query = `HeraldJobType="${type}" AND HeraldStatus="${status}"` + (state.tenant ? ` AND HeraldTenant="${state.tenant}"` : "");
        const content = n && status !== "processing" ? outLink(queryUrl(query), fmt(n)) : fmt(n);
        return h("td", { class: n ? "num" : "num zero", "data-type": type, "data-status": status, id: `count-${type}-${status}` }, content);
      });
      return h("tr", { "data-type": type }, h("td", { class: "type", text: type }), cells,
        h("td", { class: total ? "num" : "num zero", id: `count-${type}-total` }, fmt(total)));
    });
    const all = STATUSES.reduce((sum, s) => sum + totals[s], 0);
    const foot = h("tr", { class: "totals" }, h("td", { text: "all types" }),
      STATUSES.map((s) => h("td", { class: "num", id: `count-all-${s}` }, fmt(totals[s]))), h("td", { class: "num" }, fmt(all)));
    const table = document.getElementById("counts");
    if (fill("counts", [state.tenant, stats], rows, STATUSES.length + 2, "No jobs yet.")) {
      let tfoot = table.querySelector("tfoot");
      if (!tfoot) { tfoot = h("tfoot"); table.append(tfoot); }
      tfoot.replaceChildren(foot);
    }
    document.getElementById("sum-total").textContent = fmt(all);
    document.getElementById("sum-inflight").textContent = fmt(totals.queued + totals.delayed + totals.processing);
    document.getElementById("sum-completed").textContent = fmt(totals.completed);
    document.getElementById("sum-failed").textContent = fmt(totals.failed);
    document.getElementById("sum-deferred").textContent = fmt(stats.deferred);
    document.getElementById("sum-digested").textContent = fmt(stats.digested);
    state.dlqTotal = stats.dlq;
    document.getElementById("sum-dlq").textContent = fmt(stats.dlq) + (stats.approximate ? "≈" : "");
    document.getElementById("card-dlq").classList.toggle("alert", stats.dlq > 0);
  }

  // ---- the DLQ ---------------------------------------------------------------------------------
  function visibleDeadLetters() {
    // Visibility trails an action by a moment: keep a dead letter acted on here out of the table,
    // unless it failed again since (a new failedAt).
    return state.dlq.filter((item) => state.gone.get(item.jobId) !== item.failedAt);
  }

  function renderDlq() {
    const items = visibleDeadLetters();
    const busy = (id) => state.pending.has(id);
    const rows = items.flatMap((item) => withDetail("dlq", item.jobId, 7, h("tr", { "data-job-id": item.jobId },
      h("td", { class: "job" }, jobLink(item.jobId)),
      tenantCell(item.tenant),
      h("td", {}, item.type),
      h("td", { class: "error", title: item.error || "" }, item.error || "–"),
      h("td", { class: "num" }, item.attempts),
      h("td", {}, when(item.failedAt)),
      h("td", { class: "actions" },
        whyButton("dlq", item.jobId),
        h("button", { type: "button", class: "btn btn-sm btn-primary", "data-action": "redrive", disabled: busy(item.jobId),
          "aria-label": `Redrive ${item.jobId}`, onclick: () => redrive(item) }, busy(item.jobId) ? "Working…" : "Redrive"),
        h("button", { type: "button", class: "btn btn-sm btn-danger", "data-action": "discard", disabled: busy(item.jobId),
          "aria-label": `Discard ${item.jobId}`, onclick: () => discard(item) }, "Discard")))));
    const key = [items.map((i) => [i.jobId, i.tenant, i.failedAt, i.error, i.attempts, relative(i.failedAt)]), [...state.pending],
      openedKey("dlq", items.map((i) => i.jobId))];
    fill("dlq", key, rows, 7, "The dead-letter queue is empty.");
    const total = Math.max(state.dlqTotal - (state.dlq.length - items.length), items.length);
    const badge = document.getElementById("dlq-count");
    badge.textContent = fmt(total);
    badge.classList.toggle("alert", total > 0);
    document.getElementById("dlq-note").textContent = total > items.length ? `newest ${items.length} of ${fmt(total)}` : "";
    document.getElementById("redrive-all").disabled = total === 0 || state.pending.has("*");
  }

  async function act(id, work) {
    state.pending.add(id);
    renderDlq();
    try {
      await work();
    } catch (error) {
      toast(`${error.message}`, true);
    } finally {
      state.pending.delete(id);
      renderDlq();
      refresh();
    }
  }

  function redrive(item) {
    return act(item.jobId, async () => {
      await api("POST", `/admin/dlq/${enc(item.jobId)}/retry`);
      state.gone.set(item.jobId, item.failedAt);
      toast(`Redriven: ${item.jobId} runs again from the start.`, false, { href: runUrl(item.jobId), text: "Open run" });
    });
  }

  function discard(item) {
    if (!window.confirm(`Discard ${item.jobId}?\n\nIt leaves the dead-letter queue; its history stays readable in Temporal until the namespace's retention.`)) return;
    return act(item.jobId, async () => {
      await api("DELETE", `/admin/dlq/${enc(item.jobId)}`);
      state.gone.set(item.jobId, item.failedAt);
      toast(`Discarded: ${item.jobId}.`);
    });
  }

  document.getElementById("redrive-all").addEventListener("click", () => {
    const total = state.dlqTotal;
    const whose = state.tenant ? ` of tenant ${state.tenant}` : "";
    if (!window.confirm(`Redrive all ${total} dead letter${total === 1 ? "" : "s"}${whose}? Each runs again from the start.`)) return;
    const shown = state.dlq.slice();
    act("*", async () => {
      const answer = await api("POST", "/admin/dlq/retry", state.tenant ? { tenant: state.tenant } : undefined);
      for (const item of shown) state.gone.set(item.jobId, item.failedAt);
      toast(`Redriven: ${answer.redriven} dead letter${answer.redriven === 1 ? "" : "s"}.`);
    });
  });

  // ---- Why: a job's decisions, on a recent job and on a dead letter ---------------------------
  // An opened job shows why it went out, waited or did not: `decisions`, `suppressedReason` and `error` as its status
  // route carries them, read from /admin/jobs/{id} (the lists' visibility memo has a finished job's first state).
  function decisionList(job) {
    if (!job.decisions.length) return h("p", { class: "muted small", text: "No preference applied to this job." });
    return h("ol", { class: "decisions" }, job.decisions.map((d) => h("li", { "data-rule": d.rule, "data-outcome": d.outcome },
      at(d.at, "at"), h("code", { class: "rule", text: d.rule }), pill(d.outcome),
      d.until ? h("span", { class: "until muted" }, " until ", at(d.until, "until")) : null)));
  }

  function jobDetail(table, jobId) {
    const job = state.opened[table].get(jobId);
    if (!job) return h("p", { class: "muted small", text: "Loading…" });
    return h("div", { class: "detail" },
      job.suppressedReason ? h("p", { class: "reason" }, pill("suppressed"), " ", h("code", { text: job.suppressedReason })) : null,
      job.error ? h("p", { class: "job-error" }, pill(job.status), " ", h("code", { text: job.error })) : null,
      decisionList(job));
  }

  async function readOpened() {
    const tables = Object.values(state.opened);
    const jobIds = new Set(tables.flatMap((opened) => [...opened.keys()]));
    await Promise.all([...jobIds].map(async (jobId) => {
      try {
        const job = await api("GET", `/admin/jobs/${enc(jobId)}`);
        for (const opened of tables) if (opened.has(jobId)) opened.set(jobId, job);
      } catch (error) {
        if (error.status === 404) for (const opened of tables) opened.delete(jobId); else throw error;
      }
    }));
  }

  function redrawOpened() {
    renderDlq();
    if (state.recent) renderRecent(state.recent);
  }

  function openOrClose(table, jobId) {
    const opened = state.opened[table];
    if (!opened.delete(jobId)) {
      opened.set(jobId, null);
      readOpened().then(redrawOpened, (error) => toast(error.message, true));
    }
    redrawOpened();
  }

  // A job opened in a table it has left (redriven, discarded, no longer among the latest) is read no more.
  function forget(table, shown) {
    const jobIds = new Set(shown);
    for (const jobId of [...state.opened[table].keys()]) if (!jobIds.has(jobId)) state.opened[table].delete(jobId);
  }

  // The Why button of a job's row in `table` ("dlq" or "recent"), and the row with its detail under it once opened.
  function whyButton(table, jobId) {
    const open = state.opened[table].has(jobId);
    return h("button", {
      type: "button", class: "btn btn-sm", "data-action": "why", "aria-expanded": String(open),
      "aria-controls": `why-${table}-${jobId}`, "aria-label": `Why ${jobId}`, onclick: () => openOrClose(table, jobId),
    }, open ? "Hide" : "Why");
  }

  function withDetail(table, jobId, columns, row) {
    if (!state.opened[table].has(jobId)) return [row];
    return [row, h("tr", { class: "decisions-row", id: `why-${table}-${jobId}`, "data-decisions-for": jobId },
      h("td", { colspan: columns }, jobDetail(table, jobId)))];
  }

  // What a table's signature holds of its opened jobs: a table is rebuilt when one is opened, closed or read again.
  const openedKey = (table, jobIds) => jobIds.filter((id) => state.opened[table].has(id)).map((id) => [id, state.opened[table].get(id)]);

  // ---- recent jobs -----------------------------------------------------------------------------
  function renderRecent(answer) {
    state.recent = answer;
    const rows = answer.items.flatMap((job) => withDetail("recent", job.jobId, 6, h("tr", { "data-job-id": job.jobId },
      h("td", { class: "job" }, jobLink(job.jobId, job.runId)),
      tenantCell(job.tenant),
      h("td", {}, job.type),
      h("td", {}, pill(job.status)),
      h("td", {}, when(job.createdAt)),
      h("td", { class: "actions" }, whyButton("recent", job.jobId)))));
    const key = [answer.items.map((j) => [j.jobId, j.tenant, j.runId, j.status, relative(j.createdAt)]),
      openedKey("recent", answer.items.map((j) => j.jobId))];
    fill("recent", key, rows, 6, "No jobs yet.");
  }

  // ---- schedules -------------------------------------------------------------------------------
  function renderSchedules(answer) {
    const rows = answer.items.map((s) => h("tr", { "data-schedule-id": s.id },
      h("td", { class: "job" }, outLink(scheduleUrl(s.id), s.id), " ", s.paused ? pill("paused") : null),
      tenantCell(s.tenant || "built-in"),
      h("td", {}, h("code", { text: s.cron }), h("span", { class: "muted small", text: ` ${s.timezone}` })),
      h("td", {}, s.paused ? h("span", { class: "muted", text: "paused" }) : when(s.nextRunAt)),
      h("td", {}, s.lastRunAt ? (s.lastJobId ? outLink(runUrl(s.lastJobId), relative(s.lastRunAt)) : when(s.lastRunAt)) : h("span", { class: "muted", text: "never" })),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "btn btn-sm", disabled: state.pending.has(`schedule:${s.id}`),
          "aria-label": `Run ${s.id} now`, onclick: () => scheduleAction(s, "trigger") }, "Run now"),
        h("button", { type: "button", class: "btn btn-sm", disabled: state.pending.has(`schedule:${s.id}`),
          "aria-label": `${s.paused ? "Resume" : "Pause"} ${s.id}`, onclick: () => scheduleAction(s, s.paused ? "unpause" : "pause") },
          s.paused ? "Resume" : "Pause"))));
    const key = [answer.items.map((s) => [s.id, s.tenant, s.paused, s.cron, s.timezone, relative(s.nextRunAt), relative(s.lastRunAt), s.lastJobId]),
      [...state.pending].filter((p) => p.startsWith("schedule:"))];
    fill("schedules", key, rows, 6, "No schedules.");
  }

  async function scheduleAction(schedule, action) {
    const id = `schedule:${schedule.id}`;
    state.pending.add(id);
    state.shown.schedules = null;
    try {
      const answer = await api("POST", `/admin/schedules/${enc(schedule.id)}/${action}`);
      if (action === "trigger") {
        toast(`Started ${schedule.id}.`, false, answer && answer.lastJobId ? { href: runUrl(answer.lastJobId), text: answer.lastJobId } : null);
      } else {
        toast(`${schedule.id} ${action === "pause" ? "paused" : "resumed"}.`);
      }
    } catch (error) {
      toast(error.message, true);
    } finally {
      state.pending.delete(id);
      state.shown.schedules = null;
      refresh();
    }
  }

  // ---- the refresh loop ------------------------------------------------------------------------
  function setLive(kind, text) {
    const node = document.getElementById("live");
    node.className = `live ${kind}`;
    document.getElementById("live-text").textContent = text;
  }

  async function load() {
    const reads = [api("GET", filtered("/admin/stats")), api("GET", filtered(`/admin/dlq?limit=${DLQ_PAGE}`)),
      api("GET", filtered(`/admin/jobs?limit=${RECENT}`)), readOpened(),
      config.schedules ? api("GET", filtered("/admin/schedules")) : null];
    const tenant = state.tenant;
    const [stats, dlq, recent, opened, schedules] = await Promise.allSettled(reads);
    if (tenant !== state.tenant) return; // the filter changed meanwhile: the next load shows the new one
    const failures = [stats, dlq, recent, schedules, opened].filter((r) => r && r.status === "rejected").map((r) => r.reason);
    if (stats.status === "fulfilled") renderStats(stats.value);
    if (dlq.status === "fulfilled") {
      state.dlq = dlq.value.items;
      for (const [jobId, failedAt] of state.gone) {
        if (!state.dlq.some((i) => i.jobId === jobId && i.failedAt === failedAt)) state.gone.delete(jobId);
      }
      forget("dlq", state.dlq.map((i) => i.jobId));
      renderDlq();
    }
    if (recent.status === "fulfilled") {
      forget("recent", recent.value.items.map((j) => j.jobId));
      renderRecent(recent.value);
    }
    if (config.schedules) {
      if (schedules.status === "fulfilled") renderSchedules(schedules.value);
      else if (schedules.reason.status === 404) {
        document.getElementById("schedules-panel").hidden = true;
        document.querySelector(".columns").classList.add("single");
      }
    }
    const unauthorized = failures.find((e) => e.status === 401 || e.status === 403);
    const other = failures.find((e) => e.status !== 404);
    if (unauthorized) {
      banner("The admin token is no longer accepted: reload the page to sign in again.");
      setLive("err", "Signed out");
    } else if (other) {
      banner(other.status === 503 ? "Temporal is unreachable; retrying…" : `Could not refresh: ${other.message}`);
      setLive("err", "Retrying");
    } else {
      banner(null);
      setLive(state.paused ? "paused" : "ok", `${state.paused ? "Paused" : "Live"} · ${new Date().toLocaleTimeString()}`);
    }
  }

  function refresh() {
    clearTimeout(state.timer);
    if (!state.inflight) {
      state.inflight = load().catch((error) => banner(`Could not refresh: ${error.message}`)).finally(() => {
        state.inflight = null;
        schedule();
      });
    }
    return state.inflight;
  }

  function schedule() {
    clearTimeout(state.timer);
    if (!state.paused && !document.hidden) state.timer = setTimeout(refresh, config.refreshSeconds * 1000);
  }

  const toggle = document.getElementById("toggle-refresh");
  toggle.addEventListener("click", () => {
    state.paused = !state.paused;
    toggle.textContent = state.paused ? "Resume" : "Pause";
    toggle.setAttribute("aria-pressed", String(state.paused));
    if (state.paused) {
      clearTimeout(state.timer);
      setLive("paused", "Paused");
    } else {
      refresh();
    }
  });
  // The tenant filter: every table and count shows that tenant's only (the routes' ?tenant=).
  document.getElementById("tenant-filter").addEventListener("change", (event) => {
    state.tenant = event.target.value;
    state.shown = {};
    for (const opened of Object.values(state.opened)) opened.clear();
    (state.inflight || Promise.resolve()).then(() => refresh());
  });
  document.addEventListener("visibilitychange", () => { if (!document.hidden && !state.paused) refresh(); });

  window.heraldDashboard = { refresh };
  refresh();
})();
