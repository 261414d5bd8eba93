// The dashboard's page: reads the JSON API every few seconds and draws it. Every value from
// the store goes in with textContent (never as HTML), so a tenant named <script> shows as text.
"use strict";
(function () {
  const API = "/api/v1";
  const POLL_MS = 2000;
  let session = { authenticated: false, csrf: null };
  let timer = null;
  let polls = 0;
  let editing = null; // the dead letter whose payload is open in the editor

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }
  function row(cells) {
    const tr = el("tr");
    for (const cell of cells) {
      if (cell instanceof Node) { const td = el("td"); td.appendChild(cell); tr.appendChild(td); }
      else tr.appendChild(el("td", cell === null || cell === undefined ? "" : cell,
                              typeof cell === "number" ? { class: "num" } : {}));
    }
    return tr;
  }
  function fill(tableId, rows) {
    const body = document.querySelector("#" + tableId + " tbody");
    body.replaceChildren(...rows);
  }
  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 90) return seconds.toFixed(1) + " s";
    if (seconds < 5400) return (seconds / 60).toFixed(1) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }
  // kind: "ok" (an action done) or "error" (an action refused) stay until the next action or
  // page, so a poll cannot wipe them before they are read; no kind (a load failed, a sign-in
  // refused) is cleared by the next good load.
  function status(text, kind) {
    const node = document.getElementById("status");
    node.textContent = text || "";
    node.className = kind || "";
  }
  async function get(path) {
    const response = await fetch(API + path, { credentials: "same-origin" });
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || response.statusText);
    return body;
  }
  async function post(path, data) {
    const response = await fetch(API + path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": session.csrf || "" },
      body: JSON.stringify(data),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(detail(body) || response.statusText);
    return body;
  }
  function detail(body) { // a string, or (a request that failed the schema) a list of errors
    if (typeof body.detail === "string" || !body.detail) return body.detail;
    return body.detail.map((e) => (e.loc || []).join(".") + ": " + e.msg).join("; ");
  }
  function jobLink(tenant, jobId) {
    const a = el("a", jobId, { href: "#/job?tenant=" + encodeURIComponent(tenant) +
                                     "&id=" + encodeURIComponent(jobId) });
    return a;
  }

  // -- pages ---------------------------------------------------------------------------------
  async function overview() {
    const o = await get("/overview");
    const cards = [["ready", o.ready], ["scheduled", o.scheduled], ["leased", o.leased],
      ["dead", o.dead], ["zones with jobs", o.zones_with_jobs], ["zones due", o.due_zones],
      ["oldest due", ago(o.oldest_due_age_seconds) || "none"], ["workers", o.workers],
      ["completed (watched)", o.throughput.completed], ["failed (watched)", o.throughput.failed]];
    document.getElementById("cards").replaceChildren(...cards.map(([label, n]) => {
      const card = el("div", null, { class: "card", id: "count-" + label.split(" ")[0] });
      card.append(el("div", n, { class: "n" }), el("div", label, { class: "l" }));
      return card;
    }));
    document.getElementById("window").textContent = ago(o.throughput.window_seconds) || "0 s";
    spark(o.throughput.series);
    const rows = [];
    for (const [topic, counters] of Object.entries(o.topics)) {
      for (const [name, n] of Object.entries(counters)) rows.push(row([topic, name, n]));
    }
    fill("topics", rows);
    await pausedPanel();
  }
  // What flow control has paused, each with a resume button; names go in as text.
  async function pausedPanel() {
    const p = await get("/paused");
    const rows = [];
    for (const kind of ["topic", "tenant"]) {
      for (const name of p[kind]) {
        const button = el("button", "resume", { type: "button", class: "resume",
                                                "data-kind": kind, "data-name": name });
        button.disabled = !session.authenticated;
        button.addEventListener("click", () => flowAction("/resume", kind, name));
        rows.push(row([kind, name, button]));
      }
    }
    fill("paused", rows);
    document.getElementById("paused").hidden = rows.length === 0;
    document.getElementById("paused-none").hidden = rows.length !== 0;
    document.getElementById("pause-button").disabled = !session.authenticated;
  }
  async function flowAction(path, kind, name) {
    try { status((await post(path, { [kind]: name })).message, "ok"); }
    catch (error) { status(path.slice(1) + " failed: " + error.message, "error"); }
    refresh();
  }
  function spark(series) {
    const svg = document.getElementById("spark");
    const ns = "http://www.w3.org/2000/svg";
    const deltas = series.slice(1).map((p, i) => Math.max(0, p.completed - series[i].completed));
    const max = Math.max(1, ...deltas);
    const bars = deltas.map((d, i) => {
      const bar = document.createElementNS(ns, "rect");
      const h = Math.round((d / max) * 56);
      bar.setAttribute("x", String(i * 5)); bar.setAttribute("width", "4");
      bar.setAttribute("y", String(58 - h)); bar.setAttribute("height", String(h));
      bar.setAttribute("fill", "#4a7fd4");
      return bar;
    });
    svg.replaceChildren(...bars);
  }
  async function tenants() {
    const t = await get("/tenants?limit=100");
    document.getElementById("zones-total").textContent =
      t.zones_with_jobs + " zone(s) with jobs; the " + t.tenants.length + " deepest:";
    fill("tenants", t.tenants.map((z) => row([zoneLink(z.tenant), z.ready, z.scheduled, z.leased,
      ago(z.waiting_seconds), z.pointer_leased ? "yes" : ""])));
  }
  function zoneLink(tenant) {
    return el("a", tenant, { href: "#/zone?tenant=" + encodeURIComponent(tenant) });
  }
  async function zone(params) {
    const tenant = params.get("tenant") || "";
    document.getElementById("zone-name").textContent = tenant;
    if (!tenant) { fill("zone-jobs", []); return; }
    const z = await get("/zone?tenant=" + encodeURIComponent(tenant));
    document.getElementById("zone-depth").textContent = z.zone.ready + " ready, " +
      z.zone.scheduled + " scheduled, " + z.zone.leased + " leased";
    const rows = [];
    for (const [state, jobs] of Object.entries(z.jobs)) {
      for (const j of jobs) {
        rows.push(row([state, jobLink(tenant, j.job_id), j.topic, j.attempt, j.priority,
                       j.due_at, j.lease_expires_at]));
      }
    }
    fill("zone-jobs", rows);
  }
  async function job(params) {
    const tenant = params.get("tenant"), id = params.get("id");
    document.getElementById("job-tenant").value = tenant || "";
    document.getElementById("job-id").value = id || "";
    if (!tenant || !id) { fill("job-detail", []); return; }
    const j = await get("/jobs/" + encodeURIComponent(id) + "?tenant=" + encodeURIComponent(tenant));
    const fields = ["tenant", "job_id", "topic", "state", "attempt", "max_retries", "priority",
      "due_at", "enqueued_at", "lease_expires_at", "held_by", "last_error", "reason",
      "dead_kind", "snoozes", "key"];
    fill("job-detail", fields.map((f) => row([f, j[f]])));
    document.getElementById("job-payload").textContent = JSON.stringify(j.payload, null, 2);
  }
  async function dead() {
    const d = await get("/dead?limit=200");
    document.getElementById("dead-total").textContent = d.dead + " dead letter(s)" +
      (session.authenticated ? "" : " (sign in to retry or purge)");
    fill("dead", d.letters.map((j) => {
      const actions = el("span");
      for (const [verb, path] of [["retry", "/dead/retry"], ["purge", "/dead/purge"]]) {
        const button = el("button", verb, { type: "button", class: verb,
                                            "data-job-id": j.job_id });
        button.disabled = !session.authenticated;
        button.addEventListener("click", async () => {
          if (verb === "purge" && !window.confirm("Delete this dead letter for good?")) return;
          try {
            status((await post(path, { tenant: j.tenant, job_id: j.job_id })).message, "ok");
          } catch (error) { status(verb + " failed: " + error.message, "error"); }
          refresh();
        });
        actions.appendChild(button);
      }
      const edit = el("button", "edit", { type: "button", class: "edit", "data-job-id": j.job_id });
      edit.disabled = !session.authenticated || j.dead_kind === "unreadable";
      edit.addEventListener("click", () => openEditor(j));
      actions.appendChild(edit);
      return row([j.tenant, jobLink(j.tenant, j.job_id), j.topic, j.attempt,
                  j.reason || j.last_error, actions]);
    }));
  }
  // The editor lives outside the table, so the table's redraw every poll leaves it alone.
  // The payload goes in as the textarea's value: text, never HTML.
  function openEditor(j) {
    editing = { tenant: j.tenant, job_id: j.job_id };
    document.getElementById("dead-edit-job").textContent = j.job_id + " (" + j.tenant + ", " +
      j.topic + ")";
    document.getElementById("dead-edit-payload").value = JSON.stringify(j.payload, null, 2);
    document.getElementById("dead-edit").hidden = false;
    editorError("");
    document.getElementById("dead-edit-payload").focus();
  }
  function closeEditor() {
    editing = null;
    document.getElementById("dead-edit").hidden = true;
  }
  // A refusal is shown in the editor (the page's status line is redrawn by every poll) and
  // the editor stays open with the operator's text, to fix and send again.
  function editorError(text) {
    document.getElementById("dead-edit-error").textContent = text;
  }
  async function retryEdited(event) {
    event.preventDefault();
    if (!editing) return;
    let payload;
    try { payload = JSON.parse(document.getElementById("dead-edit-payload").value); }
    catch (error) { editorError("the payload is not JSON: " + error.message); return; }
    if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
      editorError("the payload must be a JSON object ({...})"); return;
    }
    try {
      status((await post("/dead/retry", { ...editing, payload })).message, "ok");
      closeEditor();
    } catch (error) { editorError("refused: " + error.message); }
    refresh();
  }
  async function workers() {
    const w = await get("/workers");
    fill("workers", w.workers.map((x) => {
      const jobs = el("span");
      for (const held of x.jobs) {
        jobs.append(jobLink(held.tenant, held.job_id), el("span", " (" + held.tenant + ") "));
      }
      return row([x.worker_id, x.host, x.pid, new Date(x.started * 1000).toLocaleString(),
        new Date(x.heartbeat * 1000).toLocaleTimeString(), x.concurrency, x.holding, jobs]);
    }));
  }

  const PAGES = { overview, tenants, zone, job, dead, workers };

  function route() {
    const hash = location.hash.replace(/^#\/?/, "") || "overview";
    const [name, query] = hash.split("?");
    const page = PAGES[name] ? name : "overview";
    for (const section of document.querySelectorAll("main section")) {
      section.hidden = section.id !== "page-" + page;
    }
    for (const link of document.querySelectorAll("nav a")) {
      link.classList.toggle("active", link.dataset.page === page);
    }
    if (name === "login" && query && query.includes("failed")) status("wrong token");
    return [page, new URLSearchParams(query || "")];
  }
  async function refresh() {
    const [page, params] = route();
    try {
      await PAGES[page](params);
      if (document.getElementById("status").className === "") status("");
      document.body.dataset.polls = String(++polls); // lets a test wait for the next poll
    } catch (error) { status("could not load: " + error.message); }
  }
  async function loadSession() {
    try { session = await get("/session"); } catch (error) { status(error.message); }
    document.getElementById("queue-name").textContent = session.queue || "";
    document.getElementById("login").hidden = session.authenticated;
    document.getElementById("logout").hidden = !session.authenticated;
  }

  document.addEventListener("DOMContentLoaded", async () => {
    document.getElementById("job-form").addEventListener("submit", (event) => {
      event.preventDefault();
      location.hash = "#/job?tenant=" + encodeURIComponent(document.getElementById("job-tenant").value) +
        "&id=" + encodeURIComponent(document.getElementById("job-id").value);
    });
    document.getElementById("dead-edit").addEventListener("submit", retryEdited);
    document.getElementById("pause-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const name = document.getElementById("pause-name");
      flowAction("/pause", document.getElementById("pause-kind").value, name.value);
      name.value = "";
    });
    document.getElementById("dead-edit-cancel").addEventListener("click", closeEditor);
    document.getElementById("logout-button").addEventListener("click", async () => {
      await fetch("/logout", { method: "POST", credentials: "same-origin",
                               headers: { "X-CSRF-Token": session.csrf || "" } });
      await loadSession(); refresh();
    });
    window.addEventListener("hashchange", () => { status(""); refresh(); });
    await loadSession();
    await refresh();
    timer = setInterval(refresh, POLL_MS);
  });
})();
