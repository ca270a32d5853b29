// The cortex operator console. Plain script, no dependencies, no inline code (strict CSP).
// The admin key lives in sessionStorage and travels only in the Authorization header.
"use strict";
(() => {
  const KEY = "cortex-console-key";
  const $ = (id) => document.getElementById(id);
  const state = { nodes: [], catalogue: [], activity: [], requests: [], captures: [], sleepWake: false, picks: {} };
  let stream = null;
  let retry = 1000;

  function key() { return sessionStorage.getItem(KEY) || ""; }
  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (key()) h["Authorization"] = "Bearer " + key();
    return h;
  }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }
  function ago(t) {
    if (!t) return "never";
    const s = Math.max(0, Date.now() / 1000 - t);
    if (s < 60) return Math.round(s) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  }
  function clock(t) { return new Date(t * 1000).toLocaleTimeString(); }
  function bytes(n) {
    if (n === null || n === undefined) return "?";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return n.toFixed(i ? 1 : 0) + " " + units[i];
  }
  function ms(s) { return s === null || s === undefined ? "–" : (s * 1000).toFixed(0) + " ms"; }

  // -- sign-in -------------------------------------------------------------------------------
  function showLogin(message) {
    stopStream();
    $("app").hidden = true;
    $("signout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("link").textContent = "signed out";
    $("link").className = "link";
    $("key").focus();
  }
  function showApp() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("signout").hidden = !key();
  }
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("key").value);
    $("key").value = "";
    connect();
  });
  $("signout").addEventListener("click", () => { sessionStorage.removeItem(KEY); showLogin(""); });

  // -- the event stream (fetch + reader: the key goes in a header, never the URL) ------------
  function stopStream() { if (stream) { stream.abort(); stream = null; } }
  async function connect() {
    stopStream();
    const controller = new AbortController();
    stream = controller;
    let reply;
    try {
      reply = await fetch("/console/api/stream", { headers: headers(), signal: controller.signal, cache: "no-store" });
    } catch (err) {
      return reconnect(controller);
    }
    if (reply.status === 401 || reply.status === 403) {
      let message = "";
      try { message = (await reply.json()).error.message; } catch (err) { message = ""; }
      sessionStorage.removeItem(KEY);
      showLogin(message);
      return;
    }
    if (!reply.ok) return reconnect(controller);
    showApp();
    probeSleepWake();
    $("link").textContent = "live";
    $("link").className = "link live";
    retry = 1000;
    try {
      await readPieces(reply.body, "\n\n", dispatch);  // an SSE event ends at a blank line
    } catch (err) { /* aborted or cut: reconnect below */ }
    reconnect(controller);
  }
  // Reads a streamed body to its end, handing each piece between two separators to onPiece (a
  // piece may arrive split across reads, and a character across two chunks).
  async function readPieces(body, separator, onPiece) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf(separator)) >= 0) {
        const piece = buffer.slice(0, cut);
        buffer = buffer.slice(cut + separator.length);
        onPiece(piece);
      }
    }
  }
  function reconnect(controller) {
    if (stream !== controller) return;  // replaced or signed out
    $("link").textContent = "reconnecting…";
    $("link").className = "link";
    setTimeout(() => { if (stream === controller) connect(); }, retry);
    retry = Math.min(retry * 2, 15000);
  }
  function dispatch(block) {
    let kind = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) kind = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trim());
    }
    if (!data.length) return;
    const payload = JSON.parse(data.join("\n"));
    if (kind === "snapshot") {
      Object.assign(state, {
        nodes: payload.nodes, catalogue: payload.catalogue, activity: payload.activity,
        requests: payload.requests, captures: payload.captures,
      });
      $("captures-panel").hidden = !payload.capture;
      renderAll();
    } else if (kind === "batch") {
      for (const message of payload) apply(message);
      renderAll();
    }
  }
  function apply(message) {
    if (message.kind === "fleet") state.nodes = message.nodes;
    else if (message.kind === "activity") { state.activity.push(message.entry); trim(state.activity); }
    else if (message.kind === "request") { state.requests.push(message.request); trim(state.requests); }
    else if (message.kind === "capture") { state.captures.push(message.capture); trim(state.captures); }
  }
  function trim(list) { while (list.length > 200) list.shift(); }

  // -- admin actions, through the admin API --------------------------------------------------
  async function probeSleepWake() {
    // The residency admin routes are POST-only: a GET answers 405 where they exist, 404 where not.
    try {
      const r = await fetch("/admin/nodes/-/models/-/sleep", { headers: headers(), cache: "no-store" });
      state.sleepWake = r.status === 405;
    } catch (err) { state.sleepWake = false; }
    renderFleet();
  }
  async function action(label, path, body) {
    $("action-status").textContent = label + "…";
    try {
      const reply = await fetch(path, {
        method: "POST",
        headers: headers({ "Content-Type": "application/json", "X-Cortex-Console": "1" }),
        body: JSON.stringify(body || {}),
      });
      let detail = "";
      try { const j = await reply.json(); detail = j.error ? j.error.message : (j.state || ""); } catch (err) { detail = ""; }
      $("action-status").textContent = label + ": " + (reply.ok ? "ok" : "refused (" + reply.status + ")") + (detail ? " – " + detail : "");
      if (reply.status === 401) showLogin("the admin key was refused");
    } catch (err) {
      $("action-status").textContent = label + ": failed – " + err;
    }
  }
  const enc = encodeURIComponent;

  // -- rendering -----------------------------------------------------------------------------
  function renderAll() { renderFleet(); renderActivity(); renderRequests(); renderCaptures(); renderModels(); }

  function renderFleet() {
    const root = $("nodes");
    const focused = document.activeElement && document.activeElement.id;
    root.replaceChildren(...state.nodes.map(renderNode));
    if (!state.nodes.length) root.append(el("p", { class: "note", text: "no node has been polled yet" }));
    if (focused && $(focused)) $(focused).focus();
  }
  function renderNode(node) {
    const health = !node.up ? "down" : node.draining ? "draining" : "up";
    const id = "node-" + node.node.replace(/[^A-Za-z0-9_-]/g, "_");
    const drain = el("button", {
      type: "button", id: id + "-drain", text: node.draining ? "Undrain" : "Drain",
      "aria-label": (node.draining ? "Undrain " : "Drain ") + node.node,
      on: { click: () => action((node.draining ? "undrain " : "drain ") + node.node,
        "/admin/nodes/" + enc(node.node) + "/drain", { drain: !node.draining }) },
    });
    const chat = state.catalogue.map((m) => m.id);
    const pick = el("select", { id: id + "-load-model", "aria-label": "Model to load on " + node.node,
      on: { change: (e) => { state.picks[node.node] = e.target.value; } } },
      ...chat.map((m) => el("option", { value: m, text: m })));
    if (state.picks[node.node]) pick.value = state.picks[node.node];
    const load = el("form", { class: "load", on: { submit: (e) => {
      e.preventDefault();
      action("load " + pick.value + " on " + node.node, "/admin/models/load", { model: pick.value, node: node.node });
    } } }, pick, el("button", { type: "submit", id: id + "-load", text: "Load", "aria-label": "Load on " + node.node }));
    const devices = (node.devices || []).map((d) => el("li", {},
      "GPU " + d.index + ": " + bytes(d.memory_used_bytes) + " used, " + bytes(d.memory_free_bytes) + " free"
      + (d.utilization_pct !== null && d.utilization_pct !== undefined ? ", " + d.utilization_pct + "% busy" : "")));
    return el("article", { class: "node", "data-node": node.node, "aria-labelledby": id + "-title" },
      el("h3", { id: id + "-title" }, node.node, " ", el("span", { class: "badge s-" + health, text: health })),
      el("p", { class: "meta" }, "last poll ", el("span", { class: "ago", "data-t": node.last_poll || "", text: ago(node.last_poll) }),
        node.last_error ? " · " + node.last_error : ""),
      devices.length ? el("ul", { class: "meta" }, ...devices) : el("p", { class: "meta", text: "no GPU reported" }),
      renderModelsTable(node, id),
      el("div", { class: "actions" }, drain, load));
  }
  function renderModelsTable(node, id) {
    if (!node.models.length) return el("p", { class: "note", text: "no model loaded" });
    const rows = node.models.map((m) => {
      const cell = el("td", {}, el("span", { class: "badge s-" + m.state, "data-state": m.state, text: m.state }));
      if (m.state === "failed" && m.error) cell.append(" ", el("span", { class: "error", text: m.error }));
      if (m.state === "loading" || m.state === "waking") {
        cell.append(" ", el("progress", { "aria-label": m.model + " " + m.state }),
          " ", el("span", { class: "ago", "data-t": m.since || "", text: ago(m.since) }));
      }
      const buttons = [el("button", { type: "button", text: "Unload", "aria-label": "Unload " + m.model + " from " + node.node,
        on: { click: () => action("unload " + m.model + " from " + node.node, "/admin/models/unload", { model: m.model, node: node.node }) } })];
      if (state.sleepWake && (m.state === "ready" || m.state === "sleeping")) {
        const verb = m.state === "ready" ? "sleep" : "wake";
        buttons.push(el("button", { type: "button", text: verb === "sleep" ? "Sleep" : "Wake",
          "aria-label": (verb === "sleep" ? "Sleep " : "Wake ") + m.model + " on " + node.node,
          on: { click: () => action(verb + " " + m.model, "/admin/nodes/" + enc(node.node) + "/models/" + enc(m.model) + "/" + verb) } }));
      }
      return el("tr", { "data-model": m.model },
        el("th", { scope: "row", text: m.model }), cell,
        el("td", { text: String(m.in_flight) }), el("td", { text: String(m.queued) }),
        el("td", {}, el("span", { class: "ago", "data-t": m.last_used || "", text: ago(m.last_used) })),
        el("td", { text: m.pinned ? "pinned" : "" }),
        el("td", {}, el("div", { class: "actions" }, ...buttons)));
    });
    return el("table", { class: "models" },
      el("caption", { class: "note", text: "Models on " + node.node }),
      el("thead", {}, el("tr", {}, ...["model", "state", "in flight", "queued", "last use", "pin", "actions"]
        .map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, ...rows));
  }
  function renderActivity() {
    const items = state.activity.slice(-100).reverse().map((a) =>
      el("li", { class: "k-" + a.kind, "data-kind": a.kind, "data-victim": a.victim || null },
        el("time", { text: clock(a.at) }), a.text));
    $("activity").replaceChildren(...items);
  }
  function renderRequests() {
    const rows = state.requests.slice(-100).reverse().map((r) => el("tr", {},
      el("td", { text: clock(r.at) }), el("td", { text: r.model }), el("td", { text: r.node || "–" }),
      el("td", { text: r.dialect }), el("td", { text: r.endpoint }),
      el("td", { text: String(r.status) + (r.error ? " " + r.error : "") }), el("td", { text: ms(r.first_token_s) }),
      el("td", { text: (r.prompt_tokens ?? "–") + " / " + (r.completion_tokens ?? "–") }),
      el("td", { text: ms(r.duration_s) })));
    $("requests").tBodies[0].replaceChildren(...rows);
  }
  function renderCaptures() {
    const items = state.captures.slice(-50).reverse().map((c) => el("li", {},
      el("time", { text: clock(c.at) }), c.model + ": " + c.prompt + " → " + c.reply));
    $("captures").replaceChildren(...items);
  }
  function renderModels() {
    const select = $("play-model");
    const chat = state.catalogue.filter((m) => m.task === "chat").map((m) => m.id);
    const current = select.value;
    if (select.options.length === chat.length && [...select.options].every((o, i) => o.value === chat[i])) return;
    select.replaceChildren(...chat.map((m) => el("option", { value: m, text: m })));
    if (chat.includes(current)) select.value = current;
  }
  setInterval(() => {
    for (const span of document.querySelectorAll(".ago")) {
      const t = parseFloat(span.dataset.t);
      span.textContent = ago(Number.isFinite(t) ? t : null);
    }
  }, 1000);

  // -- playground: a streamed chat, with TTFT and tokens/s measured here ----------------------
  $("play-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const out = $("play-output");
    out.textContent = "";
    $("play-ttft").textContent = $("play-tokens").textContent = $("play-rate").textContent = "…";
    $("play-send").disabled = true;
    const started = performance.now();
    let first = null;
    let tokens = 0;
    let usage = null;
    try {
      const reply = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: headers({ "Content-Type": "application/json" }),
        body: JSON.stringify({
          model: $("play-model").value, stream: true, stream_options: { include_usage: true },
          max_tokens: parseInt($("play-max").value, 10) || 64,
          messages: [{ role: "user", content: $("play-prompt").value }],
        }),
      });
      if (!reply.ok) {
        let message = String(reply.status);
        try { message += " " + (await reply.json()).error.message; } catch (err) { message += ""; }
        out.textContent = "error: " + message;
        return;
      }
      await readPieces(reply.body, "\n", (piece) => {
        const line = piece.trim();
        if (!line.startsWith("data:") || line === "data: [DONE]") return;
        let chunk;
        try { chunk = JSON.parse(line.slice(5)); } catch (err) { return; }
        if (chunk.error) { out.textContent += "\n[error: " + chunk.error.message + "]"; return; }
        if (chunk.usage) usage = chunk.usage;
        const text = chunk.choices && chunk.choices[0] && chunk.choices[0].delta && chunk.choices[0].delta.content;
        if (text) {
          if (first === null) { first = performance.now(); $("play-ttft").textContent = (first - started).toFixed(0) + " ms"; }
          tokens += 1;
          out.textContent += text;
        }
      });
      const count = usage && usage.completion_tokens ? usage.completion_tokens : tokens;
      const span = first === null ? 0 : (performance.now() - first) / 1000;
      $("play-tokens").textContent = String(count);
      $("play-rate").textContent = span > 0 ? (count / span).toFixed(1) : "–";
      if (first === null) $("play-ttft").textContent = "–";
    } catch (err) {
      out.textContent += "\n[failed: " + err + "]";
    } finally {
      $("play-send").disabled = false;
    }
  });

  connect();
})();
